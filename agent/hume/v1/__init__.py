"""Hume's v1 realtime API (one WebSocket per modality): wire types and the agent's backend (the default).

* ``protocol``: the wire contract the backend and the emulator (``hume_emulator.v1``) share (both pace
  with :class:`agent.throttle.TokenBucket`);
* ``visits``: media queued per visit, held until the visit is worth a session, bounded, withdrawn;
* ``wire``: one session on one WebSocket: what is sent when, and what each reply means (pure);
* ``handshake``: opening a socket, with a deadline, and what a refusal says;
* ``client``: ``V1Backend``, the endpoints' sessions and reconnects behind ``agent.hume.backend.Backend``.
"""
