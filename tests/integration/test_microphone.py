"""The real PyAudio path with no sound card: espeak-ng speech through ALSA's file PCM into the API payload."""

from __future__ import annotations

import asyncio
import base64
import threading
from pathlib import Path
from typing import Any, AsyncIterator, List, Optional

import numpy as np
import pyaudio

from agent.capture.microphone import AudioChunk, PyAudioMicrophone
from agent.config import HumeConfig
from agent.hume.backend import OutgoingMedia
from agent.hume.payloads import PayloadBuilder
from agent.media import AUDIO_RATE, decode_wav, voice_activity
from tests.support.alsa import DEVICE, RATE, FakeMic, fake_mic, speech

__all__ = ["fake_mic"]  # the fixture, used by name below

TEXT = "Hello there. Welcome to the kiosk. How are you feeling today?"
FRAME = AUDIO_RATE // 100  # 10 ms envelope frames
FAST_RETRY = {"retry_initial_s": 0.05, "retry_max_s": 0.2}


def _envelope(x: np.ndarray) -> np.ndarray:
    n = len(x) // FRAME
    frames = x[: n * FRAME].astype(np.float64).reshape(n, FRAME)
    return np.sqrt(np.mean(frames**2, axis=1))


def _voiced_span(env: np.ndarray, floor: float = 300.0) -> float:
    """Seconds from the first to the last 10 ms frame louder than ``floor`` (about -40 dBFS)."""
    loud = np.flatnonzero(env > floor)
    return 0.0 if len(loud) == 0 else (loud[-1] - loud[0] + 1) * FRAME / AUDIO_RATE


def _payload_audio(chunks: List[AudioChunk]) -> np.ndarray:
    """What the v0 client would send: each chunk through the real payload builder, decoded back."""
    cfg = HumeConfig(models=("prosody",))
    builder = PayloadBuilder(cfg, ("prosody",))
    parts = []
    for i, c in enumerate(chunks):
        msg = builder.build(OutgoingMedia("audio", c.pcm16, c.captured_at, None), f"a{i}", False)
        assert msg.data is not None
        samples, rate = decode_wav(base64.b64decode(msg.data))
        assert rate == AUDIO_RATE
        parts.append(samples)
    return np.concatenate(parts)


async def _take(source: AsyncIterator[AudioChunk], seconds: float, chunk_ms: int) -> List[AudioChunk]:
    n = int(np.ceil(seconds * 1000 / chunk_ms))
    return [await asyncio.wait_for(source.__anext__(), timeout=10) for _ in range(n)]


async def test_espeak_speech_through_alsa_reaches_the_payload_intact(
    fake_mic: FakeMic, tmp_path: Path
) -> None:
    spoken = speech(TEXT, RATE, tmp_path)  # what the "room" hears, at the device's 48 kHz
    reference = speech(TEXT, AUDIO_RATE, tmp_path)  # the same speech resampled by sox, not by us
    fake_mic.play(np.zeros(RATE // 2, np.int16))
    fake_mic.play(spoken)
    fake_mic.start()
    mic = PyAudioMicrophone(DEVICE, device_rate=RATE, chunk_ms=500, **FAST_RETRY)
    chunks = mic.chunks()
    try:
        got = await _take(chunks, 0.5 + len(spoken) / RATE + 1.5, 500)
    finally:
        await chunks.aclose()
    assert mic.opened_as == (DEVICE, RATE, 1)
    assert all(len(c.pcm16) == AUDIO_RATE for c in got)  # 500 ms of 16-bit mono each
    received = _payload_audio(got)

    env_rx, env_ref = _envelope(received), _envelope(reference)
    lag = int(np.argmax(np.correlate(env_rx, env_ref, mode="valid")))
    aligned = env_rx[lag : lag + len(env_ref)]
    assert np.corrcoef(aligned, env_ref)[0, 1] > 0.95  # the same syllables at the same times
    assert abs(_voiced_span(env_rx) - _voiced_span(env_ref)) < 0.05  # the same duration
    assert 0.8 < aligned.sum() / env_ref.sum() < 1.25  # the same loudness
    wave_rx = received[lag * FRAME : lag * FRAME + len(reference)].astype(np.float64)
    best = max(np.corrcoef(np.roll(wave_rx, s), reference)[0, 1] for s in range(-FRAME, FRAME + 1))
    assert best > 0.9  # even the waveform matches sox's resampling of it
    assert not voice_activity(got[0].pcm16)  # the lead-in silence
    assert any(voice_activity(c.pcm16) for c in got)
    assert mic.overruns == 0


class _FailingMic(PyAudioMicrophone):
    """The real microphone whose next read fails once the test asks, like a USB microphone pulled out."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.pull = threading.Event()

    def _read(self, stream: Any, frames: int) -> Optional[bytes]:
        if self.pull.is_set():
            self.pull.clear()
            raise OSError(-9999, "Unanticipated host error")
        return super()._read(stream, frames)


async def _until(predicate: Any, source: AsyncIterator[AudioChunk], limit: int = 60) -> AudioChunk:
    for _ in range(limit):
        chunk = await asyncio.wait_for(source.__anext__(), timeout=10)
        if predicate(chunk):
            return chunk
    raise AssertionError("condition never met")


async def test_missing_then_lost_microphone_comes_back_by_itself(fake_mic: FakeMic, tmp_path: Path) -> None:
    spoken = speech("Testing, one, two, three.", RATE, tmp_path)
    fake_mic.unplug()  # not there at start
    fake_mic.start()
    mic = _FailingMic(device=DEVICE, device_rate=RATE, chunk_ms=250, **FAST_RETRY)
    chunks = mic.chunks()
    try:
        pending = asyncio.ensure_future(chunks.__anext__())
        await asyncio.sleep(0.5)
        assert not pending.done()
        assert mic.recovery.lost
        assert "no input device matches 'fakemic'" in (mic.recovery.last_error or "")
        fake_mic.plug()
        await asyncio.wait_for(pending, timeout=10)
        assert not mic.recovery.lost
        assert mic.recovery.outages == 1

        fake_mic.unplug()
        mic.pull.set()  # mid-run loss: the read fails and the device is gone on reopen
        await asyncio.sleep(0.5)
        assert mic.recovery.lost
        assert mic.recovery.outages == 2
        fake_mic.plug()
        fake_mic.play(spoken)
        await _until(lambda c: voice_activity(c.pcm16), chunks)  # speech flows again
        assert not mic.recovery.lost
        assert mic.recovery.outages == 2
        assert mic.recovery.failures >= 3
    finally:
        await chunks.aclose()


def test_an_overrun_is_counted_not_fatal() -> None:
    class Overflowing:
        def read(self, frames: int, exception_on_overflow: bool) -> bytes:
            assert exception_on_overflow  # so that overruns are seen at all
            raise OSError(pyaudio.paInputOverflowed, "Input overflowed")

    mic = PyAudioMicrophone(DEVICE)
    assert mic._read(Overflowing(), 160) is None
    assert mic._read(Overflowing(), 160) is None
    assert mic.overruns == 2
    assert mic.status()["overruns"] == 2
