"""Typed messages of Hume's v0 streaming API (``/v0/stream/models``), both directions.

The client and the emulator use these same types, so the wire format lives in exactly one place.
Field names and shapes follow Hume's published reference of the v0 streaming API and its official
Python SDK (``hume`` 0.13, the last with the streaming client; ``tests/integration/test_v0_sdk_fidelity.py``
holds the emulator to it); error / warning codes and label lists follow Hume's documentation. Parsing is
strict about types (a wrong type is a :class:`ProtocolViolation`) and lenient about unknown fields, as the
official SDK is.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from agent.hume.types import AUDIO_MODELS, MODELS, NO_FACES, Score, Scores

# --------------------------------------------------------------------------------------------------
# Constants from the published contract

PATH = "/v0/stream/models"
API_KEY_HEADER = "X-Hume-Api-Key"
API_KEY_QUERY = "apikey"

STREAM_WINDOW_MS_MIN = 500
STREAM_WINDOW_MS_MAX = 10000
STREAM_WINDOW_MS_DEFAULT = 5000
AUDIO_MAX_MS = 5000
VIDEO_MAX_MS = 5000
IMAGE_MAX_PX = 3000
TEXT_MAX_CHARS = 10000
FACEMESH_MAX_FACES = 10
FACEMESH_LANDMARKS = 478
FACE_FPS_PRED_DEFAULT = 3.0
FACE_PROB_THRESHOLD_DEFAULT = 0.99
FACE_MIN_FACE_SIZE_DEFAULT = 60.0
CONNECTION_IDLE_S = 60.0
REPLY_MAX_PREDICTIONS = 1000
"""A reply lists more predictions than this per model only if the server is broken or hostile (a face
prediction per face per frame, a prosody one per utterance in a 5 s payload): refused as unreadable."""
REPLY_MAX_SCORES = 256
"""Scores per prediction (Hume's largest model, burst, has 67 labels)."""
REPLY_MAX_NAME_CHARS = 64
"""A label name longer than this is not one of Hume's (the longest is ~30 characters)."""
AUTH_FAILED_BODY = "Websocket initialized with invalid credentials."

EXPRESSIONS: Tuple[str, ...] = (
    "Admiration", "Adoration", "Aesthetic Appreciation", "Amusement", "Anger", "Anxiety", "Awe",
    "Awkwardness", "Boredom", "Calmness", "Concentration", "Confusion", "Contemplation", "Contempt",
    "Contentment", "Craving", "Desire", "Determination", "Disappointment", "Disgust", "Distress", "Doubt",
    "Ecstasy", "Embarrassment", "Empathic Pain", "Entrancement", "Envy", "Excitement", "Fear", "Guilt",
    "Horror", "Interest", "Joy", "Love", "Nostalgia", "Pain", "Pride", "Realization", "Relief", "Romance",
    "Sadness", "Satisfaction", "Shame", "Surprise (negative)", "Surprise (positive)", "Sympathy",
    "Tiredness", "Triumph",
)  # fmt: skip
"""The 48 expressions shared by face, prosody, vocal burst and facemesh, in Hume's order."""

LANGUAGE_EXPRESSIONS: Tuple[str, ...] = tuple(
    sorted((*EXPRESSIONS, "Annoyance", "Disapproval", "Enthusiasm", "Gratitude", "Sarcasm"))
)
"""The 53 language expressions: the 48 plus five, alphabetical."""

SENTIMENT_LEVELS: Tuple[str, ...] = tuple(str(i) for i in range(1, 10))
TOXICITY_CATEGORIES: Tuple[str, ...] = (
    "toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"
)  # fmt: skip
FACS_LABELS: Tuple[str, ...] = (
    "AU1 Inner Brow Raise", "AU2 Outer Brow Raise", "AU4 Brow Lowerer", "AU5 Upper Lid Raise",
    "AU6 Cheek Raise", "AU7 Lids Tight", "AU9 Nose Wrinkle", "AU10 Upper Lip Raiser",
    "AU11 Nasolabial Furrow Deepener", "AU12 Lip Corner Puller", "AU14 Dimpler", "AU15 Lip Corner Depressor",
    "AU16 Lower Lip Depress", "AU17 Chin Raiser", "AU18 Lip Pucker", "AU19 Tongue Show", "AU20 Lip Stretch",
    "AU22 Lip Funneler", "AU23 Lip Tightener", "AU24 Lip Presser", "AU25 Lips Part", "AU26 Jaw Drop",
    "AU27 Mouth Stretch", "AU28 Lips Suck", "AU32 Bite", "AU34 Puff", "AU37 Lip Wipe", "AU38 Nostril Dilate",
    "AU43 Eye Closure", "AU53 Head Up", "AU54 Head Down", "Hand over Mouth", "Hand over Eyes",
    "Hand over Forehead", "Hand over Face", "Hand touching Face / Head",
)  # fmt: skip
FACE_DESCRIPTIONS: Tuple[str, ...] = (
    "Beaming", "Biting lip", "Cheering", "Cringe", "Cry", "Eyes closed", "Face in hands", "Frown", "Gasp",
    "Glare", "Glaring", "Grimace", "Grin", "Jaw drop", "Laugh", "Licking lip", "Pout", "Scowl", "Smile",
    "Smirk", "Snarl", "Squint", "Sulking", "Tongue out", "Wide-eyed", "Wince", "Wrinkled nose",
)  # fmt: skip

GRANULARITIES: Tuple[str, ...] = ("word", "sentence", "utterance", "passage")


class Codes:
    """Error (E) and warning (W) codes of the v0 streaming API."""

    INVALID_JSON = "E0100"
    INVALID_STRUCTURE = "E0101"
    MODEL_FILE_MISMATCH = "E0102"
    UNKNOWN_FORMAT = "E0200"
    BAD_BASE64 = "E0201"
    NO_AUDIO_SIGNAL = "E0202"
    AUDIO_TOO_LONG = "E0203"
    VIDEO_TOO_LONG = "E0204"
    IMAGE_TOO_LARGE = "E0205"
    TEXT_TOO_LONG = "E0206"
    OUT_OF_CREDITS = "E0300"
    NO_BURSTS = "W0101"
    NO_FACEMESH = "W0102"
    NO_FACES = NO_FACES
    NO_LANGUAGE = "W0104"
    NO_SPEECH = "W0105"


FATAL_CODES = frozenset({Codes.OUT_OF_CREDITS})
"""Replies after which retrying soon cannot help."""


class ProtocolViolation(ValueError):
    """A message does not follow the contract; ``code`` is the error code the server answers with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------------------
# Small strict readers


def opt_field(obj: Mapping[str, Any], key: str, kind: Union[type, Tuple[type, ...]], where: str) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ProtocolViolation(
            Codes.INVALID_STRUCTURE, f"Field '{where}{key}' must be a number, got a boolean."
        )
    if not isinstance(value, kind):
        raise ProtocolViolation(Codes.INVALID_STRUCTURE, f"Field '{where}{key}' has the wrong type.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolViolation(Codes.INVALID_STRUCTURE, f"Field '{where}{key}' must be finite.")
    return value


def num_field(obj: Mapping[str, Any], key: str, where: str) -> Optional[float]:
    value = opt_field(obj, key, (int, float), where)
    return None if value is None else float(value)


def map_field(obj: Mapping[str, Any], key: str, where: str) -> Optional[Dict[str, Any]]:
    return opt_field(obj, key, dict, where)  # type: ignore[no-any-return]


def in_range(
    value: Optional[float], name: str, low: float, high: Optional[float] = None, *, open_low: bool = False
) -> Optional[float]:
    """``value`` if inside [low, high] (or (low, high]); else the E0101 the server answers with."""
    if value is None:
        return None
    too_low = value <= low if open_low else value < low
    if too_low or (high is not None and value > high):
        bound = f"greater than {low:g}" if open_low else f"at least {low:g}"
        allowed = bound if high is None else f"{bound} and at most {high:g}"
        raise ProtocolViolation(Codes.INVALID_STRUCTURE, f"Field '{name}' must be {allowed}, got {value:g}.")
    return value


def drop_none(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


# --------------------------------------------------------------------------------------------------
# Server -> client: predictions, warnings, errors


def _scores(obj: Mapping[str, Any], key: str, where: str) -> Optional[Scores]:
    items = opt_field(obj, key, list, where)
    if items is None:
        return None
    if len(items) > REPLY_MAX_SCORES:
        raise ProtocolViolation(
            Codes.INVALID_STRUCTURE, f"'{where}{key}' lists {len(items)} scores, at most {REPLY_MAX_SCORES}."
        )
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ProtocolViolation(Codes.INVALID_STRUCTURE, f"'{where}{key}[{i}]' must be an object.")
        name = opt_field(item, "name", str, f"{where}{key}[{i}].")
        score = num_field(item, "score", f"{where}{key}[{i}].")
        if name is None or score is None:
            raise ProtocolViolation(Codes.INVALID_STRUCTURE, f"'{where}{key}[{i}]' needs name and score.")
        if len(name) > REPLY_MAX_NAME_CHARS:
            raise ProtocolViolation(
                Codes.INVALID_STRUCTURE,
                f"'{where}{key}[{i}].name' is over {REPLY_MAX_NAME_CHARS} characters.",
            )
        out.append(Score(name, score))
    return tuple(out)


def _scores_obj(scores: Optional[Scores]) -> Optional[List[Dict[str, Any]]]:
    return None if scores is None else [{"name": s.name, "score": s.score} for s in scores]


@dataclasses.dataclass(frozen=True)
class TimeRange:
    begin: float
    end: float


@dataclasses.dataclass(frozen=True)
class BoundingBox:
    x: float
    y: float
    w: float
    h: float


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One prediction of any model; fields a model does not produce stay ``None``."""

    emotions: Scores = ()
    time: Optional[TimeRange] = None  # prosody, burst (language: absent)
    frame: Optional[float] = None  # face
    face_time: Optional[float] = None  # face: "time" is a number there
    bbox: Optional[BoundingBox] = None  # face
    prob: Optional[float] = None  # face
    face_id: Optional[str] = None  # face
    facs: Optional[Scores] = None  # face
    descriptions: Optional[Scores] = None  # face
    text: Optional[str] = None  # language
    position: Optional[Tuple[int, int]] = None  # language
    sentiment: Optional[Scores] = None  # language
    toxicity: Optional[Scores] = None  # language

    def to_obj(self, model: str) -> Dict[str, Any]:
        obj: Dict[str, Any] = {}
        if model == "face":
            bbox = None if self.bbox is None else dataclasses.asdict(self.bbox)
            obj.update(frame=self.frame, time=self.face_time, prob=self.prob, face_id=self.face_id, bbox=bbox)
        elif model in AUDIO_MODELS:
            obj["time"] = None if self.time is None else dataclasses.asdict(self.time)
        elif model == "language":
            obj["text"] = self.text
            if self.position is not None:
                obj["position"] = {"begin": self.position[0], "end": self.position[1]}
        obj["emotions"] = _scores_obj(self.emotions)
        if model == "face":
            obj["facs"] = _scores_obj(self.facs)
            obj["descriptions"] = _scores_obj(self.descriptions)
        if model == "language":
            if self.sentiment is not None:
                obj["sentiment"] = _scores_obj(self.sentiment)
            if self.toxicity is not None:
                obj["toxicity"] = _scores_obj(self.toxicity)
        return obj

    @classmethod
    def from_obj(cls, model: str, obj: Mapping[str, Any], where: str) -> Prediction:
        time_range = face_time = bbox = position = None
        raw_time = obj.get("time")
        if isinstance(raw_time, dict):
            b, e = num_field(raw_time, "begin", f"{where}time."), num_field(raw_time, "end", f"{where}time.")
            time_range = TimeRange(b or 0.0, e or 0.0)
        elif raw_time is not None:
            face_time = num_field(obj, "time", where)
        raw_box = map_field(obj, "bbox", where)
        if raw_box is not None:
            bbox = BoundingBox(*(num_field(raw_box, k, f"{where}bbox.") or 0.0 for k in "xywh"))
        raw_pos = map_field(obj, "position", where)
        if raw_pos is not None:
            begin = num_field(raw_pos, "begin", f"{where}position.")
            end = num_field(raw_pos, "end", f"{where}position.")
            position = (int(begin or 0), int(end or 0))
        return cls(
            emotions=_scores(obj, "emotions", where) or (),
            time=time_range,
            frame=num_field(obj, "frame", where),
            face_time=face_time,
            bbox=bbox,
            prob=num_field(obj, "prob", where),
            face_id=opt_field(obj, "face_id", str, where),
            facs=_scores(obj, "facs", where),
            descriptions=_scores(obj, "descriptions", where),
            text=opt_field(obj, "text", str, where),
            position=position,
            sentiment=_scores(obj, "sentiment", where),
            toxicity=_scores(obj, "toxicity", where),
        )


@dataclasses.dataclass(frozen=True)
class ModelOutput:
    """``{"predictions": [...]}`` of one model, or its nested "nothing detected" warning."""

    predictions: Tuple[Prediction, ...] = ()
    warning: Optional[str] = None
    code: Optional[str] = None

    def to_obj(self, model: str) -> Dict[str, Any]:
        if self.warning is not None:
            return {"warning": self.warning, "code": self.code}
        return {"predictions": [p.to_obj(model) for p in self.predictions]}


def _with_envelope(obj: Dict[str, Any], payload_id: Optional[str], job_id: Optional[str]) -> Dict[str, Any]:
    """Add what every reply kind may carry: the echoed ``payload_id`` and the ``job_details``."""
    if payload_id is not None:
        obj["payload_id"] = payload_id
    if job_id is not None:
        obj["job_details"] = {"job_id": job_id}
    return obj


@dataclasses.dataclass(frozen=True)
class PredictionsMessage:
    """A reply carrying model outputs (and/or job details)."""

    outputs: Mapping[str, ModelOutput] = dataclasses.field(default_factory=dict)
    payload_id: Optional[str] = None
    job_id: Optional[str] = None

    def to_obj(self) -> Dict[str, Any]:
        obj = _with_envelope({}, self.payload_id, self.job_id)
        for model in MODELS:
            if model in self.outputs:
                obj[model] = self.outputs[model].to_obj(model)
        return obj


@dataclasses.dataclass(frozen=True)
class ErrorMessage:
    """A top-level error: ``{"error": text, "code": "E0xxx", "payload_id"?}``."""

    error: str
    code: Optional[str] = None
    payload_id: Optional[str] = None
    job_id: Optional[str] = None

    def to_obj(self) -> Dict[str, Any]:
        return _with_envelope({"error": self.error, "code": self.code}, self.payload_id, self.job_id)


@dataclasses.dataclass(frozen=True)
class WarningMessage:
    """A top-level warning: ``{"warning": text, "code": "W0xxx", "payload_id"?}``."""

    warning: str
    code: Optional[str] = None
    payload_id: Optional[str] = None
    job_id: Optional[str] = None

    def to_obj(self) -> Dict[str, Any]:
        return _with_envelope({"warning": self.warning, "code": self.code}, self.payload_id, self.job_id)


Reply = Union[PredictionsMessage, ErrorMessage, WarningMessage]


def reply_to_json(reply: Reply) -> str:
    return json.dumps(reply.to_obj(), separators=(",", ":"))


def decode_reply(text: str) -> Any:
    """A server reply's JSON value; :class:`ProtocolViolation` if it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolViolation(Codes.INVALID_JSON, "reply is not valid JSON") from None


def parse_reply(text: str) -> Reply:
    """Parse a server reply; raise :class:`ProtocolViolation` if it breaks the contract."""
    return parse_reply_obj(decode_reply(text))


KNOWN_CLOSE_CODES = frozenset({1000, 1001, 1006, 1009, 1011})
"""v0 documents no close codes: these are the ones seen (idle 1000, shutdown 1001, dropped 1006, too big
1009, server error 1011); any other is protocol drift (:mod:`agent.hume.drift`)."""
_REPLY_FIELDS = frozenset({"payload_id", "job_details", "error", "code", "warning", *MODELS})
_MODEL_FIELDS = frozenset({"predictions", "warning", "code"})
_PREDICTION_FIELDS: Dict[str, frozenset] = {  # type: ignore[type-arg]
    "face": frozenset({"frame", "time", "bbox", "prob", "face_id", "emotions", "facs", "descriptions"}),
    "prosody": frozenset({"time", "emotions"}),
    "burst": frozenset({"time", "emotions"}),
    "language": frozenset({"text", "position", "emotions", "sentiment", "toxicity"}),
    "facemesh": frozenset({"emotions"}),
}


def unknown_reply_fields(obj: Any) -> List[str]:
    """Fields of a reply that the published schema does not have (dotted paths; each model's first
    prediction is checked)."""
    if not isinstance(obj, dict):
        return []
    out = [key for key in obj if key not in _REPLY_FIELDS]
    for model, fields in _PREDICTION_FIELDS.items():
        body = obj.get(model)
        if not isinstance(body, dict):
            continue
        out.extend(f"{model}.{key}" for key in body if key not in _MODEL_FIELDS)
        preds = body.get("predictions")
        if isinstance(preds, list) and preds and isinstance(preds[0], dict):
            out.extend(f"{model}.predictions[].{key}" for key in preds[0] if key not in fields)
    details = obj.get("job_details")
    if isinstance(details, dict):
        out.extend(f"job_details.{key}" for key in details if key != "job_id")
    return out


def parse_reply_obj(obj: Any) -> Reply:
    """:func:`parse_reply` of a decoded JSON value."""
    if not isinstance(obj, dict):
        raise ProtocolViolation(Codes.INVALID_STRUCTURE, "reply is not a JSON object")
    payload_id = opt_field(obj, "payload_id", str, "")
    details = map_field(obj, "job_details", "")
    job_id = None if details is None else opt_field(details, "job_id", str, "job_details.")
    if "error" in obj:
        text, code = opt_field(obj, "error", str, "") or "", opt_field(obj, "code", str, "")
        return ErrorMessage(text, code, payload_id, job_id)
    if "warning" in obj:
        text, code = opt_field(obj, "warning", str, "") or "", opt_field(obj, "code", str, "")
        return WarningMessage(text, code, payload_id, job_id)
    outputs: Dict[str, ModelOutput] = {}
    for model in MODELS:
        body = map_field(obj, model, "")
        if body is None:
            continue
        if "warning" in body:
            outputs[model] = ModelOutput(
                warning=opt_field(body, "warning", str, f"{model}."),
                code=opt_field(body, "code", str, f"{model}."),
            )
            continue
        preds = opt_field(body, "predictions", list, f"{model}.") or []
        if len(preds) > REPLY_MAX_PREDICTIONS:
            raise ProtocolViolation(
                Codes.INVALID_STRUCTURE,
                f"'{model}.predictions' lists {len(preds)}, at most {REPLY_MAX_PREDICTIONS}.",
            )
        parsed = []
        for i, p in enumerate(preds):
            if not isinstance(p, dict):
                raise ProtocolViolation(
                    Codes.INVALID_STRUCTURE, f"'{model}.predictions[{i}]' must be an object."
                )
            parsed.append(Prediction.from_obj(model, p, f"{model}.predictions[{i}]."))
        outputs[model] = ModelOutput(predictions=tuple(parsed))
    return PredictionsMessage(outputs, payload_id, job_id)
