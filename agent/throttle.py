"""Rates: the one token bucket, and rate-limited log lines for failures an outsider can cause at will.

:class:`TokenBucket` is the arithmetic behind every rate the agent keeps or checks: the v1 media pacer
(``agent.hume.v1.wire``), the v1 emulator's send-rate check, the MQTT publish cap and the command budgets
(``agent.mqtt``). A refused command, a malformed request to the page, a disk that keeps failing: each may
recur many times a second; :class:`LogThrottle` lets each kind through once per interval and says, the next
time, how many were held back. A leaf (it needs only :mod:`logging`), so every layer can use it.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, Optional, Tuple


class TokenBucket:
    """``capacity`` units of allowance, refilled at ``rate_per_s`` units per second.

    Units are whatever the caller counts (publishes, characters, milliseconds of audio, frames). Time is
    passed in (monotonic seconds), so the bucket is pure and testable without sleeping; a clock stepping
    back refills nothing. The allowance may go negative (:meth:`take`): a debt is repaid before the next
    take, so the long-run rate holds. A rate or capacity of 0 is a budget that allows nothing.
    """

    def __init__(
        self, rate_per_s: float, capacity: float, now: float, initial: Optional[float] = None
    ) -> None:
        """``initial``: the allowance at ``now`` (default: full)."""
        if rate_per_s < 0 or capacity < 0:
            raise ValueError(
                f"bad token bucket: rate_per_s={rate_per_s}, capacity={capacity} (neither may be negative)"
            )
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._tokens = capacity if initial is None else min(capacity, initial)
        self._at = now

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + max(0.0, now - self._at) * self.rate_per_s)
        self._at = max(self._at, now)

    def available(self, now: float) -> int:
        """Whole units allowed now."""
        self._refill(now)
        return max(0, int(self._tokens))

    def take(self, amount: float, now: float) -> None:
        """Spend ``amount``, into debt if need be: something that cannot wait (a state publish), or a
        penalty (the server said we were too fast, so back off)."""
        self._refill(now)
        self._tokens -= amount

    def try_take(self, amount: float, now: float) -> bool:
        """Spend ``amount`` only if the allowance covers it (never into debt; more than ``capacity``
        never passes): a budget."""
        self._refill(now)
        if amount > self._tokens:
            return False
        self._tokens -= amount
        return True

    def try_send(self, amount: float, now: float) -> bool:
        """Spend ``amount`` if the allowance covers it, or is full for an item larger than the bucket: a
        pacer, which must let every item through in time. Overdrawing for an oversized item keeps the
        long-run rate: the debt is paid before the next take."""
        if self.wait_s(amount, now) > 0:
            return False
        self._tokens -= amount
        return True

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until :meth:`try_send` of ``amount`` would succeed (0 if it would now; for an
        ``amount`` up to ``capacity``, :meth:`try_take` too)."""
        self._refill(now)
        missing = min(amount, self.capacity) - self._tokens
        if missing <= 0:
            return 0.0
        return missing / self.rate_per_s if self.rate_per_s > 0 else float("inf")


class LogThrottle:
    """Say a recurring problem once per key every ``every_s``; the next line says how many were not said.

    For failures an outsider can cause at will (refused commands, a page flooded, a disk that keeps
    failing): the journal gets one line per kind of problem per ``every_s`` (600 s: 144 lines a day at
    most per kind), whatever the rate. At most ``max_keys`` kinds are remembered (memory bounded whatever
    the keys); past it the oldest is forgotten.
    """

    def __init__(
        self,
        logger: logging.Logger,
        every_s: float = 600.0,
        max_keys: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every_s = every_s
        self.max_keys = max_keys
        self._clock = clock
        self._said: Dict[str, Tuple[float, int]] = {}
        """key -> (when last said, how many since were not said)."""

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` at ``level`` unless ``key`` was said within ``every_s``; True if it was said."""
        held = self._take(key)
        if held is None:
            return False
        if held:
            msg += " (%d more like this since, not logged)"
            args = (*args, held)
        self.logger.log(level, msg, *args)
        return True

    def due(self, key: str) -> bool:
        """Whether ``key`` may be said now (counted as said if so): for a caller that logs it its own way,
        e.g. at a lower level when it is not due."""
        return self._take(key) is not None

    def _take(self, key: str) -> Optional[int]:
        """None when ``key`` was said within ``every_s`` (one more held back); else how many were held
        back since it was last said, and it counts as said now."""
        now = self._clock()
        said = self._said.get(key)
        if said is not None and now - said[0] < self.every_s:
            self._said[key] = (said[0], said[1] + 1)
            return None
        if said is None and len(self._said) >= self.max_keys:
            del self._said[next(iter(self._said))]
        self._said.pop(key, None)
        self._said[key] = (now, 0)
        return 0 if said is None else said[1]

    def clear(self, key: str) -> None:
        """The problem is over: the next one of ``key`` is said at once."""
        self._said.pop(key, None)

    def reset(self) -> None:
        """Every problem is over (a link came back): the next one of any key is said at once."""
        self._said.clear()
