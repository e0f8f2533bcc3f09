"""The broker side of ``hume-edge fleet``: a paho client, driven from the calling thread, feeding the fold.

Collection ends when the broker has acknowledged the subscription (SUBACK: retained messages follow it)
and then stayed quiet for :data:`QUIET_S`, bounded by ``--wait-s``, rather than after a fixed sleep. With
MQTT 5 the client announces a Maximum Packet Size, so the broker drops oversized messages instead of
sending them.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.config import MqttConfig
from agent.ops.fleet.fold import FleetFold, FleetReport
from agent.ops.health_view import MAX_PAYLOAD_BYTES
from agent.ops.mqtt_client import broker_where, handshake_problem, make_client, open_problem, refused_problem

MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + 4096
"""Announced to an MQTT 5 broker (CONNECT Maximum Packet Size): payload plus topic and headers."""
QUIET_S = 0.5
"""After the SUBACK, collection ends once no message arrived for this long."""
DEFAULT_WAIT_S = 10.0
CONNECT_TIMEOUT_S = 10.0


class FleetError(Exception):
    """The broker could not be read: unreachable, TLS, refused, no SUBACK."""


class FleetSession:
    """A paho client driven from this thread (``loop()``): callbacks run here, so the fold needs no lock."""

    def __init__(self, cfg: MqttConfig, fold: FleetFold, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.fold = fold
        self.clock = clock
        self.v5 = cfg.protocol == "5"
        self.subacked_at: Optional[float] = None
        self.last_message_at = 0.0
        self.refused: Optional[str] = None
        self.connected = False
        client_id = f"hume-edge-fleet-{os.getpid()}-{os.urandom(3).hex()}"
        self.client = make_client(cfg, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    @property
    def where(self) -> str:
        return broker_where(self.cfg)

    def connect(self) -> None:
        try:
            if self.v5:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.MaximumPacketSize = MAX_PACKET_BYTES
                self.client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s, properties=props)
            else:
                self.client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise FleetError(open_problem(self.cfg, exc, connected_before=False).problem) from None
        deadline = self.clock() + CONNECT_TIMEOUT_S
        while not self.connected and self.refused is None:
            if self.clock() > deadline:
                raise FleetError(f"no CONNACK from {self.where} within {CONNECT_TIMEOUT_S:g} s")
            rc = self.pump(0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS and not self.connected and self.refused is None:
                self.refused = handshake_problem(self.cfg, mqtt.error_string(rc), connected_before=False)
        if self.refused is not None:
            raise FleetError(self.refused)

    def pump(self, timeout_s: float) -> int:
        """Run paho's network loop once (callbacks fire here); paho's result code."""
        return int(self.client.loop(timeout=timeout_s))

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.refused = (
                f"{refused_problem(self.cfg, str(reason), reason.value)} (the fleet view needs to read "
                f"{self.fold.prefix}/+/status and /health)"
            )
            return
        self.connected = True
        self.subacked_at = None
        client.subscribe([(topic, 1) for topic in self.fold.topics])

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [str(r) for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            self.refused = (
                f"MQTT broker {self.where} refused the subscription to {self.fold.topics}: "
                f"{', '.join(failed)}; the user needs read access to them"
            )
            return
        self.subacked_at = self.clock()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.last_message_at = self.clock()
        try:
            topic = msg.topic  # paho decodes UTF-8 strictly: a hostile topic raises here
        except UnicodeDecodeError:
            self.fold.receive("", b"")  # counted as a bad topic
            return
        self.fold.receive(topic, bytes(msg.payload))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected = False

    def close(self) -> None:
        if self.connected:
            self.client.disconnect()
            self.pump(0.1)


def collect(
    cfg: MqttConfig,
    wait_s: float = DEFAULT_WAIT_S,
    quiet_s: float = QUIET_S,
    clock: Callable[[], float] = time.monotonic,
    *,
    expect: Sequence[str] = (),
) -> FleetReport:
    """Connect, subscribe, read the retained state of the fleet, disconnect; raise FleetError if not."""
    session = FleetSession(cfg, FleetFold(cfg.topic_prefix, expect=expect), clock)
    try:
        session.connect()
        settle(session, wait_s, quiet_s)
        return session.fold.report()
    finally:
        session.close()


def settle(session: FleetSession, wait_s: float, quiet_s: float) -> None:
    """Pump until SUBACK + ``quiet_s`` without a message, or ``wait_s`` in all."""
    deadline = session.clock() + wait_s
    while True:
        now = session.clock()
        if session.refused is not None:
            raise FleetError(session.refused)
        if (
            session.subacked_at is not None
            and now - max(session.subacked_at, session.last_message_at) >= quiet_s
        ):
            return
        if now >= deadline:
            if session.subacked_at is None:
                raise FleetError(f"no SUBACK from {session.where} within {wait_s:g} s (--wait-s)")
            return  # still receiving: a very large fleet; show what arrived
        session.pump(min(0.05, max(0.0, deadline - now)))
