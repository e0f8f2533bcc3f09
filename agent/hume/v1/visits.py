"""The v1 backend's visits: media queued per visitor session, held until the visit is worth a session.

Media arrives tagged with the visitor session; a new session id, or an end, closes the visit. A visit's
media is held until the visit has lasted ``hume.v1.min_session_s`` by capture time (Hume bills every
session at least 10 s): a visit that ends sooner is dropped unsent and opens no session. Audio is kept up
to ``hume.queue_seconds`` and video to its freshest frames, so a visit waiting for a connection (backoff,
the organisation's rate limit) is measured once a session opens. Each endpoint serves the visits in order
(:meth:`Visits.next_for`); a visit is forgotten once every endpoint is past it.

Pure: no event loop, no I/O, no clock (times are capture times). The backend (``agent.hume.v1.client``)
wakes its senders when :meth:`Visits.add_audio`, :meth:`Visits.add_frame` or an end changed something.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Callable, Deque, Dict, Optional, Sequence

from agent.hume.types import OutgoingMedia
from agent.hume.v1 import protocol as p
from agent.media.audio import BYTES_PER_MS


@dataclasses.dataclass
class Visit:
    """One visitor session's media, per endpoint, in capture order."""

    seq: int
    session_id: Optional[str]
    first_at: float
    last_at: float
    audio: Deque[OutgoingMedia]
    video: Deque[OutgoingMedia]
    ended: bool = False
    qualified: bool = False
    """It has lasted ``min_session_s``: its media may be sent."""

    def queue(self, endpoint: str) -> Deque[OutgoingMedia]:
        return self.audio if endpoint == "audio" else self.video


class Visits:
    """See the module docstring. ``count(key, n)`` adds to the backend's counters."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        min_session_s: float,
        audio_max_frames: int,
        video_held: int,
        count: Callable[[str, int], None],
        on_end: Callable[[], None],
    ) -> None:
        self.pending: Deque[Visit] = collections.deque()
        self.served: Dict[str, int] = dict.fromkeys(endpoints, 0)
        """Per endpoint, the seq of the last visit it is done with."""
        self._seq = 0
        self._min_session_s = min_session_s
        self._audio_max_frames = audio_max_frames
        self._video_held = video_held
        self._count = count
        self._on_end = on_end

    def open_count(self) -> int:
        return sum(1 for v in self.pending if not v.ended)

    def for_capture(self, session_id: Optional[str], captured_at: float) -> Visit:
        """The visit media of ``session_id`` captured at ``captured_at`` belongs to (a new one if need be)."""
        current = self.pending[-1] if self.pending else None
        if current is not None and not current.ended and current.session_id != session_id:
            self.end(current)
        if current is None or current.ended or current.session_id != session_id:
            self._seq += 1
            current = Visit(
                self._seq, session_id, captured_at, captured_at, collections.deque(), collections.deque()
            )
            self.pending.append(current)
        current.last_at = max(current.last_at, captured_at)
        if not current.qualified and current.last_at - current.first_at >= self._min_session_s:
            current.qualified = True
        return current

    def end(self, visit: Visit) -> None:
        """The visit is over; one that never qualified is dropped unsent (counted)."""
        visit.ended = True
        if not visit.qualified:
            dropped = len(visit.audio) + len(visit.video)
            if dropped:
                self._count("short_visits", 1)
                self._count("media_dropped_short_visit", dropped)
            visit.audio.clear()
            visit.video.clear()
        self._on_end()

    def end_current(self) -> None:
        """A boundary: the open visit, if any, ends."""
        if self.pending and not self.pending[-1].ended:
            self.end(self.pending[-1])

    def add_audio(self, pcm16: bytes, captured_at: float, session_id: Optional[str]) -> None:
        """``pcm16`` as the contract's audio frames; the oldest dropped past ``audio_max_frames``."""
        visit = self.for_capture(session_id, captured_at)
        step = p.AUDIO_FRAME_MS * BYTES_PER_MS
        usable = len(pcm16) - len(pcm16) % 2
        for i, start in enumerate(range(0, usable, step)):
            frame = pcm16[start : min(usable, start + step)]
            at = captured_at + i * p.AUDIO_FRAME_MS / 1000.0
            visit.audio.append(
                OutgoingMedia("audio", frame, at, session_id, len(frame) / (1000.0 * BYTES_PER_MS))
            )
        overflow = len(visit.audio) - self._audio_max_frames
        for _ in range(max(0, overflow)):
            visit.audio.popleft()
        if overflow > 0:
            self._count("audio_frames_dropped_backlog", overflow)

    def add_frame(self, jpeg: bytes, captured_at: float, session_id: Optional[str]) -> None:
        """A frame; the oldest dropped past ``video_held`` (counted stale)."""
        visit = self.for_capture(session_id, captured_at)
        visit.video.append(OutgoingMedia("frame", jpeg, captured_at, session_id))
        while len(visit.video) > self._video_held:
            visit.video.popleft()
            self._count("video_frames_stale", 1)

    def withdraw(self) -> int:
        """Every visit's queued media dropped and every visit ended; how many items were dropped."""
        dropped = 0
        for visit in self.pending:
            dropped += len(visit.audio) + len(visit.video)
            visit.audio.clear()
            visit.video.clear()
            visit.ended = True
        return dropped

    def next_for(self, endpoint: str) -> Optional[Visit]:
        """The oldest visit after the last one ``endpoint`` served whose media may be sent now, if any."""
        for visit in list(self.pending):
            if visit.seq <= self.served[endpoint]:
                continue
            if visit.qualified and visit.queue(endpoint):
                return visit
            if visit.ended and not visit.queue(endpoint):
                self.served[endpoint] = visit.seq
                continue
            break
        self.prune()
        return None

    def retire(self, endpoint: str) -> None:
        """``endpoint`` serves no more visits (disabled): none waits for it."""
        del self.served[endpoint]
        self.prune()

    def prune(self) -> None:
        done = min(self.served.values(), default=self._seq)
        while self.pending and self.pending[0].seq <= done:
            self.pending.popleft()
