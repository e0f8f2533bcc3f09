"""The v1 emulator's sessions as pure state machines: bytes and text in, server messages out.

No sockets here, so every rule of the contract (config lock, frame validity, size and rate limits,
which errors end the session, utterances and measurement windows, face listing) is unit-testable with
a fake clock. ``emulator.py`` only moves these messages over aiohttp WebSockets.

Predictions come from the media through the shared detectors and cues (``hume_emulator.detectors``: a
smile, open eyes, a lively or calm voice) and the seed-driven scores (``hume_emulator.scoring``) the v0
emulator also uses, so ``joy`` leads on a smiling face and ``calm`` on a calm voice. The vocabularies
below are the names Hume's v1 docs confirm verbatim; the real lists are longer (415 / 190 / 48 / 27)
and open-ended, which is exactly why clients must never depend on them (so a closed-eyed face shows
``contemplation`` here: no tiredness label is confirmed for v1 video).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import uuid
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

import numpy as np

from agent.hume.v1 import protocol as p
from agent.media.audio import AUDIO_RATE, BYTES_PER_MS
from agent.throttle import TokenBucket
from hume_emulator import detectors, scoring

AUDIO_EXPRESSIONS = (
    "abhorrence",
    "admiration",
    "adoration",
    "amusement",
    "anger",
    "chuckling",
    "dumbfoundedness",
    "eagerness",
    "feeling uplifted",
    "feeling upset",
    "interest",
    "joy",
    "neutral",
    "pleasure",
    "pondering",
)
VOICE_ATTRIBUTES = ("background music", "calm", "clear", "fast", "husky", "monotone")
VIDEO_EXPRESSIONS = (
    "admiration",
    "adoration",
    "amusement",
    "concentration",
    "contemplation",
    "contempt",
    "entrancement",
    "interest",
    "joy",
    "realization",
    "surprise (positive)",
)
VIDEO_DESCRIPTIONS = ("grin", "jaw drop", "smile", "wide-eyed")
EXPRESSION_PRESENT = 0.25
"""Hume keeps an audio expression above a per-expression threshold it does not publish; one stands in."""

VAD_FRAME_MS = round(detectors.FRAME_S * 1000)
VAD_HISTORY_FRAMES = 1500
"""Thirty seconds of frame loudness: the noise floor is their quietest tenth, as in ``speech_segments``,
so a long utterance needs a few seconds of room sound before it (as any real one has)."""
FACE_MATCH_IOU = 0.3

Message = Dict[str, Any]


@dataclasses.dataclass
class FaultsV1:
    """Faults a test switches on while sessions run (mutable on purpose; each is used up as it fires)."""

    fail_measurements: int = 0
    """The next N measurements fail: audio ends its session with ``internal_error``; video answers the
    frame with a retryable ``internal_error`` and ends the session at the fifth in a row."""
    rate_limit_frames: int = 0
    """The next N media frames that pass the other checks are answered ``rate_limited`` anyway."""
    refuse_status: int = 0
    """Answer every handshake with this HTTP status (e.g. 503) instead of upgrading; 0 = off."""
    drift_field: int = 0
    """Non-zero: every server message carries a field the published contract does not have
    (``emulated_drift``), as a newer server would: what ``hume-edge probe`` must list."""
    drift_message: int = 0
    """Non-zero: right after ``session.created`` the server sends a message of a type the contract does not
    have (``emulated.drift``)."""
    drift_close_code: int = 0
    """Non-zero: sessions end with this WebSocket close code instead of the usual one."""

    def take_failure(self) -> bool:
        return self._take("fail_measurements")

    def take_rate_limit(self) -> bool:
        return self._take("rate_limit_frames")

    def _take(self, name: str) -> bool:
        left: int = getattr(self, name)
        if left > 0:
            setattr(self, name, left - 1)
        return left > 0


def _ranked(labels: Tuple[str, ...], raw: Tuple[float, ...], keep: Callable[[float], bool]) -> p.Scores:
    """Scores kept by ``keep`` (on the rounded value), highest first, ties by raw score then name."""
    items = sorted(zip(labels, raw), key=lambda it: (-round(it[1], 4), -it[1], it[0]))
    return tuple(p.Score(name, p.round4(v)) for name, v in items if keep(p.round4(v)))


class _Session:
    """What both endpoints share: the lifecycle, config lock, size limit and ending messages."""

    endpoint = ""
    max_message = 0

    def __init__(self, seed: int, faults: FaultsV1) -> None:
        self.session_id = str(uuid.uuid4())
        self.seed = seed
        self.faults = faults
        self.outbox: List[Message] = []
        self.close_code: Optional[int] = None
        """Set once the session has ended: the WebSocket close code to send."""
        self.reason: Optional[str] = None
        self.locked = False
        self.config: Dict[str, Any] = self.defaults()
        self.outbox.append({"type": "session.created", "session_id": self.session_id, **self.config})

    # -- overridden per endpoint
    def defaults(self) -> Dict[str, Any]:
        raise NotImplementedError

    def parse_config(self, msg: Mapping[str, Any]) -> Dict[str, Any]:
        raise NotImplementedError

    def on_media(self, data: bytes, now: float) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Flush in-flight work before an orderly ``client_request`` close."""

    def totals(self) -> Tuple[Dict[str, int], Dict[str, int]]:
        raise NotImplementedError

    # -- shared rules
    def error(self, code: str, message: str, retryable: bool) -> None:
        self.outbox.append({"type": "error", "code": code, "message": message, "retryable": retryable})

    def fail(self, code: str, message: str) -> None:
        """A session-ending error: the error, then ``session.closed`` with reason ``error``, then 1008."""
        self.error(code, message, False)
        self.end(p.Reasons.ERROR, p.CLOSE_POLICY)

    def end(self, reason: str, close_code: int) -> None:
        if self.close_code is not None:
            return
        received, produced = self.totals()
        self.outbox.append(
            {
                "type": "session.closed",
                "session_id": self.session_id,
                "reason": reason,
                "received": received,
                "produced": produced,
            }
        )
        self.reason, self.close_code = reason, close_code

    def on_binary(self, data: bytes, now: float) -> None:
        if self.close_code is not None:
            return
        if len(data) > self.max_message:
            self.fail(p.Codes.MESSAGE_TOO_LARGE, f"message of {len(data)} bytes exceeds {self.max_message}")
            return
        self.on_media(data, now)

    def on_text(self, text: str) -> None:
        if self.close_code is not None:
            return
        if len(text.encode()) > self.max_message:
            self.fail(p.Codes.MESSAGE_TOO_LARGE, f"message exceeds {self.max_message} bytes")
            return
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        kind = msg.get("type") if isinstance(msg, dict) else None
        if not isinstance(msg, dict) or kind not in ("session.update", "session.close"):
            self.error(p.Codes.MESSAGE_INVALID, f"not a JSON object with a known type: {text[:60]!r}", True)
            return
        if kind == "session.close":
            self.finish()
            self.end(p.Reasons.CLIENT_REQUEST, p.CLOSE_NORMAL)
            return
        if self.locked:
            self.fail(p.Codes.CONFIG_INVALID, "session.update after the first media frame: config is locked")
            return
        try:
            self.config = self.parse_config(msg)
        except ValueError as exc:
            self.fail(p.Codes.CONFIG_INVALID, str(exc))
            return
        self.outbox.append({"type": "session.updated", **self.config})


def _only_keys(obj: Any, where: str, allowed: Tuple[str, ...]) -> Mapping[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be an object")
    for key in obj:
        if key not in allowed:
            raise ValueError(f"unknown field `{key}` in {where}, expected one of {', '.join(allowed)}")
    return obj


def _fixed(obj: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> Dict[str, Any]:
    for key, value in obj.items():
        if value != defaults[key]:
            raise ValueError(f"{where}.{key} = {value!r} is not supported: only {defaults[key]!r}")
    return dict(defaults)


class SpeechTracker:
    """Streaming speech detection over the accepted audio timeline, in 20 ms frames.

    The rules are those of :func:`hume_emulator.detectors.speech_segments` (noise floor = quietest tenth
    of recent loudness, pauses under 250 ms bridged, stretches under 100 ms ignored), applied as audio
    arrives instead of to a whole recording.
    """

    def __init__(self) -> None:
        self.total_ms = 0
        self._pending = np.zeros(0, dtype=np.float32)
        self._history: Deque[float] = collections.deque(maxlen=VAD_HISTORY_FRAMES)
        self.start_ms: Optional[int] = None
        self.last_voiced_ms = 0
        self.voiced_now = False
        span = (p.MEASUREMENT_WINDOW_MS + round(detectors.MERGE_GAP_S * 1000)) // VAD_FRAME_MS + 1
        self._frames: Deque[Tuple[int, np.ndarray]] = collections.deque(maxlen=span)

    def feed(self, pcm16: bytes) -> List[Tuple[int, int, bool]]:
        """Add accepted audio; return each completed 20 ms frame as (start_ms, end_ms, voiced)."""
        samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32767.0
        signal = np.concatenate([self._pending, samples])
        step = VAD_FRAME_MS * AUDIO_RATE // 1000
        whole = signal.size // step * step
        self._pending = signal[whole:]
        out = []
        for i, rms in enumerate(detectors.frame_rms(signal[:whole]) if whole else ()):
            self._history.append(float(rms))
            floor = float(np.percentile(np.asarray(self._history), 10))
            voiced = float(rms) > max(detectors.SILENCE_FLOOR_RMS, detectors.NOISE_FACTOR * floor)
            begin = self.total_ms
            self.total_ms += VAD_FRAME_MS
            self._frames.append((begin, signal[i * step : (i + 1) * step]))
            self.voiced_now = voiced
            out.append((begin, self.total_ms, voiced))
        return out

    def window(self, begin_ms: int, end_ms: int) -> np.ndarray:
        """The audio of [begin_ms, end_ms) still held (at most the last ten seconds and a pause)."""
        parts = [f for t, f in self._frames if begin_ms <= t < end_ms]
        signal: np.ndarray = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return signal


class AudioSession(_Session):
    """``/v1/expression/audio/realtime``: PCM in; utterances and their measurements out."""

    endpoint = "audio"
    max_message = p.AUDIO_MESSAGE_MAX_BYTES

    def __init__(self, seed: int, faults: FaultsV1, now: float, burst_ms: float) -> None:
        super().__init__(seed, faults)
        self._bucket = TokenBucket(1000.0, burst_ms, now, initial=burst_ms)
        self._speech = SpeechTracker()
        self.frames = 0
        self.accepted_bytes = 0
        self.utterances = 0
        self.measurements = 0
        self._announced = False
        self._next_interval_ms = 0
        self._last_measured_end: Optional[int] = None

    def defaults(self) -> Dict[str, Any]:
        return {"audio": dict(p.AUDIO_FORMAT), "measurement_timer_ms": p.TIMER_MS_DEFAULT}

    def parse_config(self, msg: Mapping[str, Any]) -> Dict[str, Any]:
        _only_keys(msg, "session.update", ("type", "audio", "measurement_timer_ms"))
        audio = _fixed(_only_keys(msg.get("audio"), "audio", tuple(p.AUDIO_FORMAT)), p.AUDIO_FORMAT, "audio")
        timer = msg.get("measurement_timer_ms", p.TIMER_MS_DEFAULT)
        if (
            isinstance(timer, bool)
            or not isinstance(timer, int)
            or not p.TIMER_MS_MIN <= timer <= p.TIMER_MS_MAX
        ):
            raise ValueError(
                f"measurement_timer_ms = {timer!r}: must be an integer "
                f"from {p.TIMER_MS_MIN} to {p.TIMER_MS_MAX}"
            )
        return {"audio": audio, "measurement_timer_ms": timer}

    def totals(self) -> Tuple[Dict[str, int], Dict[str, int]]:
        return (
            {"audio_duration_ms": self.accepted_bytes // BYTES_PER_MS, "frames": self.frames},
            {"utterances": self.utterances, "measurements": self.measurements},
        )

    def on_media(self, data: bytes, now: float) -> None:
        if not data or len(data) % 2 or len(data) > p.AUDIO_FRAME_MAX_MS * BYTES_PER_MS:
            self.error(
                p.Codes.INVALID_AUDIO_FRAME,
                f"audio frame of {len(data)} bytes: must be a non-empty, even number of bytes up to 10 s",
                True,
            )
            return
        if not self._bucket.try_send(len(data) / BYTES_PER_MS, now) or self.faults.take_rate_limit():
            self.error(p.Codes.RATE_LIMITED, "audio sent faster than real time; resend this frame", True)
            return
        self.locked = True
        self.frames += 1
        self.accepted_bytes += len(data)
        for begin, end, voiced in self._speech.feed(data):
            self._frame(begin, end, voiced)
            if self.close_code is not None:
                return

    def _frame(self, begin: int, end: int, voiced: bool) -> None:
        sp = self._speech
        if voiced:
            if sp.start_ms is None:
                sp.start_ms, self._announced, self._last_measured_end = begin, False, None
            sp.last_voiced_ms = end
        if sp.start_ms is None:
            return
        start = sp.start_ms
        min_ms = detectors.MIN_SEGMENT_S * 1000
        if not self._announced and sp.last_voiced_ms - start >= min_ms:
            self._announced = True
            self._next_interval_ms = start + self.config["measurement_timer_ms"]
            self.outbox.append(
                {"type": "utterance.start", "utterance_id": self.utterances, "audio_start_ms": start}
            )
            self.utterances += 1
        if self._announced and end >= self._next_interval_ms:
            self._next_interval_ms += self.config["measurement_timer_ms"]
            self._measure(max(start, end - p.MEASUREMENT_WINDOW_MS), end, "interval")
        if not voiced and end - sp.last_voiced_ms > detectors.MERGE_GAP_S * 1000:
            self._end_utterance(sp.last_voiced_ms)

    def _end_utterance(self, end: int) -> None:
        sp = self._speech
        start = sp.start_ms
        sp.start_ms = None
        if start is None or not self._announced:
            return
        last = self._last_measured_end
        if last is None or end - last >= p.SPEECH_ENDED_MIN_GAP_MS:
            self._measure(max(start, end - p.MEASUREMENT_WINDOW_MS), end, "speech_ended")
        if self.close_code is None:
            self.outbox.append(
                {
                    "type": "utterance.end",
                    "utterance_id": self.utterances - 1,
                    "audio_start_ms": start,
                    "audio_end_ms": end,
                }
            )

    def _measure(self, begin: int, end: int, trigger: str) -> None:
        if self.faults.take_failure():
            self.fail(p.Codes.INTERNAL_ERROR, "measurement failed; open a new connection")
            return
        window = self._speech.window(begin, end)
        features = detectors.audio_features(window)
        cues = scoring.voice_cue_strengths(detectors.voice_cues(window).liveliness)
        raw_expr = scoring.cued_scores(AUDIO_EXPRESSIONS, features, cues, self.seed, "v1-audio-expressions")
        raw_attr = scoring.cued_scores(VOICE_ATTRIBUTES, features, cues, self.seed, "v1-voice-attributes")
        self.outbox.append(
            {
                "type": "measurement.result",
                "measurement_id": self.measurements,
                "utterance_id": self.utterances - 1,
                "audio_start_ms": begin,
                "audio_end_ms": end,
                "trigger": trigger,
                "expressions": p.scores_json(
                    _ranked(AUDIO_EXPRESSIONS, raw_expr, lambda v: v >= EXPRESSION_PRESENT)
                ),
                "voice_attributes": p.scores_json(
                    _ranked(VOICE_ATTRIBUTES, raw_attr, lambda v: v >= p.VOICE_ATTRIBUTE_MIN)
                ),
            }
        )
        self.measurements += 1
        self._last_measured_end = end

    def finish(self) -> None:
        sp = self._speech
        if sp.start_ms is not None:
            self._end_utterance(sp.total_ms if sp.voiced_now else sp.last_voiced_ms)


class FaceTracker:
    """Face ids that stay with a face while it is measured; up to 32 faces remembered per session."""

    def __init__(self) -> None:
        self._known: collections.OrderedDict[int, Tuple[float, float, float, float]] = (
            collections.OrderedDict()
        )
        self._next = 0

    def assign(self, box: Tuple[float, float, float, float], taken: List[int]) -> int:
        best, best_iou = None, FACE_MATCH_IOU
        for face_id, known in self._known.items():
            overlap = detectors.iou(box, known)
            if face_id not in taken and overlap >= best_iou:
                best, best_iou = face_id, overlap
        if best is None:
            best, self._next = self._next, self._next + 1
        self._known[best] = box
        self._known.move_to_end(best)
        while len(self._known) > p.FACES_LISTED:
            self._known.popitem(last=False)
        return best


class VideoSession(_Session):
    """``/v1/expression/video/realtime``: one JPEG per message in; one reply per frame, in order, out."""

    endpoint = "video"
    max_message = p.VIDEO_MESSAGE_MAX_BYTES

    def __init__(self, seed: int, faults: FaultsV1, now: float, burst_frames: float) -> None:
        super().__init__(seed, faults)
        self._bucket = TokenBucket(p.VIDEO_MAX_FPS, burst_frames, now, initial=burst_frames)
        self._faces = FaceTracker()
        self.frames = 0
        self.results = 0
        self.measured_faces = 0
        self._failures = 0

    def defaults(self) -> Dict[str, Any]:
        return {
            "image": dict(p.IMAGE_FORMAT),
            "face": {"threshold": p.FACE_THRESHOLD_DEFAULT, "min_size": p.FACE_MIN_SIZE_DEFAULT},
        }

    def parse_config(self, msg: Mapping[str, Any]) -> Dict[str, Any]:
        _only_keys(msg, "session.update", ("type", "image", "face"))
        image = _fixed(_only_keys(msg.get("image"), "image", ("type",)), p.IMAGE_FORMAT, "image")
        face = _only_keys(msg.get("face"), "face", ("threshold", "min_size"))
        threshold = face.get("threshold", p.FACE_THRESHOLD_DEFAULT)
        min_size = face.get("min_size", p.FACE_MIN_SIZE_DEFAULT)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ValueError(f"face.threshold = {threshold!r}: must be a number from 0 to 1")
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
            raise ValueError(f"face.min_size = {min_size!r}: must be an integer of at least 1 (pixels)")
        return {"image": image, "face": {"threshold": p.round4(threshold), "min_size": min_size}}

    def totals(self) -> Tuple[Dict[str, int], Dict[str, int]]:
        return {"frames": self.frames}, {"measurements": self.measured_faces}

    def on_media(self, data: bytes, now: float) -> None:
        if not self._bucket.try_send(1.0, now) or self.faults.take_rate_limit():
            self.error(
                p.Codes.RATE_LIMITED, "more than 3 frames per second; this frame was not measured", True
            )
            return
        image = decode_jpeg(data)
        if image is None:
            self.error(
                p.Codes.INVALID_IMAGE_FRAME,
                f"frame of {len(data)} bytes is not one complete JPEG of at most {p.VIDEO_MAX_PIXELS} pixels",
                True,
            )
            return
        self.locked = True
        self.frames += 1
        if self.faults.take_failure():
            self._failures += 1
            if self._failures >= p.VIDEO_FAILURES_ENDING:
                self.fail(p.Codes.INTERNAL_ERROR, f"{self._failures} frames in a row failed")
            else:
                self.error(p.Codes.INTERNAL_ERROR, "measuring this frame failed; resend it", True)
            return
        self._failures = 0
        faces = self.measure(image)
        self.outbox.append(
            {"type": "measurement.result", "frame_id": self.results, "faces": [p.face_json(f) for f in faces]}
        )
        self.results += 1

    def measure(self, image: np.ndarray) -> List[p.Face]:
        face_cfg = self.config["face"]
        found = [
            f
            for f in detectors.detect_faces(image, min_side_px=face_cfg["min_size"])
            if p.round4(f.prob) >= face_cfg["threshold"]
        ]
        found.sort(key=lambda f: (-f.w * f.h, -f.prob, f.x, f.y))
        measured, rest = found[: p.FACES_MEASURED], found[p.FACES_MEASURED :]
        rest.sort(key=lambda f: (-f.prob, f.x, f.y))
        out: List[p.Face] = []
        taken: List[int] = []
        for f in measured:
            box = (float(f.x), float(f.y), float(f.w), float(f.h))
            face_id = self._faces.assign(box, taken)
            taken.append(face_id)
            features = detectors.image_features(image, (f.x, f.y, f.w, f.h))
            seen = detectors.face_cues(image, (f.x, f.y, f.w, f.h))
            cues = scoring.face_cue_strengths(seen.smile, seen.eyes_open)
            raw_expr = scoring.cued_scores(
                VIDEO_EXPRESSIONS, features, cues, self.seed, "v1-face-expressions"
            )
            raw_desc = scoring.cued_scores(
                VIDEO_DESCRIPTIONS, features, cues, self.seed, "v1-face-descriptions"
            )
            out.append(
                p.Face(
                    _bbox(f),
                    p.round4(f.prob),
                    face_id,
                    _ranked(VIDEO_EXPRESSIONS, raw_expr, lambda v: v > p.FACE_SCORE_MIN),
                    _ranked(VIDEO_DESCRIPTIONS, raw_desc, lambda v: v > p.FACE_SCORE_MIN),
                )
            )
        out.extend(p.Face(_bbox(f), p.round4(f.prob)) for f in rest)
        self.measured_faces += len(measured)
        return out[: p.FACES_LISTED]


def _bbox(f: detectors.FaceBox) -> Tuple[float, float, float, float]:
    return (float(f.x), float(f.y), float(f.x + f.w), float(f.y + f.h))


def decode_jpeg(data: bytes) -> Optional[np.ndarray]:
    """A BGR image if ``data`` is one valid JPEG within the pixel limit, else None."""
    import simplejpeg  # noqa: PLC0415 - the vision extra, needed only by the video endpoint

    if not data.startswith(b"\xff\xd8"):
        return None
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        if height * width > p.VIDEO_MAX_PIXELS:
            return None
        image: np.ndarray = simplejpeg.decode_jpeg(data, colorspace="BGR")
    except ValueError:
        return None
    return image
