"""Hume's v1 realtime API (one WebSocket per modality): wire types and the agent's backend (the default).

``protocol`` holds the wire contract the backend and the emulator (``hume_emulator.v1``) share;
``client.V1Backend`` is the agent's backend.
"""
