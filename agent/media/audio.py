"""Sound as plain values and pure arithmetic: the 16 kHz chunk the agent sends, resampling, voice activity.

The API takes a WAV container; we send 16 kHz mono signed 16-bit (the rate speech models use;
more only costs bandwidth). Resampling is a windowed-sinc (Hamming) anti-alias low-pass at the input rate,
cut at 7.5 kHz with a 1 kHz transition (-53 dB stop band), followed by linear interpolation at the output
instants. After the low-pass the signal is oversampled (about 3x from 44.1/48 kHz), where linear
interpolation loses under 0.3 dB at 7 kHz and adds little aliasing; one ``np.convolve`` in C per chunk is
~160 multiply-adds per input sample at 48 kHz, about 1 % of a Pi core, with no SciPy dependency.
"""

from __future__ import annotations

import dataclasses
import io
import wave
from typing import List, Tuple

import numpy as np

AUDIO_RATE = 16000
"""Samples per second of every chunk the agent sends (mono, signed 16-bit little-endian): the one
definition, which both Hume clients and the emulators use."""
BYTES_PER_MS = AUDIO_RATE * 2 // 1000
"""32 bytes of that audio per millisecond."""


@dataclasses.dataclass(frozen=True)
class AudioChunk:
    """``chunk_ms`` of 16 kHz mono s16le audio; ``captured_at`` is the wall-clock time of its first sample.

    ``captured_mono`` is the same moment on ``time.monotonic()``, stamped where the audio is captured (the
    microphone's thread, before its queue): the clock the hub decides by whether a sample was captured
    before its visit's notice was out (a wall clock steps at an NTP sync; a chunk of 1 s arriving just
    after the notice holds up to 1 s from before it)."""

    pcm16: bytes
    captured_at: float
    captured_mono: float


def _lowpass_taps(rate: int, cutoff_hz: float, transition_hz: float) -> np.ndarray:
    """Hamming-windowed sinc low-pass; length from the window's transition width (3.3 / N of the rate)."""
    n = int(3.3 * rate / transition_hz) | 1
    k = np.arange(n) - (n - 1) / 2
    taps = np.sinc(2 * cutoff_hz / rate * k) * np.hamming(n)
    normalized: np.ndarray = (taps / taps.sum()).astype(np.float32)
    return normalized


class Resampler:
    """Streaming mono resampler to 16 kHz (or ``out_rate``): feed chunks of any size, get continuous output.

    State (the filter's history and the fractional read position) carries across calls, so chunk
    boundaries leave no clicks and the output length tracks the input duration exactly over time.
    """

    def __init__(self, in_rate: int, out_rate: int = AUDIO_RATE) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates {in_rate} -> {out_rate}: both must be positive")
        self.in_rate, self.out_rate = in_rate, out_rate
        nyquist_out = out_rate / 2
        self._taps = (
            _lowpass_taps(in_rate, nyquist_out - 500.0, 1000.0)
            if in_rate > out_rate
            else np.ones(1, np.float32)
        )
        self._history = np.zeros(len(self._taps) - 1, np.float32)
        self._filtered = np.zeros(0, np.float32)
        self._pos = 0
        """Read position in the filtered samples, in units of 1/out_rate input samples: exact integers,
        so no rounding drift however long the stream runs and however it is cut into chunks."""

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample mono int16 (or float) samples; returns int16 at the output rate."""
        x = np.asarray(samples, dtype=np.float32)
        if self.in_rate == self.out_rate:
            same: np.ndarray = x.astype(np.int16)
            return same
        padded = np.concatenate([self._history, x])
        if len(self._taps) > 1:
            self._history = padded[len(padded) - (len(self._taps) - 1) :]
        y = np.concatenate([self._filtered, np.convolve(padded, self._taps, mode="valid")])
        # Output k sits at input position (pos + k * in_rate) / out_rate and needs samples i and i + 1.
        room = (len(y) - 1) * self.out_rate - self._pos
        count = max(0, -(-room // self.in_rate))
        num = self._pos + self.in_rate * np.arange(count, dtype=np.int64)
        i = num // self.out_rate
        frac = ((num % self.out_rate) / self.out_rate).astype(np.float32)
        out = y[i] * (1 - frac) + y[np.minimum(i + 1, len(y) - 1)] * frac
        end = self._pos + self.in_rate * count
        keep = min(end // self.out_rate, len(y))  # the next position may lie beyond what we have yet
        self._filtered = y[keep:]
        self._pos = end - keep * self.out_rate
        result: np.ndarray = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
        return result


def to_mono(interleaved: np.ndarray, channels: int) -> np.ndarray:
    """Average interleaved channels into one (int16 in, float32 out, no clipping)."""
    mono: np.ndarray = np.asarray(interleaved, dtype=np.float32)
    if channels > 1:
        frames = len(mono) // channels
        mono = mono[: frames * channels].reshape(frames, channels).mean(axis=1)
    return mono


class AudioChunker:
    """Cuts a continuous 16 kHz stream into chunks of exactly ``chunk_ms`` (the last partial one is kept)."""

    def __init__(self, chunk_ms: int, rate: int = AUDIO_RATE) -> None:
        if chunk_ms <= 0:
            raise ValueError(f"chunk_ms {chunk_ms}: must be > 0")
        self.chunk_samples = rate * chunk_ms // 1000
        self._parts: List[np.ndarray] = []
        self._buffered = 0

    def push(self, samples: np.ndarray) -> List[bytes]:
        """Add int16 samples; return every complete chunk as s16le bytes."""
        self._parts.append(np.asarray(samples, dtype="<i2"))
        self._buffered += len(samples)
        if self._buffered < self.chunk_samples:
            return []
        joined = np.concatenate(self._parts)
        whole = len(joined) // self.chunk_samples * self.chunk_samples
        rest = joined[whole:]
        self._parts, self._buffered = [rest], len(rest)
        return [joined[i : i + self.chunk_samples].tobytes() for i in range(0, whole, self.chunk_samples)]


def rms_dbfs(pcm16: bytes) -> float:
    """Level of s16le audio in dB relative to full scale (-inf dB shown as -120)."""
    x = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
    if len(x) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(x * x)))
    return max(-120.0, 20 * float(np.log10(max(rms, 1e-9) / 32768)))


VOICE_THRESHOLD_DBFS = -40.0
"""Energy above which a 20 ms frame counts as voiced: well above a USB microphone's noise floor (~-60
dBFS) and below conversational speech at a metre (~-30 to -20 dBFS)."""
VOICE_FRAME_MS = 20


def voiced_frames(
    pcm16: bytes, rate: int = AUDIO_RATE, threshold_dbfs: float = VOICE_THRESHOLD_DBFS
) -> np.ndarray:
    """One bool per whole 20 ms frame of s16le audio: louder than ``threshold_dbfs`` (a trailing partial
    frame is not judged)."""
    x = np.frombuffer(pcm16[: len(pcm16) - len(pcm16) % 2], dtype="<i2").astype(np.float32)
    frame = rate * VOICE_FRAME_MS // 1000
    frames = len(x) // frame
    if frames == 0:
        return np.zeros(0, dtype=bool)
    energy = np.mean(x[: frames * frame].reshape(frames, frame) ** 2, axis=1)
    loud: np.ndarray = energy > (32768.0 * 10 ** (threshold_dbfs / 20)) ** 2
    return loud


def voice_activity(
    pcm16: bytes,
    rate: int = AUDIO_RATE,
    threshold_dbfs: float = VOICE_THRESHOLD_DBFS,
    min_voiced_ms: int = 60,
) -> bool:
    """Whether the chunk holds voice: at least ``min_voiced_ms`` of 20 ms frames louder than the threshold.

    An energy gate, not a speech classifier: a kiosk only needs "someone is making sound near the
    microphone" to keep a visit alive, and it costs one pass over the samples.
    """
    return int(np.count_nonzero(voiced_frames(pcm16, rate, threshold_dbfs))) * VOICE_FRAME_MS >= min_voiced_ms


def wav_bytes(pcm16: bytes, rate: int = AUDIO_RATE) -> bytes:
    """An in-memory mono 16-bit WAV container around s16le samples: the audio format the API accepts."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm16)
    return buf.getvalue()


def decode_wav(data: bytes) -> Tuple[np.ndarray, int]:
    """Mono int16 samples and rate of an in-memory 16-bit PCM WAV.

    Tolerates a streamed header whose sizes are placeholders (espeak-ng ``--stdout`` writes 0x7ffff000).
    """
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a PCM WAV: {exc}") from None
    if width != 2:
        raise ValueError(f"WAV sample width {width * 8} bits: only 16-bit PCM is supported")
    x = np.frombuffer(raw[: len(raw) // (2 * channels) * 2 * channels], dtype="<i2")
    return np.asarray(np.rint(to_mono(x, channels)), dtype=np.int16), rate
