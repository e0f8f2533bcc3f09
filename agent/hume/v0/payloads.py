"""What waits to be sent on each v0 socket, how it becomes a publish message, and how replies come back.

Pure code (no sockets, no event loop), so every rule that decides what leaves the device is unit-tested:

- A frame slot holds the newest JPEGs, at most :data:`FRAME_BACKLOG`: while a face reply is outstanding,
  the oldest waiting frame gives way to a newer one (Hume's own web client sends one frame per reply,
  facts section 7). More than one waits only when frames arrive together: a visit's first frames, held
  while its debounce ran (``agent.hub``), come in one burst when it qualifies, and each stands for time
  of the visit no later frame measures.
- Audio accumulates and leaves as one WAV payload of at most ``min(5000 ms, stream_window_ms)``: the API
  rejects longer audio (E0203), and a payload longer than the sliding window would be cut by the server
  anyway. The backlog is bounded by ``queue_seconds``; past it the oldest audio is dropped and counted.
- Text waits in a short queue, one payload per text, split at the API's 10,000-character limit.

Every queued item carries the *epoch* (the number of session boundaries seen when it was captured). A
payload never mixes epochs, and the link sets ``reset_stream`` on the first payload of a new epoch, so no
audio context crosses a visitor boundary. Raw media lives only in these in-memory buffers, never on disk.
"""

from __future__ import annotations

import base64
import collections
from typing import Deque, Dict, List, Optional, Tuple

from agent.config import HumeConfig
from agent.hume.types import Measurement, Observation, OutgoingMedia, scoped_face_id
from agent.hume.v0.protocol import (
    AUDIO_MAX_MS,
    TEXT_MAX_CHARS,
    Codes,
    ErrorMessage,
    Prediction,
    PredictionsMessage,
    Reply,
    WarningMessage,
)
from agent.hume.v0.publish import FaceConfig, LanguageConfig, ModelsConfig, PublishMessage
from agent.media.audio import AUDIO_RATE, wav_bytes
from agent.untrusted import code_key

BYTES_PER_S = AUDIO_RATE * 2
"""16 kHz mono signed 16-bit: the format the microphone delivers and the WAV container declares."""

FRAME_BACKLOG = 3
"""Frames waiting at most: a visit's first frames held during the default 1 s debounce at 2 fps (2), and
the live frame after them. With "the newest only" the burst kept one, and 0.5 s of each visit's start
went unmeasured (benchmark 8). Steadily one frame period (0.5 s) apart, frames rarely queue behind a
face reply (a few tens of ms)."""

TEXT_QUEUE_MAX = 16
"""Texts waiting at most; text comes from commands or a file, far slower than one payload per reply."""

Queued = Tuple[int, OutgoingMedia]
"""(epoch, media) as a buffer hands it to the link."""

MODALITY_MODELS: Dict[str, Tuple[str, ...]] = {
    "video": ("face",),
    "audio": ("prosody", "burst"),
    "text": ("language",),
}
"""Which models each socket carries. Prosody and burst share one audio payload (one request, two models).

Facemesh is on no socket: it reads face-mesh landmarks (JSON), which this agent does not compute; asked
for on an image it fails the whole payload with E0102, taking the face result with it.
"""

WARNING_MODEL: Dict[str, str] = {
    Codes.NO_BURSTS: "burst",
    Codes.NO_FACEMESH: "facemesh",
    Codes.NO_FACES: "face",
    Codes.NO_LANGUAGE: "language",
    Codes.NO_SPEECH: "prosody",
}
"""The model a top-level "nothing detected" warning speaks for (nested warnings name it themselves)."""


def modality_models(cfg: HumeConfig) -> Dict[str, Tuple[str, ...]]:
    """The sockets this config needs, each with its configured models (no models, no socket)."""
    out = {}
    for modality, models in MODALITY_MODELS.items():
        chosen = tuple(m for m in models if m in cfg.models)
        if chosen:
            out[modality] = chosen
    return out


# --------------------------------------------------------------------------------------------------
# Buffers


class FrameSlot:
    """The newest frames waiting for the video socket, oldest first, at most ``backlog`` of them; a frame
    pushed out unsent by a newer one counts a drop."""

    def __init__(self, backlog: int = FRAME_BACKLOG) -> None:
        if backlog < 1:
            raise ValueError(f"frame backlog {backlog}: must be >= 1")
        self._items: Deque[Queued] = collections.deque()
        self.backlog = backlog
        self.dropped = 0

    def put(self, jpeg: bytes, captured_at: float, session_id: Optional[str], epoch: int) -> None:
        self._items.append((epoch, OutgoingMedia("frame", jpeg, captured_at, session_id)))
        while len(self._items) > self.backlog:
            self._items.popleft()
            self.dropped += 1

    def head_epoch(self) -> Optional[int]:
        return self._items[0][0] if self._items else None

    def take(self) -> Optional[Queued]:
        return self._items.popleft() if self._items else None

    def clear(self) -> int:
        """Drop the waiting frames (media no longer allowed); how many."""
        dropped = len(self._items)
        self._items.clear()
        return dropped

    def stats(self) -> Dict[str, float]:
        return {"dropped_frames": self.dropped, "queued_frames": len(self._items)}


class AudioBuffer:
    """Audio captured while the socket was busy or down, merged into payloads, bounded in seconds."""

    def __init__(self, queue_seconds: float, max_payload_ms: float) -> None:
        self.max_bytes = _even(int(queue_seconds * BYTES_PER_S))
        self.max_payload_bytes = _even(int(max_payload_ms * BYTES_PER_S / 1000))
        self._chunks: Deque[Tuple[int, OutgoingMedia]] = collections.deque()
        self.queued_bytes = 0
        self.dropped_bytes = 0

    def put(self, pcm16: bytes, captured_at: float, session_id: Optional[str], epoch: int) -> None:
        pcm16 = pcm16[: _even(len(pcm16))]  # a torn sample would shift every later one
        if not pcm16:
            return
        self._chunks.append((epoch, OutgoingMedia("audio", pcm16, captured_at, session_id)))
        self.queued_bytes += len(pcm16)
        excess = self.queued_bytes - self.max_bytes
        if excess > 0:
            self._cut(excess)
            self.dropped_bytes += excess

    def head_epoch(self) -> Optional[int]:
        return self._chunks[0][0] if self._chunks else None

    def take(self) -> Optional[Queued]:
        """The oldest audio as one payload: one epoch, one session, at most ``max_payload_ms``."""
        if not self._chunks:
            return None
        epoch, first = self._chunks[0]
        parts: List[bytes] = []
        size = 0
        while self._chunks and size < self.max_payload_bytes:
            chunk_epoch, chunk = self._chunks[0]
            if chunk_epoch != epoch or chunk.session_id != first.session_id:
                break
            n = min(len(chunk.data), self.max_payload_bytes - size)
            parts.append(chunk.data[:n])
            size += n
            self._cut(n)
        data = b"".join(parts)
        duration = len(data) / BYTES_PER_S
        return epoch, OutgoingMedia("audio", data, first.captured_at, first.session_id, duration)

    def clear(self) -> int:
        """Drop all queued audio (media no longer allowed); the number of chunks dropped."""
        dropped = len(self._chunks)
        self._chunks.clear()
        self.queued_bytes = 0
        return dropped

    def _cut(self, n: int) -> None:
        """Remove ``n`` bytes from the head; a partly cut chunk starts later by what was cut."""
        while n > 0:
            epoch, head = self._chunks[0]
            if len(head.data) <= n:
                self._chunks.popleft()
                self.queued_bytes -= len(head.data)
                n -= len(head.data)
                continue
            rest = OutgoingMedia("audio", head.data[n:], head.captured_at + n / BYTES_PER_S, head.session_id)
            self._chunks[0] = (epoch, rest)
            self.queued_bytes -= n
            n = 0

    def stats(self) -> Dict[str, float]:
        return {
            "dropped_audio_s": round(self.dropped_bytes / BYTES_PER_S, 3),
            "queued_audio_s": round(self.queued_bytes / BYTES_PER_S, 3),
        }


class TextBuffer:
    """Texts for the language model, oldest dropped past :data:`TEXT_QUEUE_MAX` (counted)."""

    def __init__(self, maxlen: int = TEXT_QUEUE_MAX) -> None:
        self._items: Deque[Queued] = collections.deque()
        self.maxlen = maxlen
        self.dropped = 0

    def put(self, text: str, captured_at: float, session_id: Optional[str], epoch: int) -> None:
        # Whitespace-only text makes the language model fail (facts section 7): nothing to measure.
        if not text.strip():
            return
        for start in range(0, len(text), TEXT_MAX_CHARS):
            piece = text[start : start + TEXT_MAX_CHARS]
            self._items.append((epoch, OutgoingMedia("text", piece.encode("utf-8"), captured_at, session_id)))
        while len(self._items) > self.maxlen:
            self._items.popleft()
            self.dropped += 1

    def head_epoch(self) -> Optional[int]:
        return self._items[0][0] if self._items else None

    def take(self) -> Optional[Queued]:
        return self._items.popleft() if self._items else None

    def clear(self) -> int:
        """Drop every queued text (media no longer allowed); how many."""
        dropped = len(self._items)
        self._items.clear()
        return dropped

    def stats(self) -> Dict[str, float]:
        return {"dropped_texts": self.dropped, "queued_texts": len(self._items)}


def _even(n: int) -> int:
    return n - n % 2


# --------------------------------------------------------------------------------------------------
# Publish messages


class PayloadBuilder:
    """Turns queued media into the publish message of one socket. Config travels with every payload."""

    def __init__(self, cfg: HumeConfig, models: Tuple[str, ...]) -> None:
        face = (
            FaceConfig(
                identify_faces=cfg.v0.identify_faces,
                fps_pred=cfg.fps_pred,
                prob_threshold=cfg.v0.prob_threshold,
                min_face_size=float(cfg.min_face_size),
            )
            if "face" in models
            else None
        )
        self.models = ModelsConfig(
            face=face,
            # Sentiment and toxicity ride along: the language summary reports both (no extra request).
            language=LanguageConfig(sentiment={}, toxicity={}, granularity=cfg.v0.language_granularity)
            if "language" in models
            else None,
            prosody={} if "prosody" in models else None,
            burst={} if "burst" in models else None,
        )
        self.stream_window_ms = float(cfg.v0.stream_window_ms)

    def build(self, media: OutgoingMedia, payload_id: str, reset_stream: bool) -> PublishMessage:
        if media.kind == "text":
            return PublishMessage(
                data=media.data.decode("utf-8"),
                models=self.models,
                raw_text=True,
                reset_stream=reset_stream,
                payload_id=payload_id,
            )
        raw = wav_bytes(media.data) if media.kind == "audio" else media.data
        return PublishMessage(
            data=base64.b64encode(raw).decode("ascii"),
            models=self.models,
            # The sliding window only exists for audio models; other payloads leave it to the server.
            stream_window_ms=self.stream_window_ms if media.kind == "audio" else None,
            reset_stream=reset_stream,
            payload_id=payload_id,
        )


def max_audio_payload_ms(cfg: HumeConfig) -> float:
    """Audio per payload: the API's 5000 ms limit, and no longer than the sliding window it feeds."""
    return float(min(AUDIO_MAX_MS, cfg.v0.stream_window_ms))


# --------------------------------------------------------------------------------------------------
# Replies


def _measurement(model: str, p: Prediction, face_scope: str) -> Measurement:
    begin = end = None
    if p.time is not None:
        begin, end = p.time.begin, p.time.end
    elif p.face_time is not None:
        begin = p.face_time
    return Measurement(
        emotions=p.emotions,
        face_id=scoped_face_id(p.face_id, face_scope) if model == "face" else None,
        begin_s=begin,
        end_s=end,
        text=p.text,
        sentiment=p.sentiment,
        toxicity=p.toxicity,
    )


def observations(
    reply: Reply, media: OutgoingMedia, latency_s: float, models: Tuple[str, ...], face_scope: str
) -> List[Observation]:
    """One observation per model the reply speaks for; errors yield none (they are counted, not results)."""
    if isinstance(reply, ErrorMessage):
        return []

    def obs(
        model: str, measurements: Tuple[Measurement, ...] = (), code: Optional[str] = None
    ) -> Observation:
        return Observation(model, media.captured_at, measurements, code, latency_s, media.session_id)

    if isinstance(reply, WarningMessage):
        model = WARNING_MODEL.get(reply.code or "")
        return [obs(model, code=reply.code)] if model in models else []
    out = []
    for model, output in reply.outputs.items():
        if output.warning is not None:
            out.append(obs(model, code=output.code or "warning"))
        else:
            out.append(obs(model, tuple(_measurement(model, p, face_scope) for p in output.predictions)))
    return out


def warning_codes(reply: Reply) -> List[str]:
    """Every warning code in a reply, top-level or nested under a model."""
    if isinstance(reply, WarningMessage):
        return [code_key(reply.code, missing="warning")]
    if isinstance(reply, PredictionsMessage):
        return [code_key(o.code, missing="warning") for o in reply.outputs.values() if o.warning is not None]
    return []
