"""Local, protocol-faithful emulators of Hume's streaming APIs (v1 realtime, legacy v0) for tests and demos.

Not part of the kiosk agent: ``agent`` never imports this package on the ``run`` path (a test checks).
It ships in the same distribution so ``hume-edge emulator`` and ``hume-edge demo`` work on any install.
"""
