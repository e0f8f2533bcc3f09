"""The client -> server half of Hume's v0 streaming contract: the publish message and its model configs.

One request per payload: ``data`` (base64 media, or text), the models with their options, and the stream
flags (``reset_stream``, ``raw_text``, ``job_details``, ``payload_id``). :meth:`PublishMessage.parse` is the
emulator's side: it refuses what the server refuses, with the server's code (``agent.hume.v0.protocol``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict, Mapping, Optional, Tuple

from agent.hume.types import MODELS
from agent.hume.v0.protocol import (
    GRANULARITIES,
    STREAM_WINDOW_MS_MAX,
    STREAM_WINDOW_MS_MIN,
    Codes,
    ProtocolViolation,
    drop_none,
    in_range,
    map_field,
    num_field,
    opt_field,
)


@dataclasses.dataclass(frozen=True)
class FaceConfig:
    """``models.face``: every field optional; ``None`` means the server's default."""

    facs: Optional[Dict[str, Any]] = None
    descriptions: Optional[Dict[str, Any]] = None
    identify_faces: Optional[bool] = None
    fps_pred: Optional[float] = None
    prob_threshold: Optional[float] = None
    min_face_size: Optional[float] = None

    def to_obj(self) -> Dict[str, Any]:
        return drop_none(dataclasses.asdict(self))

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> FaceConfig:
        w = "models.face."
        return cls(
            facs=map_field(obj, "facs", w),
            descriptions=map_field(obj, "descriptions", w),
            identify_faces=opt_field(obj, "identify_faces", bool, w),
            fps_pred=in_range(num_field(obj, "fps_pred", w), w + "fps_pred", 0.0, open_low=True),
            prob_threshold=in_range(num_field(obj, "prob_threshold", w), w + "prob_threshold", 0.0, 1.0),
            min_face_size=in_range(num_field(obj, "min_face_size", w), w + "min_face_size", 0.0),
        )


@dataclasses.dataclass(frozen=True)
class LanguageConfig:
    """``models.language``."""

    sentiment: Optional[Dict[str, Any]] = None
    toxicity: Optional[Dict[str, Any]] = None
    granularity: Optional[str] = None

    def to_obj(self) -> Dict[str, Any]:
        return drop_none(dataclasses.asdict(self))

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> LanguageConfig:
        w = "models.language."
        granularity = opt_field(obj, "granularity", str, w)
        if granularity is not None and granularity not in GRANULARITIES:
            raise ProtocolViolation(
                Codes.INVALID_STRUCTURE,
                f"Field '{w}granularity' must be one of {', '.join(GRANULARITIES)}, got '{granularity}'.",
            )
        return cls(
            sentiment=map_field(obj, "sentiment", w),
            toxicity=map_field(obj, "toxicity", w),
            granularity=granularity,
        )


@dataclasses.dataclass(frozen=True)
class ModelsConfig:
    """``models``: a model is enabled by being present (an empty object means its defaults)."""

    face: Optional[FaceConfig] = None
    language: Optional[LanguageConfig] = None
    prosody: Optional[Dict[str, Any]] = None
    burst: Optional[Dict[str, Any]] = None
    facemesh: Optional[Dict[str, Any]] = None

    @property
    def enabled(self) -> Tuple[str, ...]:
        return tuple(m for m in MODELS if getattr(self, m) is not None)

    def to_obj(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for name in MODELS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value.to_obj() if hasattr(value, "to_obj") else dict(value)
        return out

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> ModelsConfig:
        unknown = sorted(set(obj) - set(MODELS))
        if unknown:
            raise ProtocolViolation(
                Codes.INVALID_STRUCTURE,
                f"Unknown model type '{unknown[0]}'. Valid model types are: {', '.join(MODELS)}.",
            )
        face = map_field(obj, "face", "models.")
        language = map_field(obj, "language", "models.")
        return cls(
            face=None if face is None else FaceConfig.from_obj(face),
            language=None if language is None else LanguageConfig.from_obj(language),
            prosody=map_field(obj, "prosody", "models."),
            burst=map_field(obj, "burst", "models."),
            facemesh=map_field(obj, "facemesh", "models."),
        )


@dataclasses.dataclass(frozen=True)
class PublishMessage:
    """One request on the socket. ``data`` is base64 media, or raw text when ``raw_text`` is true."""

    data: Optional[str] = None
    models: Optional[ModelsConfig] = None
    stream_window_ms: Optional[float] = None
    reset_stream: bool = False
    raw_text: bool = False
    job_details: bool = False
    payload_id: Optional[str] = None

    def to_obj(self) -> Dict[str, Any]:
        obj: Dict[str, Any] = {}
        if self.data is not None:
            obj["data"] = self.data
        if self.models is not None:
            obj["models"] = self.models.to_obj()
        if self.stream_window_ms is not None:
            obj["stream_window_ms"] = self.stream_window_ms
        for flag in ("reset_stream", "raw_text", "job_details"):
            if getattr(self, flag):
                obj[flag] = True
        if self.payload_id is not None:
            obj["payload_id"] = self.payload_id
        return obj

    def to_json(self) -> str:
        return json.dumps(self.to_obj(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PublishMessage:
        """Parse a request; raise :class:`ProtocolViolation` with the code the server answers with."""
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            raise ProtocolViolation(
                Codes.INVALID_JSON, "Request could not be parsed as valid JSON."
            ) from None
        if not isinstance(obj, dict):
            raise ProtocolViolation(Codes.INVALID_STRUCTURE, "Request must be a JSON object.")
        return cls.from_obj(obj)

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> PublishMessage:
        models = map_field(obj, "models", "")
        window = in_range(
            num_field(obj, "stream_window_ms", ""),
            "stream_window_ms",
            STREAM_WINDOW_MS_MIN,
            STREAM_WINDOW_MS_MAX,
        )
        return cls(
            data=opt_field(obj, "data", str, ""),
            models=None if models is None else ModelsConfig.from_obj(models),
            stream_window_ms=window,
            reset_stream=bool(opt_field(obj, "reset_stream", bool, "")),
            raw_text=bool(opt_field(obj, "raw_text", bool, "")),
            job_details=bool(opt_field(obj, "job_details", bool, "")),
            payload_id=opt_field(obj, "payload_id", str, ""),
        )
