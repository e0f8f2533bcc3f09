"""Staying inside what a broker accepts: the publish-rate cap and the size of a PUBLISH packet.

Cloud brokers enforce limits by disconnecting or throttling: AWS IoT Core allows 100 publishes per second
per connection, 100 unacknowledged in flight and 128 KB payloads; mosquitto 2.1 enforces the Receive
Maximum it announces and caps packets at 2 MB by default, and drops a client that sends a bigger one
("disconnected due to oversize packet"). An agent that replays an hour of backlog at link speed (~8,500
messages/s here), or keeps resending one oversized message that gets it disconnected every time, never
gets its data through; these bounds keep it inside.
"""

from __future__ import annotations

from agent.throttle import TokenBucket

PUBLISH_OVERHEAD_BYTES = 16
"""A QoS 1 PUBLISH beyond topic and payload, at most: fixed header (1 + up to 4 length bytes), topic length
(2), packet id (2), MQTT 5 property length (1) and Message Expiry Interval (5), plus 1 spare."""


def packet_bytes(topic: str, payload: bytes) -> int:
    """The size of our PUBLISH packet for ``topic`` and ``payload``, rounded up (never under)."""
    return len(topic.encode()) + len(payload) + PUBLISH_OVERHEAD_BYTES


def publish_bucket(rate_per_s: float, now: float) -> TokenBucket:
    """The connection's publish cap: ``rate_per_s``, with bursts of a tenth of a second's worth (at least 1).

    Tokens may go negative: a publish that cannot wait (state published directly: status, health,
    discovery, command replies) still takes its token (:meth:`TokenBucket.take`), and the drain waits for
    the debt to be repaid, so the connection as a whole stays within the rate.
    """
    return TokenBucket(rate_per_s, max(1.0, rate_per_s / 10), now)
