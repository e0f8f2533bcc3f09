"""The ``emulator_v1`` fixture: a started local Hume v1 realtime emulator on a free loopback port.

Key "test-key", seed 0, the documented limits. Tests that need other settings (a short idle timeout)
construct ``EmulatorV1(EmulatorV1Settings(...))`` themselves. Media helpers make espeak-ng speech as
the 16 kHz mono s16le the v1 audio endpoint takes, in memory.
"""

from __future__ import annotations

import io
import wave
from typing import AsyncIterator

import numpy as np
import pytest_asyncio

from hume_emulator import detectors
from hume_emulator.v1.emulator import EmulatorV1, EmulatorV1Settings
from tests.support.emulator import espeak_wav

TEST_KEY = "test-key"
SPEECH = (
    "Hello there. I am very happy to see you today. This museum is wonderful, and I love the "
    "exhibits. Thank you so much for coming, and have a lovely afternoon."
)


@pytest_asyncio.fixture
async def emulator_v1() -> AsyncIterator[EmulatorV1]:
    async with EmulatorV1(EmulatorV1Settings(api_keys=(TEST_KEY,))) as emu:
        yield emu


def pcm16k(wav: bytes) -> bytes:
    """A WAV file's samples as 16 kHz mono signed 16-bit little-endian PCM."""
    with wave.open(io.BytesIO(wav)) as w:
        rate, channels = w.getframerate(), w.getnchannels()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, channels)
    mono = detectors.to_mono_16k(samples, rate)
    return (mono * 32767).astype("<i2").tobytes()


def espeak_pcm(text: str = SPEECH) -> bytes:
    """espeak-ng speaking ``text``, as the v1 audio endpoint takes it."""
    return pcm16k(espeak_wav(text))
