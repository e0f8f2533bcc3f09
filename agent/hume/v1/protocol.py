"""Typed messages, limits and ending rules of Hume's v1 realtime API, shared by the client and the emulator.

Source: Hume's documentation of the v1 realtime endpoints and the official SDK
``hume-expression-measurement`` 0.1.0 (``tests/integration/test_sdk_fidelity.py`` holds the emulator
to it). Parsing is lenient the way the SDK is (unknown fields ignored,
unknown message types returned as ``None`` for the caller to skip) and strict about the fields it
needs (a wrong type is a :class:`ValueError` naming the field). Label names are open-ended lowercase
strings: nothing here knows a list of them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from agent.media.audio import AUDIO_RATE

AUDIO_PATH = "/v1/expression/audio/realtime"
VIDEO_PATH = "/v1/expression/video/realtime"
API_KEY_HEADER = "X-Hume-Api-Key"
AUTH_FAILED_MESSAGE = "Websocket initialized with invalid credentials."

AUDIO_FRAME_MS = 100
"""The frame size Hume recommends and the SDK's helpers produce (3,200 bytes)."""
AUDIO_FRAME_MAX_MS = 10_000
AUDIO_MESSAGE_MAX_BYTES = 1_048_576
VIDEO_MESSAGE_MAX_BYTES = 2_000_000
"""Documented as "2 MB"; the SDK reads it as the smaller 2,000,000, and so do both sides here."""
VIDEO_MAX_PIXELS = 8_294_400
VIDEO_MAX_FPS = 3.0
MEASUREMENT_WINDOW_MS = 10_000
SPEECH_ENDED_MIN_GAP_MS = 1000
TIMER_MS_MIN, TIMER_MS_MAX, TIMER_MS_DEFAULT = 3000, 10_000, 3000
FACE_THRESHOLD_DEFAULT = 0.9
FACE_MIN_SIZE_DEFAULT = 60
FACES_MEASURED = 2
FACES_LISTED = 32
FACE_SCORE_MIN = 0.1
VOICE_ATTRIBUTE_MIN = 0.725
VIDEO_FAILURES_ENDING = 5


AUDIO_FORMAT: Dict[str, Any] = {
    "type": "audio/pcm",
    "encoding": "s16le",
    "sample_rate": AUDIO_RATE,
    "channels": 1,
}
IMAGE_FORMAT: Dict[str, Any] = {"type": "image/jpeg"}


class Codes:
    """``error.code`` values (open-ended: an unknown code is passed through as a string)."""

    INVALID_AUDIO_FRAME = "invalid_audio_frame"
    INVALID_IMAGE_FRAME = "invalid_image_frame"
    MESSAGE_INVALID = "message_invalid"
    RATE_LIMITED = "rate_limited"
    CONFIG_INVALID = "config_invalid"
    MESSAGE_TOO_LARGE = "message_too_large"
    INTERNAL_ERROR = "internal_error"


VIDEO_FRAME_ERRORS = frozenset({Codes.INVALID_IMAGE_FRAME, Codes.RATE_LIMITED, Codes.INTERNAL_ERROR})
"""Video errors that answer (consume) one frame; others answer a text message or end the session."""


class Reasons:
    """``session.closed.reason`` values."""

    CLIENT_REQUEST = "client_request"
    SERVER_SHUTDOWN = "server_shutdown"
    IDLE_TIMEOUT = "idle_timeout"
    ERROR = "error"


CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_ABNORMAL, CLOSE_POLICY, CLOSE_RESTART = 1000, 1001, 1006, 1008, 1012
RECONNECT_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013})
"""Going away, dropped, server error, restart, try again later: a new session can follow (SDK policy)."""


def should_reconnect(
    endpoint: str, closed_reason: Optional[str], close_code: int, last_error: Optional[str]
) -> bool:
    """The official SDK's rule for whether a new session may follow one that ended.

    A ``server_shutdown`` always qualifies (a server that is going away may close with 1000). A 1008
    follows a session-ending error: only an audio ``internal_error`` is worth a new connection; the
    others (``config_invalid``, ``message_too_large``) would fail the same way again.
    """
    if closed_reason == Reasons.SERVER_SHUTDOWN:
        return True
    if close_code == CLOSE_POLICY:
        return endpoint == "audio" and last_error == Codes.INTERNAL_ERROR
    return close_code in RECONNECT_CLOSE_CODES


def round4(value: float) -> float:
    """Scores and thresholds are reported rounded to four decimal places."""
    return round(float(value), 4)


# --------------------------------------------------------------------------------------------------
# Client -> server


def audio_session_update(measurement_timer_ms: int) -> str:
    """The audio ``session.update``: the one supported format, and how often to measure speech."""
    return json.dumps(
        {"type": "session.update", "audio": dict(AUDIO_FORMAT), "measurement_timer_ms": measurement_timer_ms}
    )


def video_session_update(threshold: float, min_size: int) -> str:
    """The video ``session.update``: JPEG frames, and which faces are worth measuring."""
    return json.dumps(
        {
            "type": "session.update",
            "image": dict(IMAGE_FORMAT),
            "face": {"threshold": threshold, "min_size": min_size},
        }
    )


SESSION_CLOSE = json.dumps({"type": "session.close"})


# --------------------------------------------------------------------------------------------------
# Server -> client


@dataclasses.dataclass(frozen=True)
class Score:
    """One named probability (an expression, a voice attribute, a facial action)."""

    name: str
    probability: float


Scores = Tuple[Score, ...]


@dataclasses.dataclass(frozen=True)
class SessionCreated:
    session_id: str
    config: Mapping[str, Any]
    """Everything but ``type`` and ``session_id``: the default configuration."""


@dataclasses.dataclass(frozen=True)
class SessionUpdated:
    config: Mapping[str, Any]
    """The full configuration in effect, defaults filled in."""


@dataclasses.dataclass(frozen=True)
class UtteranceStart:
    utterance_id: int
    audio_start_ms: int


@dataclasses.dataclass(frozen=True)
class UtteranceEnd:
    utterance_id: int
    audio_start_ms: int
    audio_end_ms: int


@dataclasses.dataclass(frozen=True)
class AudioResult:
    measurement_id: int
    utterance_id: int
    audio_start_ms: int
    audio_end_ms: int
    trigger: str
    expressions: Scores
    voice_attributes: Scores


@dataclasses.dataclass(frozen=True)
class Face:
    bbox: Tuple[float, float, float, float]
    confidence: float
    face_id: Optional[int] = None
    """None for a face that was listed but not measured (then expressions/descriptions are None too)."""
    expressions: Optional[Scores] = None
    descriptions: Optional[Scores] = None


@dataclasses.dataclass(frozen=True)
class VideoResult:
    frame_id: int
    faces: Tuple[Face, ...]


@dataclasses.dataclass(frozen=True)
class ErrorMessage:
    code: str
    message: str
    retryable: bool


@dataclasses.dataclass(frozen=True)
class SessionClosed:
    session_id: str
    reason: str
    received: Mapping[str, int]
    produced: Mapping[str, int]


ServerMessage = Union[
    SessionCreated,
    SessionUpdated,
    UtteranceStart,
    UtteranceEnd,
    AudioResult,
    VideoResult,
    ErrorMessage,
    SessionClosed,
]


def _get(obj: Mapping[str, Any], key: str, kind: Union[type, Tuple[type, ...]]) -> Any:
    value = obj.get(key)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise ValueError(f"v1 {obj.get('type')!r} message: field {key!r} must be {kind}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"v1 {obj.get('type')!r} message: field {key!r} must be finite")
    return value


def _scores(obj: Mapping[str, Any], key: str) -> Scores:
    items = _get(obj, key, list)
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError(f"v1 {obj.get('type')!r} message: {key} items must be objects")
        out.append(Score(_get(item, "name", str), float(_get(item, "probability", (int, float)))))
    return tuple(out)


def _face(obj: Any) -> Face:
    if not isinstance(obj, dict):
        raise ValueError("v1 measurement.result: faces items must be objects")
    bbox = _get(obj, "bbox", list)
    if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        raise ValueError(f"v1 measurement.result: bbox must be four numbers, got {bbox!r}")
    face_id = obj.get("face_id")
    return Face(
        bbox=(float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3])),
        confidence=float(_get(obj, "confidence", (int, float))),
        face_id=None if face_id is None else _get(obj, "face_id", int),
        expressions=None if obj.get("expressions") is None else _scores(obj, "expressions"),
        descriptions=None if obj.get("descriptions") is None else _scores(obj, "descriptions"),
    )


def _config(obj: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("type", "session_id")}


def parse_server(text: str, endpoint: str) -> Optional[ServerMessage]:
    """Parse one server text frame of ``endpoint`` ("audio" or "video").

    Returns None for a message type this version does not know (Hume may add types; skip them).
    Raises ValueError for text that is not a JSON object or a known message with a malformed field.
    """
    return parse_server_obj(json.loads(text), endpoint)


def parse_server_obj(obj: Any, endpoint: str) -> Optional[ServerMessage]:
    """:func:`parse_server` of a decoded JSON value (the client decodes it with size and depth bounds)."""
    if not isinstance(obj, dict):
        raise ValueError(f"v1 server message is not a JSON object but {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "session.created":
        return SessionCreated(_get(obj, "session_id", str), _config(obj))
    if kind == "session.updated":
        return SessionUpdated(_config(obj))
    if kind == "utterance.start":
        return UtteranceStart(_get(obj, "utterance_id", int), _get(obj, "audio_start_ms", int))
    if kind == "utterance.end":
        return UtteranceEnd(
            _get(obj, "utterance_id", int), _get(obj, "audio_start_ms", int), _get(obj, "audio_end_ms", int)
        )
    if kind == "measurement.result" and endpoint == "audio":
        return AudioResult(
            _get(obj, "measurement_id", int),
            _get(obj, "utterance_id", int),
            _get(obj, "audio_start_ms", int),
            _get(obj, "audio_end_ms", int),
            _get(obj, "trigger", str),
            _scores(obj, "expressions"),
            _scores(obj, "voice_attributes"),
        )
    if kind == "measurement.result":
        return VideoResult(_get(obj, "frame_id", int), tuple(_face(f) for f in _get(obj, "faces", list)))
    if kind == "error":
        return ErrorMessage(
            _get(obj, "code", str), str(obj.get("message", "")), bool(obj.get("retryable", False))
        )
    if kind == "session.closed":
        received, produced = _get(obj, "received", dict), _get(obj, "produced", dict)
        return SessionClosed(_get(obj, "session_id", str), _get(obj, "reason", str), received, produced)
    return None


# --------------------------------------------------------------------------------------------------
# What this client knows of the contract: anything else a server sends is protocol drift (agent.hume.drift)

KNOWN_CLOSE_CODES = frozenset({1000, 1001, 1006, 1008, 1011, 1012, 1013})
"""Close codes the SDK's reconnect policy names (plus 1000 and 1006): others are drift."""
_SCORE = frozenset({"name", "probability"})
_NESTED: Dict[str, frozenset] = {  # type: ignore[type-arg]
    "audio": frozenset(AUDIO_FORMAT),
    "image": frozenset(IMAGE_FORMAT),
    "face": frozenset({"threshold", "min_size"}),
    "received": frozenset({"audio_duration_ms", "frames"}),
    "produced": frozenset({"utterances", "measurements"}),
    "faces": frozenset({"face_id", "bbox", "confidence", "expressions", "descriptions"}),
    "expressions": _SCORE,
    "voice_attributes": _SCORE,
    "descriptions": _SCORE,
}
"""Fields of the objects (or of the items of the lists) under these keys."""
_CONFIG = {"audio": ("audio", "measurement_timer_ms"), "video": ("image", "face")}
KNOWN_FIELDS: Dict[str, Dict[str, frozenset]] = {  # type: ignore[type-arg]
    endpoint: {
        "session.created": frozenset({"type", "session_id", *_CONFIG[endpoint]}),
        "session.updated": frozenset({"type", *_CONFIG[endpoint]}),
        "error": frozenset({"type", "code", "message", "retryable"}),
        "session.closed": frozenset({"type", "session_id", "reason", "received", "produced"}),
        **(
            {
                "utterance.start": frozenset({"type", "utterance_id", "audio_start_ms"}),
                "utterance.end": frozenset({"type", "utterance_id", "audio_start_ms", "audio_end_ms"}),
                "measurement.result": frozenset(
                    {
                        "type",
                        "measurement_id",
                        "utterance_id",
                        "audio_start_ms",
                        "audio_end_ms",
                        "trigger",
                        "expressions",
                        "voice_attributes",
                    }
                ),
            }
            if endpoint == "audio"
            else {"measurement.result": frozenset({"type", "frame_id", "faces"})}
        ),
    }
    for endpoint in ("audio", "video")
}
"""Per endpoint, the contract's message types (as Hume's v1 documentation lists them) and their fields."""


def unknown_type(obj: Mapping[str, Any], endpoint: str) -> Optional[str]:
    """The ``type`` of a server message when this client does not know it for ``endpoint``, else None."""
    kind = obj.get("type")
    return None if kind in KNOWN_FIELDS[endpoint] else str(kind)


def unknown_fields(obj: Mapping[str, Any], endpoint: str) -> List[str]:
    """Fields of a server message of a known type that the contract does not have, as dotted paths
    (``measurement.result.faces[].age``); nested objects and the first item of each list are checked."""
    known = KNOWN_FIELDS[endpoint].get(str(obj.get("type")))
    if known is None:
        return []
    out = [f"{obj['type']}.{key}" for key in obj if key not in known]
    for key, fields in _NESTED.items():
        value = obj.get(key)
        item = value[0] if isinstance(value, list) and value else value
        if isinstance(item, dict):
            where = f"{obj['type']}.{key}{'[]' if isinstance(value, list) else ''}"
            out.extend(f"{where}.{k}" for k in item if k not in fields)
            for inner in ("expressions", "descriptions"):  # a face's scores
                scores = item.get(inner) if key == "faces" else None
                if isinstance(scores, list) and scores and isinstance(scores[0], dict):
                    out.extend(f"{where}.{inner}[].{k}" for k in scores[0] if k not in _SCORE)
    return out


def scores_json(scores: Scores) -> List[Dict[str, Any]]:
    """Scores as the wire writes them."""
    return [{"name": s.name, "probability": s.probability} for s in scores]


def face_json(face: Face) -> Dict[str, Any]:
    """A face as the wire writes it (unmeasured faces carry explicit nulls)."""
    return {
        "face_id": face.face_id,
        "bbox": list(face.bbox),
        "confidence": face.confidence,
        "expressions": None if face.expressions is None else scores_json(face.expressions),
        "descriptions": None if face.descriptions is None else scores_json(face.descriptions),
    }
