"""Every payload accounted for: the in-flight table that matches replies, and the per-socket counters.

Pure (times are passed in), so matching, timeouts and latency statistics are unit-tested without sockets.
"""

from __future__ import annotations

import collections
import statistics
from typing import Deque, Dict, Generic, List, Mapping, Optional, Tuple, TypeVar

from agent.hume.drift import Drift
from agent.hume.types import LinkStatus, counters
from agent.untrusted import BoundedCounter

T = TypeVar("T")

LATENCY_WINDOW = 200
"""Recent round trips kept for p50/max: enough for a stable median, small enough to follow change."""


class InFlight(Generic[T]):
    """Payloads sent and not yet answered, by ``payload_id``, with their send times.

    v0 answers strictly in order, one reply per request, so a reply that carries no ``payload_id`` is
    matched to the only outstanding payload; with several outstanding it cannot be attributed.
    """

    def __init__(self) -> None:
        self._items: Dict[str, Tuple[T, float]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, payload_id: str, item: T, sent_at: float) -> None:
        if payload_id in self._items:
            raise ValueError(f"payload_id {payload_id!r} is already in flight")
        self._items[payload_id] = (item, sent_at)

    def match(self, payload_id: Optional[str], now: float) -> Optional[Tuple[T, float]]:
        """Remove and return (item, round-trip seconds) for a reply, or None if it matches nothing."""
        if payload_id is None:
            if len(self._items) != 1:
                return None
            payload_id = next(iter(self._items))
        entry = self._items.pop(payload_id, None)
        if entry is None:
            return None
        item, sent_at = entry
        return item, max(0.0, now - sent_at)

    def deadline(self, timeout_s: float) -> Optional[float]:
        """When the oldest outstanding payload times out (None when nothing is outstanding)."""
        if not self._items:
            return None
        return min(sent_at for _, sent_at in self._items.values()) + timeout_s

    def expire(self, now: float, timeout_s: float) -> List[T]:
        """Remove and return the payloads whose reply is overdue."""
        overdue = [pid for pid, (_, sent_at) in self._items.items() if now - sent_at >= timeout_s]
        return [self._items.pop(pid)[0] for pid in overdue]

    def clear(self) -> List[T]:
        """Remove and return everything (the socket died: these replies will never come)."""
        items = [item for item, _ in self._items.values()]
        self._items.clear()
        return items


class LinkStats:
    """Counters of one socket, reported in health. Codes are counted separately so a dashboard sees why."""

    def __init__(self, link: str = "v0") -> None:
        """``link``: how log lines name this socket (``v0 video``)."""
        self.connect_attempts = 0
        self.reconnects = 0
        self.sent = 0
        self.replies = 0
        self.unmatched = 0
        self.timeouts = 0
        self.lost = 0
        self.rate_limited = 0
        self.warnings = BoundedCounter()
        self.errors = BoundedCounter()
        self.drift = Drift(link)
        self._latencies: Deque[float] = collections.deque(maxlen=LATENCY_WINDOW)

    def latency(self, seconds: float) -> None:
        self._latencies.append(seconds)

    def to_status(self, state: str, last_error: Optional[str], buffered: Mapping[str, float]) -> LinkStatus:
        """This socket's :class:`~agent.hume.types.LinkStatus`; ``buffered`` is its media buffer's counters.

        Warning and error codes become counters named ``warning_<code>`` / ``error_<code>``.
        """
        lat = list(self._latencies)
        extra: Dict[str, float] = {
            "reconnects": self.reconnects,
            "unmatched": self.unmatched,
            "timeouts": self.timeouts,
            "lost": self.lost,
            "rate_limited": self.rate_limited,
            **self.drift.counters(),
            **{f"warning_{code}": n for code, n in self.warnings.items()},
            **{f"error_{code}": n for code, n in self.errors.items()},
            **buffered,
        }
        return LinkStatus(
            state=state,
            last_error=last_error,
            connects=self.connect_attempts,
            sent=self.sent,
            replies=self.replies,
            latency_p50_s=round(statistics.median(lat), 4) if lat else None,
            latency_max_s=round(max(lat), 4) if lat else None,
            counters=counters(extra),
            unknown=self.drift.kinds(),
        )
