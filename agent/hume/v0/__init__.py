"""Hume's legacy v0 streaming API (``/v0/stream/models``): wire types and the agent's v0 backend.

Hume shut v0 down in June 2026; it stays for the emulator and for anyone with a compatible endpoint.
"""
