"""Staying inside what a broker accepts: a publish-rate bucket and the size of a PUBLISH packet.

Cloud brokers enforce limits by disconnecting or throttling: AWS IoT Core allows 100 publishes per second
per connection, 100 unacknowledged in flight and 128 KB payloads; mosquitto 2.1 enforces the Receive
Maximum it announces and caps packets at 2 MB by default, and drops a client that sends a bigger one
("disconnected due to oversize packet"). An agent that replays an hour of backlog at link speed (~8,500
messages/s here), or keeps resending one oversized message that gets it disconnected every time, never
gets its data through; these bounds keep it inside.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

PUBLISH_OVERHEAD_BYTES = 16
"""A QoS 1 PUBLISH beyond topic and payload, at most: fixed header (1 + up to 4 length bytes), topic length
(2), packet id (2), MQTT 5 property length (1) and Message Expiry Interval (5), plus 1 spare."""


def packet_bytes(topic: str, payload: bytes) -> int:
    """The size of our PUBLISH packet for ``topic`` and ``payload``, rounded up (never under)."""
    return len(topic.encode()) + len(payload) + PUBLISH_OVERHEAD_BYTES


class TokenBucket:
    """At most ``rate_per_s`` publishes per second, with bursts of ``burst`` (a tenth of a second's worth).

    Tokens may go negative: a publish that cannot wait (state published directly: status, health,
    discovery, command replies) still takes its token, and the drain waits for the debt to be repaid, so
    the connection as a whole stays within the rate.
    """

    def __init__(
        self, rate_per_s: float, clock: Callable[[], float] = time.monotonic, burst: Optional[float] = None
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1.0, rate_per_s / 10) if burst is None else burst
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now

    def available(self) -> int:
        """Whole publishes allowed now."""
        self._refill()
        return max(0, int(self._tokens))

    def take(self, n: float = 1) -> None:
        """Spend ``n`` tokens (possibly into debt)."""
        self._refill()
        self._tokens -= n

    def try_take(self, n: float = 1) -> bool:
        """Spend ``n`` tokens only if they are there (never into debt); whether they were."""
        self._refill()
        if n > self._tokens:
            return False
        self._tokens -= n
        return True

    def wait_s(self) -> float:
        """Seconds until one whole token is available (0 when one is)."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.rate_per_s)
