"""The v0 emulator's per-connection state and its five models: one publish message in, one reply out.

A :class:`Session` lives exactly as long as one WebSocket connection, as Hume's streaming job does: it
owns the job id, the audio sliding window and the face identity cache. ``reset_stream`` clears the
window only; face ids survive it (the publish schema says so for the face model).

Stream clock: audio times are seconds of audio received on this connection so far, so a second 500 ms
payload after a first one covers 0.5-1.0 s. The clock keeps running across ``reset_stream`` (only the
context is dropped), so times stay unique within a connection. Predictions are reported for every voiced
segment of the analysed window (prepended context + the new payload) that reaches into the new payload;
a segment that started in the context is reported from its true start, as a sliding window would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from agent.hume.types import MODELS, Score, Scores
from agent.hume.v0.protocol import (
    EXPRESSIONS,
    FACE_DESCRIPTIONS,
    FACE_FPS_PRED_DEFAULT,
    FACE_MIN_FACE_SIZE_DEFAULT,
    FACE_PROB_THRESHOLD_DEFAULT,
    FACS_LABELS,
    LANGUAGE_EXPRESSIONS,
    SENTIMENT_LEVELS,
    STREAM_WINDOW_MS_DEFAULT,
    STREAM_WINDOW_MS_MAX,
    TOXICITY_CATEGORIES,
    BoundingBox,
    Codes,
    ErrorMessage,
    ModelOutput,
    Prediction,
    PredictionsMessage,
    ProtocolViolation,
    Reply,
    TimeRange,
    WarningMessage,
)
from agent.hume.v0.publish import FaceConfig, LanguageConfig, PublishMessage
from hume_emulator import detectors, scoring
from hume_emulator.media import Media, decode, decode_frame

RATE = detectors.SPEECH_RATE_HZ
BURST_MAX_S = 1.0
"""Vocal bursts (laughs, sighs, "ha!") are short isolated vocalisations; longer voiced runs are speech."""
MAX_TRACKED_FACES = 64
TRACK_MIN_IOU = 0.3

COMPATIBLE: Mapping[str, Tuple[str, ...]] = {
    "face": ("image", "video"),
    "prosody": ("audio",),
    "burst": ("audio",),
    "language": ("text",),
    "facemesh": ("facemesh",),
}
"""Which detected file types each model accepts; anything else is E0102."""

NOTHING_DETECTED: Mapping[str, Tuple[str, str]] = {
    "burst": (Codes.NO_BURSTS, "No vocal bursts detected."),
    "facemesh": (Codes.NO_FACEMESH, "No facemeshes detected."),
    "face": (Codes.NO_FACES, "No faces detected."),
    "language": (Codes.NO_LANGUAGE, "No emotional language detected."),
    "prosody": (Codes.NO_SPEECH, "No speech detected."),
}
"""The nested per-model warnings, keyed by model (short runtime wording, as Hume's clients show it)."""

WARNING_TEXT: Mapping[str, str] = {
    Codes.NO_BURSTS: "No vocal bursts could be detected in the streamed media.",
    Codes.NO_FACEMESH: "No facemeshes could be detected in the streamed media.",
    Codes.NO_FACES: "No faces could be detected in the streamed media.",
    Codes.NO_LANGUAGE: "No emotional language could be detected in the streamed media.",
    Codes.NO_SPEECH: "No speech could be detected in the streamed media.",
}
"""Documented long texts, used for top-level warnings injected as faults."""

ERROR_TEXT: Mapping[str, str] = {
    Codes.INVALID_JSON: "Request could not be parsed as valid JSON.",
    Codes.INVALID_STRUCTURE: "Request has an invalid structure.",
    Codes.MODEL_FILE_MISMATCH: "Streaming payload configured with a model type which is not supported for "
    "the detected file type.",
    Codes.UNKNOWN_FORMAT: "Media could not be parsed into a known file format.",
    Codes.BAD_BASE64: "Data could not be decoded as base64. Set raw_text to true to send text.",
    Codes.NO_AUDIO_SIGNAL: "No audio signal could be inferred from the media.",
    Codes.AUDIO_TOO_LONG: "Your audio file was too long. The limit is 5000 milliseconds.",
    Codes.VIDEO_TOO_LONG: "Your video file was too long. The limit is 5000 milliseconds.",
    Codes.IMAGE_TOO_LARGE: "Your image file was too large. The limit is 3,000 x 3,000 pixels.",
    Codes.TEXT_TOO_LONG: "Your text was too long. The limit is 10,000 characters.",
    Codes.OUT_OF_CREDITS: "You have run out of credits. Go to the Hume platform website in order to purchase "
    "more credits.",
}
"""Texts for errors injected as faults (real validation failures carry a specific text)."""

_SENTENCE = re.compile(r"[^\s.!?][^.!?]*[.!?]*")
_LINE = re.compile(r"[^\n]+")


def job_id_for(seed: int, connection_no: int) -> str:
    """The 32-character job id of a connection: stable per connection, reproducible per seed."""
    return hashlib.blake2b(f"job:{seed}:{connection_no}".encode(), digest_size=16).hexdigest()


@dataclasses.dataclass
class _Track:
    face_id: str
    box: Tuple[float, float, float, float]


def _named(labels: Sequence[str], values: Sequence[float]) -> Scores:
    return tuple(Score(name, round(value, 6)) for name, value in zip(labels, values))


def _scores(
    labels: Sequence[str], features: Sequence[float], cues: Mapping[str, float], seed: int, salt: str
) -> Scores:
    return _named(labels, scoring.cued_scores(labels, features, cues, seed, salt))


class Session:
    """The state of one streaming connection; :meth:`handle` answers one publish message."""

    def __init__(self, seed: int, connection_no: int) -> None:
        self.seed = seed
        self.job_id = job_id_for(seed, connection_no)
        self._context = np.zeros(0, dtype=np.float32)
        self._clock_s = 0.0
        self._tracks: List[_Track] = []
        self._faces_seen = 0

    def reset_stream(self) -> None:
        """Drop the audio context (not the face identity cache, not the stream clock)."""
        self._context = np.zeros(0, dtype=np.float32)

    def handle(self, msg: PublishMessage) -> Reply:
        """Answer one parsed publish message with exactly one reply."""
        job = self.job_id if msg.job_details else None
        if msg.reset_stream:
            self.reset_stream()
        try:
            if msg.data is None:
                if msg.job_details or msg.reset_stream:
                    return PredictionsMessage(payload_id=msg.payload_id, job_id=job)
                raise ProtocolViolation(
                    Codes.INVALID_STRUCTURE,
                    "Missing required field 'data': send base64 media, or text with raw_text set to true.",
                )
            models = msg.models.enabled if msg.models is not None else ()
            if not models:
                raise ProtocolViolation(
                    Codes.INVALID_STRUCTURE,
                    f"Field 'models' must configure at least one model of: {', '.join(MODELS)}.",
                )
            media = decode(msg.data, msg.raw_text)
            for model in models:
                if media.kind not in COMPATIBLE[model]:
                    raise ProtocolViolation(
                        Codes.MODEL_FILE_MISMATCH,
                        f"Streaming payload configured with model type '{model}', which is not supported "
                        f"for the detected file type '{media.kind}'.",
                    )
            outputs = self._run(models, media, msg)
        except ProtocolViolation as exc:
            return ErrorMessage(exc.message, exc.code, msg.payload_id, job)
        return PredictionsMessage(outputs, msg.payload_id, job)

    def _run(self, models: Sequence[str], media: Media, msg: PublishMessage) -> Dict[str, ModelOutput]:
        assert msg.models is not None
        found: Dict[str, Tuple[Prediction, ...]] = {}
        if media.audio is not None:
            window_ms = msg.stream_window_ms or STREAM_WINDOW_MS_DEFAULT
            signal, start_s, new_from_s = self._slide(media.audio, window_ms)
            for model, max_len_s in (("prosody", None), ("burst", BURST_MAX_S)):
                if model in models:
                    found[model] = self._audio(signal, start_s, new_from_s, model, max_len_s)
        if media.image is not None and msg.models.face is not None:
            found["face"] = self._faces(media.image, msg.models.face, 0, None)
        if media.frames and msg.models.face is not None:
            found["face"] = self._video_faces(media, msg.models.face)
        if media.text is not None and msg.models.language is not None:
            found["language"] = self._language(media.text, msg.models.language)
        if media.landmarks is not None:
            found["facemesh"] = self._facemesh(media.landmarks)
        outputs = {}
        for model in models:
            predictions = found[model]
            if predictions:
                outputs[model] = ModelOutput(predictions=predictions)
            else:
                code, text = NOTHING_DETECTED[model]
                outputs[model] = ModelOutput(warning=text, code=code)
        return outputs

    # ---------------------------------------------------------------------------------------- audio

    def _slide(self, audio: np.ndarray, window_ms: float) -> Tuple[np.ndarray, float, float]:
        """Prepend context up to the window, advance the clock; return (signal, its start, payload start)."""
        payload_start_s = self._clock_s
        context_n = min(self._context.size, max(0, round(window_ms / 1000.0 * RATE) - audio.size))
        context = self._context[self._context.size - context_n :]
        signal = np.concatenate([context, audio])
        keep = round(STREAM_WINDOW_MS_MAX / 1000.0 * RATE)
        self._context = np.concatenate([self._context, audio])[-keep:]
        self._clock_s += audio.size / RATE
        return signal, payload_start_s - context_n / RATE, payload_start_s

    def _audio(
        self, signal: np.ndarray, start_s: float, new_from_s: float, model: str, max_len_s: Optional[float]
    ) -> Tuple[Prediction, ...]:
        out = []
        for begin, end in detectors.speech_segments(signal):
            if start_s + end <= new_from_s + 1e-9 or (max_len_s is not None and end - begin > max_len_s):
                continue
            segment = signal[round(begin * RATE) : round(end * RATE)]
            features = detectors.audio_features(segment)
            cues = scoring.voice_cue_strengths(detectors.voice_cues(segment).liveliness)
            out.append(
                Prediction(
                    emotions=_scores(EXPRESSIONS, features, cues, self.seed, model),
                    time=TimeRange(round(start_s + begin, 3), round(start_s + end, 3)),
                )
            )
        return tuple(out)

    # ----------------------------------------------------------------------------------------- face

    def _video_faces(self, media: Media, cfg: FaceConfig) -> Tuple[Prediction, ...]:
        """Faces in the frames ``fps_pred`` selects: the first frame at or after each 1/fps_pred step."""
        step_s = 1.0 / (cfg.fps_pred or FACE_FPS_PRED_DEFAULT)
        out: List[Prediction] = []
        next_s = 0.0
        for index, jpeg in enumerate(media.frames):
            at_s = index / media.fps
            if at_s + 1e-9 < next_s:
                continue
            while next_s <= at_s + 1e-9:
                next_s += step_s
            out.extend(self._faces(decode_frame(jpeg), cfg, index, round(at_s, 6)))
        return tuple(out)

    def _faces(
        self, image: np.ndarray, cfg: FaceConfig, frame: int, at_s: Optional[float]
    ) -> Tuple[Prediction, ...]:
        """Faces in one image; ``frame`` and ``at_s`` place it in a video (a still image: 0, None)."""
        threshold = FACE_PROB_THRESHOLD_DEFAULT if cfg.prob_threshold is None else cfg.prob_threshold
        min_size = FACE_MIN_FACE_SIZE_DEFAULT if cfg.min_face_size is None else cfg.min_face_size
        faces = [f for f in detectors.detect_faces(image, min_size) if f.prob >= threshold]
        ids = self._identify(faces) if cfg.identify_faces else ["unknown"] * len(faces)
        out = []
        for face, face_id in zip(faces, ids):
            box = (face.x, face.y, face.w, face.h)
            features = (*detectors.image_features(image, box), face.prob * 2 - 1)
            seen = detectors.face_cues(image, box)
            cues = scoring.face_cue_strengths(seen.smile, seen.eyes_open)
            out.append(
                Prediction(
                    emotions=_scores(EXPRESSIONS, features, cues, self.seed, "face"),
                    frame=float(frame),
                    face_time=at_s,
                    bbox=BoundingBox(float(face.x), float(face.y), float(face.w), float(face.h)),
                    prob=round(face.prob, 6),
                    face_id=face_id,
                    facs=None
                    if cfg.facs is None
                    else _scores(FACS_LABELS, features, cues, self.seed, "facs"),
                    descriptions=None
                    if cfg.descriptions is None
                    else _scores(FACE_DESCRIPTIONS, features, cues, self.seed, "descriptions"),
                )
            )
        return tuple(out)

    def _identify(self, faces: Sequence[detectors.FaceBox]) -> List[str]:
        """Match faces to the connection's identity cache by box overlap; unmatched ones get new ids."""
        ids = []
        free = list(self._tracks)
        for face in faces:
            box = (float(face.x), float(face.y), float(face.w), float(face.h))
            best = max(free, key=lambda t: detectors.iou(t.box, box), default=None)
            if best is not None and detectors.iou(best.box, box) >= TRACK_MIN_IOU:
                free.remove(best)
                self._tracks.remove(best)
            else:
                best = _Track(f"face_{self._faces_seen}", box)
                self._faces_seen += 1
            best.box = box
            self._tracks.append(best)
            ids.append(best.face_id)
        del self._tracks[:-MAX_TRACKED_FACES]
        return ids

    # ------------------------------------------------------------------------------------- language

    def _language(self, text: str, cfg: LanguageConfig) -> Tuple[Prediction, ...]:
        out = []
        for begin, end in text_spans(text, cfg.granularity or "word"):
            span = text[begin:end]
            features = scoring.text_features(span)
            sentiment = toxicity = None
            if cfg.sentiment is not None:
                sentiment = _named(SENTIMENT_LEVELS, scoring.sentiment_distribution(scoring.valence(span)))
            if cfg.toxicity is not None:
                toxicity = _named(TOXICITY_CATEGORIES, scoring.toxicity(span, TOXICITY_CATEGORIES, self.seed))
            cues = scoring.text_cue_strengths(span)
            out.append(
                Prediction(
                    emotions=_scores(LANGUAGE_EXPRESSIONS, features, cues, self.seed, "language"),
                    text=span,
                    position=(begin, end),
                    sentiment=sentiment,
                    toxicity=toxicity,
                )
            )
        return tuple(out)

    # ------------------------------------------------------------------------------------- facemesh

    def _facemesh(self, mesh: np.ndarray) -> Tuple[Prediction, ...]:
        out = []
        for face in mesh:
            seen = mesh_cues(face)
            cues = scoring.face_cue_strengths(seen.smile, seen.eyes_open)
            out.append(
                Prediction(emotions=_scores(EXPRESSIONS, mesh_features(face), cues, self.seed, "facemesh"))
            )
        return tuple(out)


def text_spans(text: str, granularity: str) -> List[Tuple[int, int]]:
    """Character spans ``[begin, end)`` of ``text`` at a granularity, whitespace trimmed off each span.

    word: runs of letters, digits and apostrophes; sentence: up to and including ``.!?``; utterance: one
    per line (text has no speaker turns); passage: the whole text.
    """
    if granularity == "word":
        return [(m.start(), m.end()) for m in scoring.WORD_PATTERN.finditer(text)]
    if granularity == "passage":
        matches: List[Tuple[int, int]] = [(0, len(text))]
    else:
        pattern = _SENTENCE if granularity == "sentence" else _LINE
        matches = [(m.start(), m.end()) for m in pattern.finditer(text)]
    spans = []
    for begin, end in matches:
        chunk = text[begin:end]
        stripped = chunk.strip()
        if stripped and any(c.isalnum() for c in stripped):
            lead = len(chunk) - len(chunk.lstrip())
            spans.append((begin + lead, begin + lead + len(stripped)))
    return spans


_MESH_POINTS = {"lip_top": 13, "lip_bottom": 14, "mouth_left": 61, "mouth_right": 291, "eye_l_top": 159,
                "eye_l_bottom": 145, "eye_r_top": 386, "eye_r_bottom": 374, "brow_l": 105, "brow_r": 334,
                "eye_l_outer": 33, "eye_r_outer": 263}  # fmt: skip
"""MediaPipe face-mesh indices of the points whose distances the facemesh features use."""


MESH_SMILE_WIDTH = (0.40, 0.50)
"""Mouth width / face width: a relaxed mouth in MediaPipe's mesh is about 0.38-0.40 of the face's width,
a broad smile 0.5 or more; the smile cue rises linearly between."""
MESH_EYES_OPEN = (0.01, 0.03)
"""Lid gap / face height: closed eyes under 0.01, open ones about 0.03-0.05."""


def mesh_cues(face: np.ndarray) -> detectors.FaceCues:
    """A smile and open eyes read from the mesh's geometry, the cues the face model takes from pixels."""
    span = np.ptp(face[:, :2], axis=0)
    height, width = max(float(span[1]), 1e-6), max(float(span[0]), 1e-6)

    def dist(a: str, b: str) -> float:
        return float(np.linalg.norm(face[_MESH_POINTS[a]][:2] - face[_MESH_POINTS[b]][:2]))

    def ramp(value: float, bounds: Tuple[float, float]) -> float:
        return min(1.0, max(0.0, (value - bounds[0]) / (bounds[1] - bounds[0])))

    eyes = (dist("eye_l_top", "eye_l_bottom") + dist("eye_r_top", "eye_r_bottom")) / 2.0
    return detectors.FaceCues(
        smile=ramp(dist("mouth_left", "mouth_right") / width, MESH_SMILE_WIDTH),
        eyes_open=ramp(eyes / height, MESH_EYES_OPEN),
    )


def mesh_features(face: np.ndarray) -> Tuple[float, ...]:
    """Mouth opening and width, eye opening, brow raise, head roll and depth spread of one 478-point face."""
    p = {name: face[i] for name, i in _MESH_POINTS.items()}
    span = np.ptp(face[:, :2], axis=0)
    height, width = max(float(span[1]), 1e-6), max(float(span[0]), 1e-6)

    def dist(a: str, b: str) -> float:
        return float(np.linalg.norm(p[a][:2] - p[b][:2]))

    eyes = (dist("eye_l_top", "eye_l_bottom") + dist("eye_r_top", "eye_r_bottom")) / 2.0
    brows = (dist("brow_l", "eye_l_top") + dist("brow_r", "eye_r_top")) / 2.0
    roll = np.arctan2(*(p["eye_r_outer"][:2] - p["eye_l_outer"][:2])[::-1])
    return tuple(
        float(np.tanh(v))
        for v in (
            dist("lip_top", "lip_bottom") / height * 10.0 - 0.5,
            dist("mouth_left", "mouth_right") / width * 4.0 - 1.5,
            eyes / height * 20.0 - 1.0,
            brows / height * 10.0 - 1.0,
            float(roll) * 3.0,
            float(np.std(face[:, 2])) * 10.0 - 0.5,
        )
    )


def warning_reply(code: str, msg: Optional[PublishMessage], reply: Reply) -> Reply:
    """Replace ``reply`` by the warning ``code``: nested under its model if the request asked for that
    model, else a top-level warning (how the injected-warning fault answers)."""
    payload_id = msg.payload_id if msg is not None else None
    job = reply.job_id if isinstance(reply, (PredictionsMessage, ErrorMessage, WarningMessage)) else None
    enabled = msg.models.enabled if msg is not None and msg.models is not None else ()
    for model, (model_code, text) in NOTHING_DETECTED.items():
        if model_code == code and model in enabled:
            outputs = dict(reply.outputs) if isinstance(reply, PredictionsMessage) else {}
            outputs[model] = ModelOutput(warning=text, code=code)
            return PredictionsMessage(outputs, payload_id, job)
    return WarningMessage(WARNING_TEXT.get(code, f"Warning {code}."), code, payload_id, job)
