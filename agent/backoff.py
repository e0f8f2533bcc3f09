"""Capped exponential backoff with full jitter, shared by every link that reconnects.

Full jitter (a uniform draw below the exponential cap) spreads a fleet's reconnects after a shared outage
(a broker restart, a cloud incident) instead of synchronising a thousand kiosks into waves.
"""

from __future__ import annotations

import random
from typing import Optional


class Backoff:
    """Delays for successive failed attempts: ``uniform(initial, min(cap, initial * factor**n))``."""

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        factor: float = 2.0,
        rng: Optional[random.Random] = None,
    ) -> None:
        if initial_s <= 0 or max_s < initial_s or factor < 1:
            raise ValueError(f"bad backoff: initial_s={initial_s}, max_s={max_s}, factor={factor}")
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        ceiling = min(self.max_s, self.initial_s * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return self._rng.uniform(self.initial_s, ceiling)

    def reset(self) -> None:
        """The link works again: the next failure starts from the initial delay."""
        self.attempts = 0
