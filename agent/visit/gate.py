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
lets a frame being encoded across that moment notice it. :class:`DebounceHold`: a visit's media held while
its debounce decides. Pure: no clock, no I/O.
"""

from __future__ import annotations

import collections
import math
from typing import Deque, Dict, Sequence, Tuple

from agent.media.audio import AudioChunk
from agent.media.frames import Box, Frame

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


class DebounceHold:
    """A visit's media captured while its debounce runs, once its notice is out: held in memory only.

    In presence mode the hub announces a visit at the first frame of its debounce (``SessionTracker.
    pending_id``): frames and audio captured once that notice is out wait here, at most ``debounce_s`` of
    them, are sent first when the debounce qualifies the visit, and are dropped (the notice withdrawn) when
    it fails. Nothing leaves before the notice, as before; a glance raises and withdraws a notice and sends
    nothing; a visit's start is measured from the frame after the one that showed it (benchmark 8: 1.1-1.5
    s missed at each visit's start with the notice at the debounce's end, the debounce 1 s of it).
    """

    def __init__(self, debounce_s: float, fps: float, chunk_ms: int) -> None:
        self.frames: Deque[Tuple[Frame, Sequence[Box]]] = collections.deque(
            maxlen=math.ceil(debounce_s * fps) + 1
        )
        """(frame, the faces the presence check found in it), oldest first."""
        self.audio: Deque[AudioChunk] = collections.deque(maxlen=math.ceil(debounce_s * 1000 / chunk_ms) + 1)

    def clear(self) -> None:
        """The debounce failed, or media may no longer leave: none of it will."""
        self.frames.clear()
        self.audio.clear()
