"""Hume's v1 realtime API (one WebSocket per modality): wire types and the agent's backend (the default).

* ``protocol``: the wire contract the backend and the emulator (``hume_emulator.v1``) share (both pace
  with :class:`agent.throttle.TokenBucket`);
* ``visits``: media queued per visit, held until the visit is worth a session, bounded, withdrawn;
* ``wire``: one session on one WebSocket: what is sent when, and what each reply means (pure);
* ``handshake``: opening a socket, with a deadline, and what a refusal says;
* ``endpoint``: one endpoint's (audio, video) state, reconnect delays, failures logged once, its status;
* ``session``: one session on its socket: config, media out (paced by the wire), replies in, close;
* ``client``: ``V1Backend``, behind ``agent.hume.backend.Backend``: when sessions open and what their end
  means (reconnect, wait out the request limit, give up, disable).
"""
