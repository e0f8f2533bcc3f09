"""Hume's legacy v0 streaming API (``/v0/stream/models``): wire types and the agent's v0 backend.

Hume shut v0 down in June 2026; it stays for the emulator and for anyone with a compatible endpoint.

* ``protocol``: the contract's constants, codes and label lists, and the server -> client replies
  (predictions, warnings, errors), parsed strictly;
* ``publish``: the client -> server publish message and its model configs;
* ``payloads``: what waits to be sent on each socket, and how replies come back as observations;
* ``accounting``: the in-flight table that matches replies, and the per-socket counters;
* ``connector``: opening a socket with the key, a deadline, and what each refusal means;
* ``link``: one self-healing WebSocket per modality (one payload in flight, reconnects);
* ``client``: ``V0Backend``, the sockets composed behind ``agent.hume.backend.Backend``.
"""
