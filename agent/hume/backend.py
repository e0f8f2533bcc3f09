"""The one small interface every Hume API version implements, and the normalized results it yields.

Capture, sessions, summaries and MQTT only ever see :class:`Backend` and :class:`Observation`; the v0
client (``agent.hume.client``) and a later v1 client translate their wire formats into these types.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Dict, Optional, Tuple

from agent.hume.protocol import Scores


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One prediction, normalized: one face in a frame, one audio segment, one text span."""

    emotions: Scores
    face_id: Optional[str] = None
    """Face model: the id Hume assigned ("unknown" unless identify_faces)."""
    begin_s: Optional[float] = None
    """Start on the stream's clock (seconds since the stream's first payload), when the model gives one."""
    end_s: Optional[float] = None
    text: Optional[str] = None
    sentiment: Optional[Scores] = None
    toxicity: Optional[Scores] = None


@dataclasses.dataclass(frozen=True)
class Observation:
    """What one model said about one payload: measurements, or a "nothing detected" warning."""

    model: str
    """face, prosody, burst, language or facemesh."""
    captured_at: float
    """Wall-clock (UTC epoch seconds) capture time of the media the payload carried."""
    measurements: Tuple[Measurement, ...] = ()
    warning_code: Optional[str] = None
    """Set when the model detected nothing (e.g. W0103 no faces); ``measurements`` is then empty."""
    latency_s: float = 0.0
    """Round trip from sending the payload to receiving its reply."""
    session_id: Optional[str] = None
    """The visitor session whose media this was (set by the sender, echoed back)."""


@dataclasses.dataclass(frozen=True)
class OutgoingMedia:
    """A payload waiting to be sent. ``session_id`` travels with it so a reply is never mis-attributed."""

    kind: str  # "frame" | "audio" | "text"
    data: bytes
    captured_at: float
    session_id: Optional[str]
    duration_s: float = 0.0


class Backend(abc.ABC):
    """One Hume API version. The service owns one instance and runs :meth:`run` as a task.

    ``send_*`` never block and never fail: when the link is down or busy the media waits in a bounded
    queue whose oldest entries are dropped (and counted). Results arrive through :meth:`receive`.
    """

    @abc.abstractmethod
    async def run(self) -> None:
        """Own the connections until cancelled.

        Raises :class:`agent.errors.HumeAuthError` if the key is refused before any connection was ever
        accepted (on the first attempt, or the first that reached the server once the network came up),
        so a wrong key at start-up ends the process with a clear message instead of a retry loop. A key
        refused later (revoked mid-run) is retried slowly and shown in :meth:`status` instead.
        """

    @abc.abstractmethod
    def send_frame(self, jpeg: bytes, captured_at: float, session_id: Optional[str]) -> None:
        """Queue one JPEG frame for the face model(s)."""

    @abc.abstractmethod
    def send_audio(self, pcm16: bytes, captured_at: float, session_id: Optional[str]) -> None:
        """Queue 16 kHz mono signed 16-bit little-endian PCM for the audio models."""

    @abc.abstractmethod
    def send_text(self, text: str, captured_at: float, session_id: Optional[str]) -> None:
        """Queue text for the language model."""

    @abc.abstractmethod
    def mark_boundary(self) -> None:
        """A visitor arrived or left: no context (audio window, face ids) may cross this point."""

    @abc.abstractmethod
    async def receive(self) -> Observation:
        """Wait for the next normalized result."""

    @abc.abstractmethod
    def status(self) -> Dict[str, Any]:
        """Link states and counters for health messages (JSON-serializable).

        At least ``state`` (the most severe socket state: auth_failed, quota_exhausted, backoff,
        connecting, open or idle), ``ok`` (no socket in a failure state) and ``last_error``.
        """
