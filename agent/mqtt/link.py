"""One MQTT connection's state, and the plain values the bridge hands from paho's thread to the loop."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Dict, List, Optional, Set, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from agent.mqtt.limits import packet_bytes
from agent.ops.mqtt_client import Refusal
from agent.throttle import TokenBucket

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Connack:
    """What paho's CONNACK callback carried, as plain values for the loop."""

    failed: bool
    reason: str
    code: int
    receive_max: Optional[int]
    """MQTT 5 Receive Maximum: QoS>0 publishes the broker accepts unacknowledged (None: 65,535)."""
    max_packet_bytes: Optional[int]
    """MQTT 5 Maximum Packet Size the broker accepts (None: no limit announced)."""


def props(packet_type: int) -> Properties:
    """paho's ``Properties`` constructor is untyped; this is the one typed door to it."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]


class Link:
    """One connection: its paho client and what happens on it. Only the event loop thread touches it."""

    def __init__(
        self,
        client: mqtt.Client,
        connack: asyncio.Future[Optional[Refusal]],
        *,
        window: int,
        wake: asyncio.Event,
        bucket: TokenBucket,
        max_packet_bytes: int,
        oversize_warned: Set[str],
    ) -> None:
        self.client = client
        self.window = window
        """Unacknowledged QoS>0 publishes allowed: the configured window, lowered to Receive Maximum."""
        self.max_packet_bytes = max_packet_bytes
        """The largest PUBLISH sent: ``mqtt.max_message_bytes``, lowered to the broker's Maximum Packet Size
        (MQTT 5 CONNACK) by the bridge. A bigger one would get the connection closed by the broker."""
        self._oversize_warned = oversize_warned
        self.connack = connack
        self.wake = wake
        self.bucket = bucket
        """The connection's publish-rate budget, shared with the drain."""
        self.started = False
        self.up = False
        self.closed = False
        self.close_reason = ""
        self.paho_error = ""
        """paho's first error on this connection (a TLS alert, a socket error): why it ended."""
        self.inflight: Set[int] = set()
        self.acked: List[int] = []
        """mids the broker acknowledged, not yet settled in the outbox."""
        self.refused: List[int] = []
        """mids the broker refused (MQTT 5 PUBACK reason >= 0x80), not yet settled in the outbox."""
        self.unmarked: List[Tuple[int, int]] = []
        """(row id, mid) published on this link whose in-flight mark the outbox could not store yet."""
        self.watched: Dict[int, int] = {}
        """mid -> seq of in-flight rows whose PUBACK is reported (``drain.DELIVERY_TOPICS``)."""
        self.closed_event = asyncio.Event()

    def direct(self, topic: str, payload: bytes, retain: bool) -> None:
        """Publish state that bypasses the outbox (status, health, discovery, replies) at QoS 0.

        QoS 0 keeps these out of the broker's Receive Maximum, which the outbox window uses up; losing one
        needs a dropped connection, and every connection starts by publishing all of them again. Each takes
        a token of the rate budget without waiting: the drain repays it.
        """
        size = packet_bytes(topic, payload)
        if size > self.max_packet_bytes:
            if topic not in self._oversize_warned:
                self._oversize_warned.add(topic)
                _LOGGER.warning(
                    "not publishing %s: %d bytes is over the %d-byte limit (mqtt.max_message_bytes or the "
                    "broker's Maximum Packet Size)",
                    topic,
                    size,
                    self.max_packet_bytes,
                )
            return
        self.bucket.take(1, time.monotonic())
        self.client.publish(topic, payload, qos=0, retain=retain)
