"""Media values at the bottom of the agent (frames, audio chunks) and the pure processing of them.

* ``frames``: what a camera captures (``Frame``) and what leaves for the face model (``EncodedFrame``);
* ``audio``: the 16 kHz chunk the agent sends, resampling, voice activity, WAV;
* ``video``: local downsampling and encoding of frames (pure; nothing is ever written to disk).

Before: ``agent.capture`` produces these values. Next: ``agent.visit`` decides which of them leave.
"""
