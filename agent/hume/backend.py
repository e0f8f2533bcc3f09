"""The one small interface every Hume API version implements.

Capture, sessions, summaries and MQTT only ever see :class:`Backend` and the neutral types of
:mod:`agent.hume.types`; the v1 backend (``agent.hume.v1.client``, the default: the only live API) and the
legacy v0 backend (``agent.hume.v0.client``) translate their wire formats into those types.
"""

from __future__ import annotations

import abc
from typing import Optional

from agent.hume.types import BackendStatus, Observation


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
    def withdraw(self) -> int:
        """Media stopped being allowed (a pause, the notice withdrawn): drop everything queued, now.

        Nothing captured before this moment may leave afterwards (a pause pressed while the link was in
        backoff sent 4.8 s of audio and 3 frames once Hume was back, issue #31); a v1 session that is open
        is closed, and none opens until new media arrives. Returns how many queued items were dropped
        (counted in :meth:`status` too). A payload already on the wire cannot be recalled.
        """

    @abc.abstractmethod
    async def receive(self) -> Observation:
        """Wait for the next normalized result."""

    @abc.abstractmethod
    def status(self) -> BackendStatus:
        """Link states and counters for health messages, the status file and systemd's ``STATUS=``."""
