"""One v1 realtime session on one WebSocket: what is sent when, and what each reply means.

``AudioWire`` and ``VideoWire`` hold the per-connection state (pacing, the audio timeline, the video
frame FIFO) and turn server messages into :class:`~agent.hume.backend.Observation`. They do not
connect or reconnect: :mod:`agent.hume.v1.client` does, and gives each new session a new wire, which
:mod:`agent.hume.v1.session` sends from and feeds.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
from typing import Callable, Deque, Dict, Optional, Tuple

from agent.hume.pricing import v1_billed_s
from agent.hume.types import (
    NO_FACES,
    Measurement,
    Observation,
    OutgoingMedia,
    Score,
    Scores,
    scoped_face_id,
)
from agent.hume.v1 import protocol as p
from agent.media.audio import BYTES_PER_MS
from agent.throttle import TokenBucket
from agent.untrusted import clip

_LOGGER = logging.getLogger(__name__)

AUDIO_MODEL = "prosody"
"""v1 audio measures the voice; summaries already group voice results under v0's prosody model."""
VIDEO_MODEL = "face"
VIDEO_IN_FLIGHT = 6
"""Frames awaiting their reply at most: when replies slow down under load, newer frames wait (and are
replaced by fresher ones) instead of piling up unanswered."""
TIMELINE_KEEP_MS = 30_000
"""Sent audio remembered for mapping result windows back to capture times (windows span <= 10 s)."""

Emit = Callable[[Observation], None]


def _scores(scores: Optional[p.Scores]) -> Scores:
    return tuple(Score(s.name, s.probability) for s in scores or ())


@dataclasses.dataclass
class _Segment:
    start_ms: int
    media: OutgoingMedia
    sent_at: float

    @property
    def end_ms(self) -> int:
        return self.start_ms + len(self.media.data) // BYTES_PER_MS


ERROR_CODES_MAX = 32
"""Distinct error codes counted (and logged once) each; later new codes are counted as ``error_other``."""
CODE_MAX_CHARS = 40
"""An error code longer than this is clipped (Hume's are a word or two)."""


class _Wire:
    """Counters and the link-level view every modality shares."""

    endpoint = ""

    def __init__(self, queue: Deque[OutgoingMedia], emit: Emit, stats: Dict[str, int]) -> None:
        self.queue = queue
        """The visit's pending media of this modality; the wire pops from the left and may push back."""
        self.emit = emit
        self.stats = stats
        self.last_error: Optional[str] = None
        self.closed_reason: Optional[str] = None
        self.session_id: Optional[str] = None
        self.close_code = p.CLOSE_ABNORMAL
        """How the WebSocket closed; set by the client once it has."""
        self.withdrawn = False
        """Media stopped being allowed during this session: nothing sent is ever sent again."""

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def on_message(self, msg: p.ServerMessage, now: float) -> None:
        """Track the session's lifecycle; modality replies go to :meth:`on_reply`."""
        if isinstance(msg, p.SessionCreated):
            self.session_id = clip(msg.session_id, CODE_MAX_CHARS * 2)
        elif isinstance(msg, p.SessionClosed):
            self.closed_reason = clip(msg.reason, CODE_MAX_CHARS)
            self.count(f"billed_{self.endpoint}_ms", round(v1_billed_s(self.endpoint, msg.received) * 1000))
            shown = clip(msg.session_id, 80)
            _LOGGER.info("v1 %s session %s closed: %s", self.endpoint, shown, self.closed_reason)
        elif isinstance(msg, p.ErrorMessage):
            self.last_error = clip(msg.code, CODE_MAX_CHARS)
            key = f"error_{self.last_error}"
            if key not in self.stats:
                if sum(1 for k in self.stats if k.startswith("error_")) >= ERROR_CODES_MAX:
                    key = "error_other"  # a server inventing codes cannot grow status or the log
                elif msg.code != p.Codes.RATE_LIMITED:
                    _LOGGER.warning(
                        "v1 %s error %s: %s (repeats are counted in status)",
                        self.endpoint,
                        self.last_error,
                        clip(msg.message),
                    )
            self.count(key)
            self.on_error(msg, now)
        elif not isinstance(msg, p.SessionUpdated):
            self.on_reply(msg, now)

    def on_error(self, msg: p.ErrorMessage, now: float) -> None:
        raise NotImplementedError

    def on_reply(self, msg: p.ServerMessage, now: float) -> None:
        raise NotImplementedError

    def next_send(self, now: float) -> Tuple[float, Optional[OutgoingMedia]]:
        """(seconds to wait, None) or (0, the media to send now)."""
        raise NotImplementedError

    def sent(self, media: OutgoingMedia, now: float) -> None:
        raise NotImplementedError

    @property
    def drained(self) -> bool:
        """Nothing left to send, so ``session.close`` may follow (the server still answers what was sent)."""
        return not self.queue

    @property
    def unanswered(self) -> int:
        """Messages sent whose reply never came: counted as lost once the session is over. Audio has no
        reply per frame (utterances span frames), so only video's paired frames count."""
        return 0


class AudioWire(_Wire):
    """Audio: 100 ms frames, never ahead of real time; a ``rate_limited`` frame is sent again."""

    endpoint = "audio"

    def __init__(self, queue: Deque[OutgoingMedia], emit: Emit, stats: Dict[str, int], now: float) -> None:
        super().__init__(queue, emit, stats)
        self._bucket = TokenBucket(1000.0, p.AUDIO_FRAME_MS, now, initial=p.AUDIO_FRAME_MS)
        self._timeline: Deque[_Segment] = collections.deque()
        self._accepted_ms = 0

    def next_send(self, now: float) -> Tuple[float, Optional[OutgoingMedia]]:
        if not self.queue:
            return 0.0, None
        ms = len(self.queue[0].data) / BYTES_PER_MS
        wait = self._bucket.wait_s(ms, now)
        if wait > 0 or not self._bucket.try_send(ms, now):
            return max(wait, 0.001), None
        return 0.0, self.queue.popleft()

    def sent(self, media: OutgoingMedia, now: float) -> None:
        seg = _Segment(self._accepted_ms, media, now)
        self._timeline.append(seg)
        self._accepted_ms = seg.end_ms
        while self._timeline and self._timeline[0].end_ms < self._accepted_ms - TIMELINE_KEEP_MS:
            self._timeline.popleft()
        self.count("audio_frames_sent")

    def on_error(self, msg: p.ErrorMessage, now: float) -> None:
        if msg.code == p.Codes.RATE_LIMITED and self._timeline and not self.withdrawn:
            # Errors name no frame. Frames go out every 100 ms and the error for one normally
            # arrives before the next is sent, so it answers the latest: take it off the timeline
            # and send it again first, which keeps the accepted stream continuous.
            seg = self._timeline.pop()
            self._accepted_ms = seg.start_ms
            self.queue.appendleft(seg.media)
            self._bucket.take(p.AUDIO_FRAME_MS, now)
            self.count("audio_frames_resent")

    def _segment_at(self, ms: int) -> Optional[_Segment]:
        for seg in self._timeline:
            if seg.start_ms <= ms < seg.end_ms:
                return seg
        return self._timeline[-1] if self._timeline and ms >= self._timeline[-1].end_ms else None

    def on_reply(self, msg: p.ServerMessage, now: float) -> None:
        if not isinstance(msg, p.AudioResult):
            return  # utterance.start / utterance.end only bracket the results
        first = self._segment_at(msg.audio_start_ms)
        last = self._segment_at(max(msg.audio_start_ms, msg.audio_end_ms - 1))
        if first is None:
            self.count("audio_results_unplaced")
            return
        offset_s = (msg.audio_start_ms - first.start_ms) / 1000.0
        self.emit(
            Observation(
                model=AUDIO_MODEL,
                captured_at=first.media.captured_at + offset_s,
                measurements=(
                    Measurement(
                        emotions=_scores(msg.expressions),
                        begin_s=msg.audio_start_ms / 1000.0,
                        end_s=msg.audio_end_ms / 1000.0,
                    ),
                ),
                latency_s=max(0.0, now - (last or first).sent_at),
                session_id=first.media.session_id,
            )
        )
        self.count("audio_results")


class VideoWire(_Wire):
    """Video: the freshest JPEG at most ``fps`` per second; replies paired with frames by order."""

    endpoint = "video"

    def __init__(
        self,
        queue: Deque[OutgoingMedia],
        emit: Emit,
        stats: Dict[str, int],
        now: float,
        fps: float,
        *,
        max_lag_s: float = 0.0,
    ) -> None:
        """``max_lag_s``: frames captured up to this long before the newest queued one are still sent,
        oldest first (a visit's frames held while it qualified); older ones are dropped as stale. 0 sends
        only the newest."""
        super().__init__(queue, emit, stats)
        self._bucket = TokenBucket(fps, 1.0, now, initial=1.0)
        self._max_lag_s = max_lag_s
        self._fifo: Deque[Tuple[OutgoingMedia, float]] = collections.deque()
        self.face_scope = secrets.token_hex(3)
        """Qualifies this connection's face ids (``face_0@3fa2c1``): Hume numbers faces per connection, and
        a visitor gets a connection of their own (:func:`agent.hume.types.scoped_face_id`)."""

    def next_send(self, now: float) -> Tuple[float, Optional[OutgoingMedia]]:
        if not self.queue:
            return 0.0, None
        if len(self._fifo) >= VIDEO_IN_FLIGHT:
            return 0.05, None
        wait = self._bucket.wait_s(1.0, now)
        if wait > 0 or not self._bucket.try_send(1.0, now):
            return max(wait, 0.001), None
        # A live camera: frames more than max_lag_s behind the newest are stale by now.
        oldest_kept = self.queue[-1].captured_at - self._max_lag_s
        stale = 0
        while self.queue[0].captured_at < oldest_kept:
            self.queue.popleft()
            stale += 1
        if stale:
            self.count("video_frames_stale", stale)
        return 0.0, self.queue.popleft()

    def sent(self, media: OutgoingMedia, now: float) -> None:
        self._fifo.append((media, now))
        self.count("video_frames_sent")

    @property
    def unanswered(self) -> int:
        return len(self._fifo)

    def on_error(self, msg: p.ErrorMessage, now: float) -> None:
        if msg.code not in p.VIDEO_FRAME_ERRORS:
            return  # it answers a text message or ends the session: frames stay paired
        if self._fifo:
            self._fifo.popleft()
        if msg.code == p.Codes.RATE_LIMITED:
            self._bucket.take(1.0, now)  # live frames: drop this one and slow down

    def on_reply(self, msg: p.ServerMessage, now: float) -> None:
        if not isinstance(msg, p.VideoResult):
            return
        if not self._fifo:
            self.count("video_results_unpaired")
            return
        media, sent_at = self._fifo.popleft()
        measured = [f for f in msg.faces if f.face_id is not None]
        self.emit(
            Observation(
                model=VIDEO_MODEL,
                captured_at=media.captured_at,
                measurements=tuple(
                    Measurement(
                        emotions=_scores(f.expressions),
                        face_id=scoped_face_id(str(f.face_id), self.face_scope),
                    )
                    for f in measured
                ),
                warning_code=None if measured else NO_FACES,
                latency_s=max(0.0, now - sent_at),
                session_id=media.session_id,
            )
        )
        self.count("video_results")
