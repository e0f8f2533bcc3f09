"""Capped exponential backoff with full jitter, shared by every link that reconnects.

Full jitter (a uniform draw below the exponential cap) spreads a fleet's reconnects after a shared outage
(a broker restart, a cloud incident) instead of synchronising a thousand kiosks into waves.
"""

from __future__ import annotations

import math
import random
from typing import Optional


class Backoff:
    """Delays for successive failed attempts: ``uniform(floor, min(cap, initial * factor**n))``.

    ``floor_s`` defaults to ``initial_s``; a lower floor gives full jitter from the first attempt on.
    """

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        factor: float = 2.0,
        rng: Optional[random.Random] = None,
        *,
        floor_s: Optional[float] = None,
    ) -> None:
        floor = initial_s if floor_s is None else floor_s
        if initial_s <= 0 or max_s < initial_s or factor < 1 or not 0 <= floor <= initial_s:
            raise ValueError(
                f"bad backoff: initial_s={initial_s}, max_s={max_s}, factor={factor}, floor_s={floor}"
            )
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.floor_s = floor
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        ceiling = min(self.max_s, self.initial_s * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return self._rng.uniform(self.floor_s, ceiling)

    def reset(self) -> None:
        """The link works again: the next failure starts from the initial delay."""
        self.attempts = 0


# --------------------------------------------------------------------------------------------------
# The organisation's request limit (HTTP 429 at a handshake, or v1's rate_limited before a session)

RATE_LIMIT_FLOOR_S = 1.0
"""No link retries a rate-limited open sooner than this (plus what ``Retry-After`` asks)."""
RATE_LIMIT_FIRST_CEILING_S = 8.0
"""The first draw is below this; each further refusal in a row doubles it."""
RATE_LIMIT_MAX_S = 60.0
"""Hume's limit is per minute: after one window the whole budget is renewed, so a longer wait never
helps and only leaves visitors unmeasured. The fleet simulation (``scripts/bench/orglimit.py``) measures
what these bounds give."""
RETRY_AFTER_MAX_S = 60.0
"""A ``Retry-After`` above this (one window) is taken as this: a hostile or broken server cannot park
a kiosk for hours."""


def rate_limit_backoff(rng: Optional[random.Random] = None, max_s: float = RATE_LIMIT_MAX_S) -> Backoff:
    """Full jitter between :data:`RATE_LIMIT_FLOOR_S` and a ceiling doubling from
    :data:`RATE_LIMIT_FIRST_CEILING_S` to ``max_s`` (``hume.rate_limit_max_s``): a fleet refused together
    (after a shared outage) spreads its retries over the window instead of returning as one wave."""
    first = min(RATE_LIMIT_FIRST_CEILING_S, max_s)
    return Backoff(first, max(first, max_s), 2.0, rng, floor_s=min(RATE_LIMIT_FLOOR_S, first))


def retry_after_s(value: Optional[str]) -> Optional[float]:
    """An HTTP ``Retry-After`` in delay-seconds, clamped to [0, :data:`RETRY_AFTER_MAX_S`]; None when
    absent or not a number (an HTTP date is not worth trusting a kiosk's clock for: the jitter covers it)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip()[:16])
    except ValueError:
        return None
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


def rate_limited_delay(backoff: Backoff, retry_after: Optional[float]) -> float:
    """How long to wait after a refusal by the organisation limit: what the server asked for (at most the
    backoff's cap), plus the jittered draw (so a fleet told the same ``Retry-After`` does not return at
    the same instant). At most twice the cap."""
    return min(retry_after or 0.0, backoff.max_s) + backoff.next_delay()
