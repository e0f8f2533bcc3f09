"""Shared fixtures. Each real part a test talks to (mosquitto, the emulator) lives in tests/support/."""

pytest_plugins = [
    "tests.support.mosquitto",
    "tests.support.rabbitmq",
    "tests.support.emulator",
    "tests.support.emulator_v1",
    "tests.support.install",
]
