"""Hume's v1 realtime API (one WebSocket per modality): wire types, the backend, and a local emulator.

``protocol`` holds the wire contract both sides share; ``client.V1Backend`` is the agent's backend;
``emulator.EmulatorV1`` serves ``/v1/expression/{audio,video}/realtime`` on loopback for tests and demos.
"""
