"""The media gate: whether a frame, an audio chunk or a text may leave for Hume now, and why not.

Three things must all hold for media to leave (``agent.service`` asks, the parts answer): a visit (or idle
streaming, ``session.stream_when_idle``), no privacy pause, and the visit's notice published or durably
queued (``agent.privacy.state.NoticeGate``). Every piece held back *during a visit* is counted by reason and
kind, so ``health`` says what a pause or a slow broker cost; media outside a visit is not a drop (nobody
is there to measure).

Reasons: ``paused`` (a privacy pause), ``unannounced`` (the visit's notice not yet out, or a frame or part of
an audio chunk captured before it was: ``agent.visit.audio_gate``), ``withdrawn`` (a
frame whose encoding straddled a moment media stopped being allowed). Kinds: ``frame``, ``audio``, ``text``
(a ``cmd/text``). Before this class the service counted ``unannounced`` on every read of a property, so a
``cmd/text`` arriving before the notice's PUBACK was counted as a dropped frame.

Withdrawal: when media stops being allowed with media already handed to the backend, whatever the backend
and the silence gate still hold must be dropped too (:meth:`withdraw` says when); :attr:`withdrawals`
lets a frame being encoded across that moment notice it. Pure: no clock, no I/O.
"""

from __future__ import annotations

from typing import Dict

REASONS = ("paused", "unannounced", "withdrawn")
KINDS = ("frame", "audio", "text")


class MediaGate:
    """See the module docstring."""

    def __init__(self) -> None:
        self.drops: Dict[str, Dict[str, int]] = {reason: dict.fromkeys(KINDS, 0) for reason in REASONS}
        """Pieces held back, by reason, then by kind."""
        self.withdrawals = 0
        """Times media stopped being allowed with media queued: a frame encoded across one is dropped."""
        self._queued = False
        """Media went to the backend since the last withdrawal."""

    def captured(self, kind: str, *, paused: bool) -> bool:
        """A piece just captured may be processed at all (presence, voice activity, encoding): not paused."""
        if paused:
            self.drop("paused", kind)
        return not paused

    def admit(self, kind: str, *, in_visit: bool, paused: bool, announced: bool) -> bool:
        """A piece may be sent now; a piece of a visit held back is counted under its reason."""
        if not in_visit:
            return False
        if paused:
            self.drop("paused", kind)
            return False
        if not announced:
            self.drop("unannounced", kind)
            return False
        return True

    def drop(self, reason: str, kind: str) -> None:
        """Count one piece held back (``reason`` of :data:`REASONS`, ``kind`` of :data:`KINDS`)."""
        self.drops[reason][kind] += 1

    def sent(self) -> None:
        """A piece went to the backend: a later :meth:`withdraw` has something to drop."""
        self._queued = True

    def withdraw(self) -> bool:
        """Media may no longer leave: True if the backend's and the silence gate's queues must be dropped."""
        if not self._queued:
            return False
        self._queued = False
        self.withdrawals += 1
        return True

    def media_dropped(self, *reasons: str) -> int:
        """Frames and audio chunks (not texts) held back for any of ``reasons``."""
        return sum(self.drops[r][k] for r in reasons for k in ("frame", "audio"))
