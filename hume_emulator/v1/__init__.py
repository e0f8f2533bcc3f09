"""The v1 realtime emulator: ``emulator.EmulatorV1`` serves ``/v1/expression/{audio,video}/realtime``."""
