"""Local downsampling, pure: what leaves the device is small, and nothing is ever written to disk.

Frames: at most ``min(camera.fps, hume.fps_pred)`` per second, resized (aspect kept, never enlarged) to fit
``camera.width`` x ``camera.height``, a frame near-identical to the last one *sent* is skipped (a static,
empty scene costs nothing), and the rest is encoded as JPEG at ``camera.jpeg_quality``.

Static-frame skip: a 32x24 grey thumbnail is compared with the last *sent* one in 48 cells and the most
changed cell counts (0.1 ms per frame here, grey conversion included). Measured on the synthetic scene:
the moving face changes its most changed cell by 4-21 grey levels between frames 0.4 s apart, while
Gaussian sensor noise of sigma 3 (8) grey levels gives 0.25 (0.56), so the default threshold of 2 never
skips a visitor and always skips a still, empty kiosk: a minute of it at 2 fps uploads 12 frames (one per
``static_refresh_s``, the refresh that keeps a visitor who stands still in view) instead of 120, and none
at all with the refresh off.

JPEG encoder, measured on this machine (x86-64, one core, 640x480 astronaut scene, quality 80, 4:2:0):

    cv2.imencode (BGR)                       0.48 ms   48.0 kB
    simplejpeg.encode_jpeg (BGR, 4:2:0)      0.50 ms   48.0 kB   (4:4:4, its default: 0.87 ms, 59.7 kB)
    simplejpeg.encode_jpeg_yuv_planes        0.37 ms   44.4 kB   (picamera2's lores YUV420, no colour step)
    Pillow (RGB, 4:2:0)                      0.65 ms   48.0 kB
    cv2 YUV420 -> BGR, then cv2.imencode     0.53 ms

Choice: simplejpeg (libjpeg-turbo) everywhere, with 4:2:0 subsampling asked for explicitly. Here it ties
with OpenCV on BGR, but on a Pi 3 at 640x480 it measured 13.9 ms against OpenCV's 17.1 ms and Pillow's
19.9 ms (codeTom/jpeg-encoding-performance), and it alone encodes YUV420 planes straight from the ISP,
23 % cheaper than any BGR path here. ``cv2.imencode`` is the fallback when simplejpeg is not installed.

Audio: the API takes a WAV container; we send 16 kHz mono signed 16-bit (the rate speech models use;
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
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

import numpy as np

from agent.config import CameraConfig

if TYPE_CHECKING:
    from agent.capture.camera import Frame

AUDIO_RATE = 16000
"""Samples per second of every chunk the agent sends (mono, signed 16-bit little-endian)."""

_THUMB = (32, 24)
"""Static-frame check thumbnail (width, height): small enough to be free, big enough to see a face move."""
_CELLS = (6, 8)
"""The thumbnail is compared in 6 x 8 cells (each 1/48 of the picture) and the most changed one counts:
a face moving in a corner of a still room must not be averaged away by the unchanged wall."""


@dataclasses.dataclass(frozen=True)
class EncodedFrame:
    """A frame ready for the face model."""

    jpeg: bytes
    width: int
    height: int
    captured_at: float


# --------------------------------------------------------------------------------------------------
# Frames


def _cv2() -> Any:
    import cv2  # noqa: PLC0415 - the "vision" extra: audio-only installs never need it

    return cv2


def fit_size(width: int, height: int, max_width: int, max_height: int) -> Tuple[int, int]:
    """The largest even size inside ``max_width`` x ``max_height`` with the input's aspect; never enlarges.

    Even sides keep YUV 4:2:0 chroma planes whole.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size {width}x{height}: both sides must be positive")
    scale = min(1.0, max_width / width, max_height / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def yuv420_planes(image: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a tight I420 image of shape (H*3//2, W)."""
    rows, w = image.shape
    h = rows * 2 // 3
    y = image[:h]
    u = image[h : h + h // 4].reshape(h // 2, w // 2)
    v = image[h + h // 4 : h + h // 2].reshape(h // 2, w // 2)
    return y, u, v


def frame_size(frame: Frame) -> Tuple[int, int]:
    """(width, height) of the picture a frame holds."""
    if frame.fmt == "yuv420":
        return frame.image.shape[1], frame.image.shape[0] * 2 // 3
    return frame.image.shape[1], frame.image.shape[0]


def grey(frame: Frame) -> np.ndarray:
    """The luma of a frame: free for YUV420 (its Y plane), one colour conversion for BGR."""
    if frame.fmt == "yuv420":
        return yuv420_planes(frame.image)[0]
    if frame.fmt == "bgr":
        luma: np.ndarray = _cv2().cvtColor(frame.image, _cv2().COLOR_BGR2GRAY)
        return luma
    raise ValueError(f"frame format {frame.fmt!r}: must be 'bgr' or 'yuv420'")


def _resize(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    cv2 = _cv2()
    resized: np.ndarray = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return resized


def _full_range_yuv420_to_bgr(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BGR from full-range (JFIF) planes; OpenCV's I420 conversions assume limited range (16-235)."""
    cv2 = _cv2()
    size = (y.shape[1], y.shape[0])
    cr, cb = (cv2.resize(p, size, interpolation=cv2.INTER_LINEAR) for p in (v, u))
    bgr: np.ndarray = cv2.cvtColor(cv2.merge([y, cr, cb]), cv2.COLOR_YCrCb2BGR)
    return bgr


def _select_encoders() -> Tuple[Callable[[np.ndarray, int], bytes], Optional[Callable[..., bytes]]]:
    """(BGR encoder, YUV420 planes encoder or None): simplejpeg when installed, else OpenCV."""
    try:
        import simplejpeg  # noqa: PLC0415 - optional: OpenCV is the fallback
    except ImportError:
        cv2 = _cv2()

        def cv2_bgr(image: np.ndarray, quality: int) -> bytes:
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise ValueError(f"cv2.imencode refused a {image.shape} image")
            return bytes(buf.tobytes())

        return cv2_bgr, None

    def sj_bgr(image: np.ndarray, quality: int) -> bytes:
        return bytes(
            simplejpeg.encode_jpeg(
                np.ascontiguousarray(image), quality, colorspace="BGR", colorsubsampling="420", fastdct=True
            )
        )

    def sj_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray, quality: int) -> bytes:
        return bytes(simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality, fastdct=True))

    return sj_bgr, sj_planes


class RateLimiter:
    """Lets an event through at most ``max_per_s`` times per second of the given clock.

    Slots are scheduled from the last accepted time, not a fixed grid, so a source slower than the limit is
    never throttled further, and a small jitter (5 % of the period) is tolerated so a source paced at exactly
    the limit is not cut in half by timestamp noise.
    """

    def __init__(self, max_per_s: float) -> None:
        if max_per_s <= 0:
            raise ValueError(f"rate limit {max_per_s}: must be > 0 per second")
        self.period_s = 1.0 / max_per_s
        self._last: Optional[float] = None

    def allow(self, t: float) -> bool:
        """Whether an event at time ``t`` passes; a passing event starts the next period."""
        if self._last is not None and 0.0 <= t - self._last < self.period_s * 0.95:
            return False  # (a clock stepped backwards, e.g. a Pi's first NTP sync, starts afresh)
        self._last = t
        return True


class FramePipeline:
    """Rate limit, static skip, resize and JPEG: one camera frame in, at most one payload out."""

    def __init__(self, cfg: CameraConfig, max_fps: float) -> None:
        self.cfg = cfg
        self.fps = min(cfg.fps, max_fps)
        self._rate = RateLimiter(self.fps)
        self._last_thumb: Optional[np.ndarray] = None
        self._last_sent_at = 0.0
        self._bgr_encoder, self._planes_encoder = _select_encoders()
        self.counters = {"in": 0, "rate_limited": 0, "static": 0, "sent": 0}
        """Frames seen, dropped by the rate limit, skipped as static, and sent (for status and tests)."""

    def process(self, frame: Frame) -> Optional[EncodedFrame]:
        """The JPEG to send for this frame, or None when it is rate-limited or near-identical to the last."""
        self.counters["in"] += 1
        if not self._rate.allow(frame.captured_at):
            self.counters["rate_limited"] += 1
            return None
        size = fit_size(*frame_size(frame), self.cfg.width, self.cfg.height)
        thumb: np.ndarray = _resize(grey(frame), _THUMB).astype(np.int16)
        if self._is_static(thumb, frame.captured_at):
            self.counters["static"] += 1
            return None
        jpeg = self._encode(frame, size)
        self._last_thumb = thumb
        self._last_sent_at = frame.captured_at
        self.counters["sent"] += 1
        return EncodedFrame(jpeg, size[0], size[1], frame.captured_at)

    def _is_static(self, thumb: np.ndarray, t: float) -> bool:
        if self._last_thumb is None or self.cfg.static_threshold <= 0:
            return False
        refresh, elapsed = self.cfg.static_refresh_s, t - self._last_sent_at
        if refresh > 0 and not 0.0 <= elapsed < refresh:  # due, or the clock stepped backwards
            return False
        rows, cols = _CELLS
        th, tw = thumb.shape
        diff = np.abs(thumb - self._last_thumb).reshape(rows, th // rows, cols, tw // cols)
        return float(diff.mean(axis=(1, 3)).max()) < self.cfg.static_threshold

    def _encode(self, frame: Frame, size: Tuple[int, int]) -> bytes:
        quality = self.cfg.jpeg_quality
        if frame.fmt == "yuv420":
            y, u, v = yuv420_planes(frame.image)
            if self._planes_encoder is not None:
                half = (size[0] // 2, size[1] // 2)
                return self._planes_encoder(_resize(y, size), _resize(u, half), _resize(v, half), quality)
            return self._bgr_encoder(_resize(_full_range_yuv420_to_bgr(y, u, v), size), quality)
        if frame.fmt == "bgr":
            return self._bgr_encoder(_resize(frame.image, size), quality)
        raise ValueError(f"frame format {frame.fmt!r}: must be 'bgr' or 'yuv420'")


# --------------------------------------------------------------------------------------------------
# Audio


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
