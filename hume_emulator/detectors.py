"""Local, API-neutral detectors the emulators build their predictions on: faces in an image, speech in PCM.

Real detectors (OpenCV's bundled Haar cascade; a short-time energy voice detector) rather than canned
answers, so an emulated reply changes when the scene or the sound changes, and "nothing detected"
happens exactly when a person would agree that nothing is there. Nothing here knows a wire format:
the v0 emulator and a later v1 emulator both translate these results into their own messages.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from typing import Any, List, Tuple

import numpy as np

from agent.media.audio import AUDIO_RATE

DETECT_MAX_SIDE_PX = 800
"""Images are searched at most this large (boxes are scaled back): a 3000 px frame would take seconds."""
HAAR_MIN_SIDE_PX = 24
"""The cascade's own window; smaller faces cannot be found at all."""
HAAR_MIN_NEIGHBORS = 3

SPEECH_RATE_HZ = AUDIO_RATE
"""Every analysed signal is brought to this rate first, so windows and features are rate-independent."""
FRAME_S = 0.02
SILENCE_FLOOR_RMS = 0.01
"""-40 dBFS: quieter frames are never speech, however quiet the room."""
NOISE_FACTOR = 4.0
"""A frame is voiced when it is this many times louder than the quietest tenth of the signal..."""
PEAK_FACTOR = 0.5
"""...or, in a signal that is voiced throughout (no quiet tenth), at least half as loud as its peak."""
MAX_VOICED_ZCR = 0.35
"""Frames crossing zero more often than this are noise (hiss, fans), not a voice."""
MERGE_GAP_S = 0.25
MIN_SEGMENT_S = 0.1


def opencv() -> Any:
    """OpenCV 4 (the ``vision`` extra), imported on first use: the agent's CLI imports the emulator
    module on every start, also on a kiosk installed without the extra."""
    try:
        import cv2  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeError(
            f"OpenCV is needed for face detection and image decoding ({exc}): "
            "pip install 'hume-edge-agent[vision]'"
        ) from None
    return cv2


@dataclasses.dataclass(frozen=True)
class FaceBox:
    """A detected face in the input image's pixel coordinates; ``prob`` is in [0, 1]."""

    x: int
    y: int
    w: int
    h: int
    prob: float


_local = threading.local()


def _cascade(name: str = "frontalface_default") -> Any:
    """This thread's ``haarcascade_<name>.xml``: OpenCV does not promise that one classifier may detect
    in two threads."""
    cascades = _local.__dict__.setdefault("cascades", {})
    cascade = cascades.get(name)
    if cascade is not None:
        return cascade
    cv2 = opencv()
    path = f"{cv2.data.haarcascades}haarcascade_{name}.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {name} cascade could not be loaded from {path} (OpenCV 5 has none)")
    cascades[name] = cascade
    return cascade


def face_probability(neighbors: int) -> float:
    """Map the cascade's count of overlapping detections to a probability.

    A real face is confirmed by many neighbouring windows (the astronaut photo: 15-44), a false
    positive by few (3-7). The curve puts Hume's default threshold 0.99 at about 12 neighbours.
    """
    return 1.0 - 0.5 * math.exp(-max(0, neighbors) / 3.0)


def detect_faces(image_bgr: np.ndarray, min_side_px: float = 0.0) -> List[FaceBox]:
    """Find frontal faces whose box sides are at least ``min_side_px``; sorted left to right."""
    cv2 = opencv()
    height, width = image_bgr.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE_PX / max(height, width))
    gray = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    min_side = max(HAAR_MIN_SIDE_PX, math.floor(min_side_px * scale))
    if min_side > min(gray.shape[:2]):
        return []
    boxes, neighbors = _cascade().detectMultiScale2(
        gray, scaleFactor=1.1, minNeighbors=HAAR_MIN_NEIGHBORS, minSize=(min_side, min_side)
    )
    faces = []
    for (x, y, w, h), n in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(neighbors).reshape(-1)):
        box = FaceBox(
            round(x / scale), round(y / scale), round(w / scale), round(h / scale), face_probability(int(n))
        )
        if min(box.w, box.h) >= min_side_px:
            faces.append(box)
    return sorted(faces, key=lambda f: (f.x, f.y))


CUE_FACE_SIDE_PX = 96
"""A face region is searched for a smile and for eyes at this size, so cascade neighbour counts compare
across faces of any size, and the search costs the same for every face."""
CUE_SCALE_FACTOR = 1.2
"""Coarser than the face search (1.1): half the windows, and still a wide gap between smiling and not."""
SMILE_NEIGHBORS_FLOOR = 40
SMILE_NEIGHBORS_SCALE = 20.0
"""Smile strength = 1 - exp(-(neighbours - 40) / 20) for the best centred mouth in the lower half of the
face. Measured on the synthetic camera's frames (320x240 to 1280x720, JPEG q80): smiling 73-113 (0.81-0.97),
the painted neutral mouth 9-32 (0)."""
EYE_NEIGHBORS_FULL = 20
"""An eye confirmed by this many windows counts fully: open eyes score 17-38, the painted closed ones 0."""


@dataclasses.dataclass(frozen=True)
class FaceCues:
    """What one face shows, each in [0, 1]: a smiling mouth, and how surely both eyes are open."""

    smile: float
    eyes_open: float


def face_cues(image_bgr: np.ndarray, box: Tuple[int, int, int, int]) -> FaceCues:
    """Smile and open eyes inside a detected face, from OpenCV's bundled smile and eye cascades.

    Geometry keeps the cascades honest: a smile counts only in the lower half of the face with its
    centre in the middle half of the width; eyes only in the upper 60 %. The two strongest eyes count,
    so one eye hidden by hair or glare reads as half open, not closed.

    Cost: 2-6 ms per face (best of 40 on this shared 2-core machine), beside 18-35 ms for finding the
    faces in a 640x480 frame and ~32 ms for a whole v0 face request: 10-15 % more per frame.
    """
    cv2 = opencv()
    gray = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    x, y, w, h = box
    region = gray[max(0, y) : y + h, max(0, x) : x + w]
    if min(region.shape[:2]) < HAAR_MIN_SIDE_PX // 2:
        return FaceCues(smile=0.0, eyes_open=1.0)  # too small to read: a neutral face, not a sleeping one
    side = CUE_FACE_SIDE_PX
    roi = cv2.equalizeHist(cv2.resize(region, (side, side), interpolation=cv2.INTER_AREA))
    mouths, mouth_n = _cascade("smile").detectMultiScale2(
        roi[side // 2 :], CUE_SCALE_FACTOR, HAAR_MIN_NEIGHBORS, minSize=(side // 4, side // 8)
    )
    best = max(
        (
            int(n)
            for (mx, _, mw, _), n in zip(np.asarray(mouths).reshape(-1, 4), np.asarray(mouth_n).reshape(-1))
            if side / 4 <= mx + mw / 2 <= 3 * side / 4
        ),
        default=0,
    )
    _, eye_n = _cascade("eye").detectMultiScale2(
        roi[: side * 6 // 10],
        scaleFactor=1.1,
        minNeighbors=HAAR_MIN_NEIGHBORS,
        minSize=(side // 8, side // 8),
    )
    strongest = sorted((int(n) for n in np.asarray(eye_n).reshape(-1)), reverse=True)[:2]
    return FaceCues(
        smile=1.0 - math.exp(-max(0, best - SMILE_NEIGHBORS_FLOOR) / SMILE_NEIGHBORS_SCALE),
        eyes_open=sum(min(1.0, n / EYE_NEIGHBORS_FULL) for n in strongest) / 2.0,
    )


def iou(a: Tuple[float, float, float, float], b: Tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mix int or float PCM (frames x channels, or 1-D) to mono float32 in [-1, 1] at 16 kHz."""
    data = np.asarray(samples)
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float64) / float(np.iinfo(data.dtype).max)
    mono = data.mean(axis=1) if data.ndim == 2 else data.astype(np.float64)
    if rate != SPEECH_RATE_HZ and mono.size:
        n_out = max(1, round(mono.size * SPEECH_RATE_HZ / rate))
        mono = np.interp(np.arange(n_out) * (rate / SPEECH_RATE_HZ), np.arange(mono.size), mono)
    out: np.ndarray = np.asarray(np.clip(mono, -1.0, 1.0), dtype=np.float32)
    return out


def _framed(values: np.ndarray) -> np.ndarray:
    """``values`` as consecutive 20 ms frames at 16 kHz (n x 320), the last one zero-padded."""
    step = round(FRAME_S * SPEECH_RATE_HZ)
    n = math.ceil(values.size / step)
    padded: np.ndarray = np.zeros(n * step, dtype=np.float64)
    padded[: values.size] = values
    out: np.ndarray = np.asarray(padded.reshape(n, step))
    return out


def frame_rms(signal: np.ndarray) -> np.ndarray:
    """RMS of consecutive 20 ms frames of a 16 kHz signal (a trailing partial frame counts)."""
    out: np.ndarray = np.asarray(np.sqrt((_framed(signal) ** 2).mean(axis=1)))
    return out


def frame_zcr(signal: np.ndarray) -> np.ndarray:
    """Zero-crossing rate (crossings per sample) of the same frames as :func:`frame_rms`."""
    crossings: np.ndarray = np.zeros(signal.size, dtype=np.float64)
    crossings[1:] = np.abs(np.diff(np.signbit(signal).astype(np.int8)))
    out: np.ndarray = np.asarray(_framed(crossings).mean(axis=1))
    return out


def speech_segments(signal: np.ndarray) -> List[Tuple[float, float]]:
    """Voiced stretches of a 16 kHz mono signal as (begin_s, end_s), pauses under 250 ms bridged."""
    if signal.size == 0:
        return []
    rms = frame_rms(signal)
    floor = NOISE_FACTOR * float(np.percentile(rms, 10))
    threshold = max(SILENCE_FLOOR_RMS, min(floor, PEAK_FACTOR * float(rms.max())))
    voiced = (rms > threshold) & (frame_zcr(signal) <= MAX_VOICED_ZCR)
    segments: List[List[float]] = []
    for i in np.flatnonzero(voiced):
        begin, end = i * FRAME_S, (i + 1) * FRAME_S
        if segments and begin - segments[-1][1] <= MERGE_GAP_S:
            segments[-1][1] = end
        else:
            segments.append([begin, end])
    duration = signal.size / SPEECH_RATE_HZ
    return [(b, min(e, duration)) for b, e in segments if min(e, duration) - b >= MIN_SEGMENT_S]


def audio_features(signal: np.ndarray) -> Tuple[float, ...]:
    """A few prosodic features of a 16 kHz stretch: loudness, brightness, pitch, and their spread.

    Values are squashed to roughly [-1, 1] so a linear read-out of them behaves for any input.
    """
    if signal.size < 2:
        return (0.0,) * 6
    rms = frame_rms(signal)
    loudness = 20 * math.log10(float(np.sqrt(np.mean(signal.astype(np.float64) ** 2))) + 1e-6)
    zcr = float(np.mean(np.abs(np.diff(np.signbit(signal).astype(np.int8)))))
    spectrum = np.abs(np.fft.rfft(signal.astype(np.float64)))
    freqs = np.fft.rfftfreq(signal.size, 1.0 / SPEECH_RATE_HZ)
    centroid = float((spectrum * freqs).sum() / (spectrum.sum() + 1e-9))
    return (
        math.tanh((loudness + 30.0) / 15.0),
        math.tanh(zcr * 8.0 - 1.0),
        math.tanh((centroid - 1500.0) / 1000.0),
        math.tanh((_pitch_hz(signal) - 160.0) / 80.0),
        math.tanh(float(np.std(rms)) * 20.0 - 1.0),
        math.tanh(signal.size / SPEECH_RATE_HZ - 1.5),
    )


def _pitch_hz(signal: np.ndarray) -> float:
    """Median of :func:`pitch_track` over the voiced frames (0 when none is voiced)."""
    track = pitch_track(signal)
    voiced = track[track > 0]
    return float(np.median(voiced)) if voiced.size else 0.0


PITCH_FRAME_S = 0.04
PITCH_HOP_S = 0.02
PITCH_MIN_HZ, PITCH_MAX_HZ = 70, 400
PITCH_VOICED_CORR = 0.4
"""A 40 ms frame has a pitch when its autocorrelation at the best lag is at least this share of its energy."""


@dataclasses.dataclass(frozen=True)
class VoiceCues:
    """How a stretch of speech sounds: loudness, pitch level, pitch movement and speaking rate."""

    loudness_dbfs: float
    pitch_hz: float
    """Median pitch of the voiced frames (0 when none)."""
    pitch_spread_st: float
    """Interquartile range of the pitch track in semitones, octave jumps folded back (a flat voice: ~1)."""
    syllables_per_s: float
    """Peaks of the loudness envelope per second of voiced sound (calm speech ~5, lively ~7.5)."""

    @property
    def liveliness(self) -> float:
        """0 (calm, quiet, slow, low and flat) .. 1 (lively, loud, fast, high and moving).

        Calibrated on espeak-ng: its default voice (-a 100 -s 175 -p 50) reads 0.4-0.5, ``-a 180 -s 210
        -p 75`` 0.8-0.9 and ``-a 60 -s 120 -p 25`` 0.1-0.2.
        """
        arousal = 0.45 * (self.loudness_dbfs + 21.0) / 5.0 + 0.3 * (self.syllables_per_s - 5.8)
        if self.pitch_hz > 0:  # unvoiced (whispered, noisy): pitch says nothing either way
            arousal += 0.5 * math.log2(self.pitch_hz / 110.0) + 0.075 * (self.pitch_spread_st - 3.0)
        return 0.5 * (1.0 + math.tanh(arousal))


def pitch_track(signal: np.ndarray) -> np.ndarray:
    """Autocorrelation pitch (Hz) of 40 ms frames every 20 ms of a 16 kHz signal; 0 where unvoiced."""
    frame, hop = round(PITCH_FRAME_S * SPEECH_RATE_HZ), round(PITCH_HOP_S * SPEECH_RATE_HZ)
    if signal.size < frame:
        none: np.ndarray = np.zeros(0)
        return none
    n = 1 + (signal.size - frame) // hop
    frames = signal[np.arange(frame)[None, :] + hop * np.arange(n)[:, None]].astype(np.float64)
    frames -= frames.mean(axis=1, keepdims=True)
    corr = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * frame, axis=1)) ** 2, axis=1)[:, :frame]
    lo, hi = SPEECH_RATE_HZ // PITCH_MAX_HZ, SPEECH_RATE_HZ // PITCH_MIN_HZ
    lag = lo + np.argmax(corr[:, lo:hi], axis=1)
    energy = corr[:, 0]
    voiced = (
        (corr[np.arange(n), lag] > PITCH_VOICED_CORR * energy)
        & (energy > frame * SILENCE_FLOOR_RMS**2)
        & (energy > 0.05 * energy.max())
    )
    out: np.ndarray = np.where(voiced, SPEECH_RATE_HZ / lag, 0.0)
    return out


def syllable_rate(signal: np.ndarray) -> float:
    """Peaks per voiced second of the smoothed 20 ms loudness envelope: each syllable is one loud vowel."""
    rms = frame_rms(signal)
    if rms.size < 3:
        return 0.0
    envelope = np.convolve(rms, np.ones(3) / 3.0, mode="same")
    loud = max(SILENCE_FLOOR_RMS, 0.3 * float(envelope.max()))
    middle = envelope[1:-1]
    peaks = int(((middle > envelope[:-2]) & (middle >= envelope[2:]) & (middle > loud)).sum())
    voiced_s = float((envelope > max(SILENCE_FLOOR_RMS, 0.1 * float(envelope.max()))).sum()) * FRAME_S
    return peaks / voiced_s if voiced_s >= MIN_SEGMENT_S else 0.0


def voice_cues(signal: np.ndarray) -> VoiceCues:
    """:class:`VoiceCues` of a 16 kHz mono stretch (float in [-1, 1]).

    Cost: 0.8 ms per second of audio (the demo's 23 s speech loop, best of 10), a sixth of what
    :func:`audio_features` beside it takes (4.8 ms per second).
    """
    if signal.size < 2:
        return VoiceCues(-120.0, 0.0, 0.0, 0.0)
    loudness = 20 * math.log10(float(np.sqrt(np.mean(signal.astype(np.float64) ** 2))) + 1e-6)
    track = pitch_track(signal)
    voiced = track[track > 0]
    if voiced.size < 3:
        return VoiceCues(loudness, 0.0, 0.0, syllable_rate(signal))
    median = float(np.median(voiced))
    semitones = (12.0 * np.log2(voiced / median) + 6.0) % 12.0 - 6.0
    spread = float(np.percentile(semitones, 75) - np.percentile(semitones, 25))
    return VoiceCues(loudness, median, spread, syllable_rate(signal))


def image_features(image_bgr: np.ndarray, box: Tuple[int, int, int, int]) -> Tuple[float, ...]:
    """Features of a face region relative to its image: brightness, contrast, texture, symmetry, size."""
    cv2 = opencv()
    gray = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    x, y, w, h = box
    region: np.ndarray = gray[max(0, y) : y + h, max(0, x) : x + w].astype(np.float64)
    if region.size == 0:
        region = gray.astype(np.float64)
    upper, lower = region[: region.shape[0] // 2], region[region.shape[0] // 2 :]
    left, right = region[:, : region.shape[1] // 2], region[:, region.shape[1] - region.shape[1] // 2 :]
    texture = float(cv2.Laplacian(region, cv2.CV_64F).var()) if min(region.shape) >= 3 else 0.0
    return (
        (region.mean() - 128.0) / 128.0,
        math.tanh((region.std() - 50.0) / 25.0),
        (region.mean() - gray.mean()) / 128.0,
        math.tanh((upper.mean() - lower.mean()) / 40.0),
        math.tanh(float(np.abs(left - right[:, ::-1]).mean()) / 20.0 - 1.0),
        math.tanh(math.log10(texture + 1.0) - 2.0),
        math.tanh(4.0 * (w * h) / float(gray.shape[0] * gray.shape[1]) - 1.0),
    )
