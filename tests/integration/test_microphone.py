"""The real PyAudio path with no sound card: espeak-ng speech through ALSA's file PCM into the API payload."""

from __future__ import annotations

import asyncio
import base64
import sys
import threading
import wave
from pathlib import Path
from typing import Any, AsyncIterator, List, Optional

import numpy as np
import pyaudio
import pytest

from agent.capture.factory import open_microphone
from agent.capture.microphone import PyAudioMicrophone
from agent.capture.synthetic import SpeechSource, WavFileSource
from agent.config import HumeConfig, MicrophoneConfig
from agent.errors import AgentError
from agent.hume.types import OutgoingMedia
from agent.hume.v0.payloads import PayloadBuilder
from agent.media.audio import AUDIO_RATE, AudioChunk, decode_wav, voice_activity
from tests.support.alsa import DEVICE, RATE, FakeMic, fake_mic, speech
from tests.support.waits import eventually

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
    assert await mic.close()  # the capture thread has ended (and closed the stream)
    assert "microphone" not in [t.name for t in threading.enumerate()]
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
        # Absent at start: lost, and retried (a second failed open) while it stays away.
        assert await eventually(lambda: mic.recovery.lost and mic.recovery.failures >= 2, 10)
        assert not pending.done()
        assert "no input device matches 'fakemic'" in (mic.recovery.last_error or "")
        fake_mic.plug()
        await asyncio.wait_for(pending, timeout=10)
        assert not mic.recovery.lost
        assert mic.recovery.outages == 1

        fake_mic.unplug()
        mic.pull.set()  # mid-run loss: the read fails and the device is gone on reopen
        assert await eventually(lambda: mic.recovery.lost and mic.recovery.outages == 2, 10)
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


async def test_synthetic_speech_alternates_voice_and_silence() -> None:
    source = SpeechSource(chunk_ms=250, sentences=("Hello there.", "Goodbye now."), pause_s=0.6)
    chunks = source.chunks()
    try:
        got = [await asyncio.wait_for(chunks.__anext__(), timeout=10) for _ in range(12)]
    finally:
        await chunks.aclose()
    voiced = [voice_activity(c.pcm16) for c in got]
    assert voiced[0]
    assert False in voiced  # the pause between sentences
    assert voiced.count(True) >= 4
    assert all(len(c.pcm16) == 2 * AUDIO_RATE // 4 for c in got)
    assert all(b.captured_at > a.captured_at for a, b in zip(got, got[1:]))


async def test_espeak_gets_no_secret_from_the_agents_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUME_API_KEY", "secret-key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/hume-edge.service")
    seen: List[Any] = []
    real = asyncio.create_subprocess_exec

    async def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("env"))
        return await real(*args, **kwargs)

    monkeypatch.setattr(asyncio, "create_subprocess_exec", recording)
    samples = await SpeechSource(chunk_ms=250).say("Hello.")
    assert len(samples) > AUDIO_RATE // 10  # espeak-ng still speaks with the minimal environment
    assert seen
    assert set(seen[0]) == {"PATH", "LANG"}


async def test_wav_file_is_resampled_downmixed_and_looped(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    t = np.arange(int(0.3 * 44100)) / 44100
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.repeat(tone, 2).tobytes())  # the same tone on both channels
    source = open_microphone(MicrophoneConfig(source="wav", wav_path=str(path), chunk_ms=100))
    assert isinstance(source, WavFileSource)
    chunks = source.chunks()
    try:
        got = [
            await asyncio.wait_for(chunks.__anext__(), timeout=10) for _ in range(8)
        ]  # 0.8 s of a 0.3 s file
    finally:
        await chunks.aclose()
    x = np.frombuffer(b"".join(c.pcm16 for c in got), dtype="<i2").astype(np.float64)
    assert len(x) == 8 * 1600
    assert voice_activity(got[-1].pcm16)  # still sounding after the file's end: looped
    spectrum = np.abs(np.fft.rfft(x[:4800] * np.hanning(4800)))
    assert abs(np.argmax(spectrum) * AUDIO_RATE / 4800 - 440) < 5


def test_open_microphone_checks_what_the_source_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert open_microphone(MicrophoneConfig(source="none")) is None
    assert isinstance(open_microphone(MicrophoneConfig(source="speech")), SpeechSource)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(AgentError, match="apt install espeak-ng"):
        open_microphone(MicrophoneConfig(source="speech"))
    monkeypatch.setitem(sys.modules, "pyaudio", None)
    with pytest.raises(AgentError, match="portaudio19-dev"):
        open_microphone(MicrophoneConfig(source="pyaudio"))
