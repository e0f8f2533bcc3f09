"""One v1 endpoint (``audio`` or ``video``): its state, reconnect delays, failures, what status shows.

The backend (:mod:`agent.hume.v1.client`) decides what to do after a session; this is what it, and the
session (:mod:`agent.hume.v1.session`), note about the endpoint meanwhile. Bounded whatever the server does:
a failure reason is cut to :data:`ERROR_TEXT_MAX` characters, each kind of failure is logged at most every
:data:`REPEAT_LOG_S` (:class:`agent.throttle.LogThrottle`), at most :data:`LATENCY_WINDOW` round trips are
kept.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from typing import Deque, Mapping, Optional, Tuple

from agent.backoff import Backoff, rate_limit_backoff
from agent.hume.drift import Drift
from agent.hume.types import LinkStatus, counters
from agent.throttle import LogThrottle
from agent.untrusted import MAX_SHOWN_CHARS, clip

_LOGGER = logging.getLogger(__name__)

FIRST_DELAY_RANGE_S = (1.0, 5.0)
DELAY_GROWTH = 1.3
MAX_DELAY_S = 10.0
MIN_UPTIME_S = 5.0
"""The official SDK's reconnect schedule (``reconnect/_policy.py``), shared with Hume's Node SDK."""
LATENCY_WINDOW = 100
"""Round trips kept per endpoint for the status's median and maximum."""
ERROR_TEXT_MAX = MAX_SHOWN_CHARS
"""Characters of a failure reason kept for status and health: a hostile server cannot grow them."""
REPEAT_LOG_S = 600.0
"""A failure that recurs is logged again at most this often (the counters in status say how often)."""
ANNOUNCED_MAX = 64
"""Distinct failure kinds remembered for that: bounded whatever the server sends."""


class Endpoint:
    """The bookkeeping of one endpoint across its sessions: ``state`` is what status shows."""

    def __init__(
        self,
        name: str,
        rng: random.Random,
        *,
        first_delay_range_s: Tuple[float, float] = FIRST_DELAY_RANGE_S,
        rate_limit_max_s: float,
    ) -> None:
        self.name = name
        self.state = "idle"
        self.connects = 0
        self.last_error: Optional[Tuple[float, str]] = None
        """(monotonic time, reason) of the last failure, until the endpoint connects again."""
        self.backoff = Backoff(rng.uniform(*first_delay_range_s), MAX_DELAY_S, DELAY_GROWTH, rng)
        self.rate_backoff = rate_limit_backoff(rng, rate_limit_max_s)
        self.drift = Drift(f"v1 {name}", _LOGGER)
        self.latencies: Deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._said = LogThrottle(_LOGGER, REPEAT_LOG_S, ANNOUNCED_MAX)

    def announce(self, kind: str, text: str) -> None:
        """Log a failure once per kind until the endpoint connects again (or :data:`REPEAT_LOG_S`
        later): a flapping or hostile server cannot flood the journal."""
        self._said.log(logging.WARNING, kind, "v1 %s: %s (repeats are counted in status)", self.name, text)

    def failed(self, reason: str) -> None:
        """Remember ``reason`` (cut to :data:`ERROR_TEXT_MAX` characters) as the last error."""
        self.last_error = (time.monotonic(), clip(reason, ERROR_TEXT_MAX))

    def connecting(self) -> None:
        """A handshake starts: counted as a connect whether or not it succeeds."""
        self.state = "connecting"
        self.connects += 1

    def connected(self) -> None:
        """A handshake succeeded: the failure is over, and the next one of any kind is said at once."""
        if self.last_error is not None:
            self.last_error = None
            _LOGGER.info("v1 %s: connected again", self.name)
        self._said.reset()

    async def pause(self, delay: float, state: str = "backoff") -> None:
        """Wait ``delay`` seconds in ``state`` (``backoff``, ``rate_limited``, ``auth_failed``)."""
        self.state = state
        await asyncio.sleep(delay)

    def status(self, stats: Mapping[str, int]) -> LinkStatus:
        """What status shows of the endpoint, with the backend's counters ``stats``."""
        lat = sorted(self.latencies)
        unit = "audio_frames" if self.name == "audio" else "video_frames"
        return LinkStatus(
            state=self.state,
            last_error=None if self.last_error is None else self.last_error[1],
            connects=self.connects,
            sent=stats.get(f"{unit}_sent", 0),
            replies=stats.get(f"{self.name}_results", 0),
            latency_p50_s=round(lat[len(lat) // 2], 4) if lat else None,
            latency_max_s=round(lat[-1], 4) if lat else None,
            counters=counters(
                {
                    "rate_limited": float(stats.get(f"{self.name}_rate_limited", 0)),
                    "lost": float(stats.get(f"{self.name}_replies_lost", 0)),
                    **self.drift.counters(),
                }
            ),
            unknown=self.drift.kinds(),
        )
