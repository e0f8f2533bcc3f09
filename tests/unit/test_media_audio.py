"""Audio downsampling: resampling keeps speech, stops aliases; exact chunks; VAD; the WAV container."""

from __future__ import annotations

import io
import wave
from typing import List

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.media.audio import (
    AudioChunker,
    Resampler,
    decode_wav,
    rms_dbfs,
    to_mono,
    voice_activity,
    wav_bytes,
)


def _tone(freq: float, rate: int, seconds: float, amplitude: float = 10000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def _level(x: np.ndarray) -> float:
    return rms_dbfs(x.astype("<i2").tobytes())


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_speech_band_tone_keeps_pitch_level_and_duration(rate: int) -> None:
    x = _tone(1000.0, rate, 2.0)
    y = Resampler(rate).process(x)
    assert 0 <= 32000 - len(y) <= 2  # the last input sample waits for its successor
    steady = y[2000:-2000]  # skip the filter's start-up
    assert abs(_peak_hz(steady, 16000) - 1000.0) < 2.0
    assert abs(_level(steady) - _level(x)) < 0.5


@pytest.mark.parametrize("rate", [44100, 48000])
def test_tones_above_8khz_are_filtered_not_aliased(rate: int) -> None:
    """A 9 kHz whistle would fold to 7 kHz at 16 kHz without the anti-alias filter."""
    x = _tone(9000.0, rate, 1.0)
    y = Resampler(rate).process(x)[2000:]
    assert _level(y) < _level(x) - 40


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([22050, 44100, 48000]), st.lists(st.integers(1, 5000), min_size=1, max_size=12))
def test_chunked_resampling_equals_one_shot(rate: int, cuts: List[int]) -> None:
    rng = np.random.default_rng(len(cuts))
    x = rng.integers(-8000, 8000, sum(cuts)).astype(np.int16)
    whole = Resampler(rate).process(x)
    stream = Resampler(rate)
    parts, start = [], 0
    for n in cuts:
        parts.append(stream.process(x[start : start + n]))
        start += n
    pieces = np.concatenate(parts)
    assert len(pieces) == len(whole)
    assert np.max(np.abs(pieces.astype(int) - whole.astype(int)), initial=0) <= 1


def test_same_rate_passes_through() -> None:
    x = np.arange(-100, 100, dtype=np.int16)
    assert np.array_equal(Resampler(16000).process(x), x)


def test_resampler_names_bad_rates() -> None:
    with pytest.raises(ValueError, match="sample rates 0 -> 16000"):
        Resampler(0)


def test_stereo_is_averaged_to_mono() -> None:
    interleaved = np.array([100, 300, -50, 50, 7, 9], dtype=np.int16)
    assert to_mono(interleaved, 2).tolist() == [200.0, 0.0, 8.0]


@given(st.integers(100, 5000), st.lists(st.integers(0, 9000), max_size=15))
def test_chunks_are_exact_and_lose_nothing(chunk_ms: int, blocks: List[int]) -> None:
    chunker = AudioChunker(chunk_ms)
    x = (np.arange(sum(blocks)) % 30000).astype(np.int16)
    out, start = [], 0
    for n in blocks:
        out += chunker.push(x[start : start + n])
        start += n
    assert all(len(c) == chunker.chunk_samples * 2 for c in out)
    joined = np.frombuffer(b"".join(out), dtype="<i2")
    assert len(joined) == len(x) // chunker.chunk_samples * chunker.chunk_samples
    assert np.array_equal(joined, x[: len(joined)])


def test_voice_activity_is_an_energy_gate() -> None:
    assert not voice_activity(np.zeros(16000, np.int16).tobytes())
    rng = np.random.default_rng(0)
    hiss = rng.normal(0, 10, 16000).astype(np.int16)  # about -70 dBFS: a quiet room
    assert not voice_activity(hiss.tobytes())
    speech_like = _tone(220.0, 16000, 1.0, amplitude=3000.0)
    assert voice_activity(speech_like.tobytes())
    click = np.zeros(16000, np.int16)
    click[8000:8320] = 20000  # one 20 ms burst is below the 60 ms minimum
    assert not voice_activity(click.tobytes())
    assert not voice_activity(b"")


def test_wav_bytes_is_a_16k_mono_container_that_round_trips() -> None:
    pcm = _tone(440.0, 16000, 0.5).tobytes()
    data = wav_bytes(pcm)
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, 8000)
    samples, rate = decode_wav(data)
    assert rate == 16000
    assert samples.tobytes() == pcm


def test_decode_wav_accepts_a_streamed_header_and_downmixes() -> None:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(np.array([1000, 3000] * 100, dtype="<i2").tobytes())
    data = bytearray(buf.getvalue())
    data[4:8] = data[40:44] = (0x7FFFF000).to_bytes(4, "little")  # what espeak-ng --stdout writes
    samples, rate = decode_wav(bytes(data))
    assert rate == 22050
    assert samples.tolist() == [2000] * 100


def test_decode_wav_names_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="not a PCM WAV"):
        decode_wav(b"RIFF nonsense")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * 10)
    with pytest.raises(ValueError, match="8 bits: only 16-bit"):
        decode_wav(buf.getvalue())
