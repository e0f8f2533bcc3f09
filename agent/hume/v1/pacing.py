"""A token bucket: the emulator's send-rate check and the client's pacer are the same arithmetic.

Units are whatever the caller counts (milliseconds of audio, frames); ``rate`` is units per second.
Time is passed in (monotonic seconds), so the bucket is pure and testable without sleeping.
"""

from __future__ import annotations


class TokenBucket:
    """``capacity`` units of allowance, refilled at ``rate`` per second; a take may overdraw once."""

    def __init__(self, rate: float, capacity: float, now: float, initial: float = 0.0) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"bad token bucket: rate={rate}, capacity={capacity} (both must be > 0)")
        self.rate = rate
        self.capacity = capacity
        self._tokens = min(capacity, initial)
        self._at = now

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = max(self._at, now)

    def try_take(self, amount: float, now: float) -> bool:
        """Take ``amount`` if the allowance covers it (or is full, for an item larger than the bucket).

        Overdrawing for an oversized item keeps the long-run rate: the debt is paid before the next take.
        """
        self._refill(now)
        if self._tokens < min(amount, self.capacity):
            return False
        self._tokens -= amount
        return True

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until :meth:`try_take` of ``amount`` would succeed (0 if it would now)."""
        self._refill(now)
        missing = min(amount, self.capacity) - self._tokens
        return max(0.0, missing / self.rate)

    def penalize(self, amount: float, now: float) -> None:
        """Spend ``amount`` without sending: the server said we were too fast, so back off."""
        self._refill(now)
        self._tokens -= amount
