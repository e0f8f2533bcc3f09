"""The connection bridge: paho in, asyncio out (the aiomqtt pattern, on paho's own network thread).

Each connection gets a **fresh paho client running its own network thread** (``loop_start``,
``reconnect_on_failure=False``). Paho's thread is the configuration its authors test most (TLS ``want
read/write``, keepalive, partial writes), while the add_reader pattern re-implements that plumbing around
private details. Paho callbacks only translate their arguments into plain values and hand them to the event
loop with ``call_soon_threadsafe``; every decision happens on the loop. The blocking parts (TCP connect,
TLS handshake, joining the thread) run in the default executor.

A fresh client each time means paho never keeps or resends anything from an earlier connection: the outbox
is the one source of retries (``agent.mqtt.drain``). What the broker announced in its CONNACK (MQTT 5
Receive Maximum, Maximum Packet Size) is read here and kept on the :class:`Link`.

A link that goes silent without FIN or RST is noticed by paho's keepalive (a PINGREQ unanswered: about two
keepalive periods), which ends the connection.

MQTT 5: the last will (``offline``) has a delay of ``mqtt.will_delay_s`` and the session outlives it, so a
Wi-Fi blip shorter than that does not flap ``offline`` (Clean Start = 0 on reconnect; with QoS 2 it stays 1,
since a fresh client's packet ids could collide with the old session's QoS 2 state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any, Callable, List, Optional, Set, Union

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.aio import wait_event
from agent.config import MqttConfig
from agent.mqtt.link import Connack, Link, props
from agent.ops.mqtt_client import (
    Refusal,
    broker_where,
    handshake_problem,
    make_client,
    open_problem,
    refused_problem,
)
from agent.throttle import TokenBucket

_LOGGER = logging.getLogger(__name__)

CONNACK_TIMEOUT_S = 10.0
"""A broker that accepted TCP (and TLS) but sends no CONNACK by then is treated as unreachable."""
STOP_TIMEOUT_S = 2.0
"""How long a DISCONNECT may take before the socket is shut down under paho."""


def _loop_stop(client: mqtt.Client) -> None:
    """``client.loop_stop()``, surviving paho 2.2's race (eclipse-paho/paho.mqtt.python#872).

    loop_stop checks ``_thread`` and then joins it, but the thread clears ``_thread`` as it ends; a link
    that died on its own can win that race, and the AttributeError would end the publisher's task.
    """
    with contextlib.suppress(AttributeError):  # the thread had ended: what loop_stop waits for anyway
        client.loop_stop()


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Disable Nagle on the broker socket: paho does not, and a summary then waits for the broker's
    delayed ACK (~40 ms) behind the previous packet (scripts/bench/latency.py: p99 47 ms -> 9 ms)."""
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


MessageHandler = Callable[[Link, str, bytes, bool], None]
"""(link, topic, payload, retained): a message the broker delivered on a subscription."""
"""Called on the loop for every message received: (link, topic, payload)."""
AckHandler = Callable[[Link, int, Optional[str]], None]
"""Called on the loop with each PUBACK of an in-flight publish: (link, mid, failure); ``failure`` is the
reason when the broker refused it (MQTT 5 PUBACK reason >= 0x80), else None."""


class Bridge:
    """Makes connections (:meth:`connect`) and ends them (:meth:`close`); see the module docstring."""

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        will_topic: str,
        *,
        wake: asyncio.Event,
        bucket: TokenBucket,
        on_message: MessageHandler,
        on_ack: AckHandler,
    ) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.will_topic = will_topic
        self.wake = wake
        self.bucket = bucket
        self._on_message_cb = on_message
        self._on_ack_cb = on_ack
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._oversize_warned: Set[str] = set()
        """Topics of direct publishes already reported as too big (said once, not every health period)."""
        self.link: Optional[Link] = None
        """The current connection (also while connecting), None between connections."""
        self.connected_before = False
        """A CONNACK accepted this agent: a broker that then drops a handshake is restarting, not wrong."""

    @property
    def v5(self) -> bool:
        return self.cfg.protocol == "5"

    @property
    def resume_session(self) -> bool:
        """MQTT 5 with a will delay: reconnect with Clean Start = 0 so the session outlives a blip.

        Not with QoS 2: a fresh client's packet ids could collide with the broker's QoS 2 state of the old
        session.
        """
        return self.v5 and self.cfg.will_delay_s > 0 and self.cfg.qos == 1

    @property
    def where(self) -> str:
        return broker_where(self.cfg)

    # ----------------------------------------------------------------------------------------------
    # Connecting

    def _make_client(self, link_box: List[Link]) -> mqtt.Client:
        cfg = self.cfg
        client = make_client(cfg, self.client_id, reconnect_on_failure=False, userdata=link_box)
        client.max_inflight_messages_set(0)  # our window bounds it; paho's default of 20 would throttle
        will_props = None
        if self.v5 and cfg.will_delay_s > 0:
            will_props = props(PacketTypes.WILLMESSAGE)
            will_props.WillDelayInterval = int(cfg.will_delay_s)
        client.will_set(self.will_topic, "offline", qos=1, retain=True, properties=will_props)
        client.on_connect = self._cb_connect
        client.on_socket_open = _no_delay
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        client.on_message = self._cb_message
        client.on_log = self._cb_log
        return client

    def _open_blocking(self, client: mqtt.Client, clean_start: bool) -> None:
        """TCP connect, TLS handshake and CONNECT; runs in the executor."""
        if self.v5:
            connect_props = props(PacketTypes.CONNECT)
            # A retained 250 MB message on a subscribed topic would otherwise be buffered whole by paho
            # (808 MiB RSS seen, past the unit's MemoryMax, and again after every restart).
            connect_props.MaximumPacketSize = self.cfg.max_incoming_bytes
            if self.resume_session:
                connect_props.SessionExpiryInterval = int(self.cfg.will_delay_s)
            client.connect(
                self.cfg.host,
                self.cfg.port,
                self.cfg.keepalive_s,
                clean_start=clean_start,
                properties=connect_props,
            )
        else:
            client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)

    async def connect(self, clean_start: bool) -> Union[Link, Refusal]:
        """One attempt: a link whose CONNACK accepted us, or why not (the link is then closed)."""
        loop = self._loop = asyncio.get_running_loop()
        box: List[Link] = []
        try:
            client = await loop.run_in_executor(None, self._make_client, box)
        except (OSError, ValueError) as exc:
            return Refusal("disconnected", f"cannot set up the MQTT client: {exc} (check mqtt.tls_* paths)")
        link = self.link = Link(
            client,
            loop.create_future(),
            window=self.cfg.inflight_window,
            wake=self.wake,
            bucket=self.bucket,
            max_packet_bytes=self.cfg.max_message_bytes,
            oversize_warned=self._oversize_warned,
        )
        box.append(link)
        refusal = await self._open(link, clean_start)
        if refusal is None:
            client.loop_start()
            link.started = True
            # asyncio.wait, not wait_for: before Python 3.12 wait_for swallows a cancellation that arrives
            # as the CONNACK does (cpython gh-86296), and the publisher would then never stop.
            done, _ = await asyncio.wait({link.connack}, timeout=CONNACK_TIMEOUT_S)
            if done:
                refusal = link.connack.result()
            else:
                refusal = Refusal(
                    "disconnected", f"no CONNACK from {self.where} within {CONNACK_TIMEOUT_S:g} s"
                )
        if refusal is None:
            return link
        await self.close(link)
        return refusal

    async def _open(self, link: Link, clean_start: bool) -> Optional[Refusal]:
        """TCP, TLS and CONNECT in the executor; what went wrong, in words a person can act on."""
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, self._open_blocking, link.client, clean_start
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            return open_problem(self.cfg, exc, connected_before=self.connected_before)
        return None

    def _handshake_problem(self, reason: str, link: Optional[Link] = None) -> str:
        if link is not None and link.paho_error:
            _LOGGER.debug("paho, before CONNACK from %s: %s", self.where, link.paho_error)
        return handshake_problem(self.cfg, reason, connected_before=self.connected_before)

    async def close(self, link: Link) -> None:
        """Disconnect (best effort, bounded) and join paho's thread, off the loop."""
        if self.link is link:
            self.link = None
        if not link.started:
            return
        if not link.closed:
            link.client.disconnect()
            if not await wait_event(link.closed_event, STOP_TIMEOUT_S):
                # The DISCONNECT could not be written (a frozen link): end the socket so the thread exits.
                sock = link.client.socket()
                if isinstance(sock, socket.socket):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
        await asyncio.get_running_loop().run_in_executor(None, _loop_stop, link.client)

    # ----------------------------------------------------------------------------------------------
    # Paho callbacks: paho's thread; translate, hand over, nothing else.

    def _hand(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed while paho was still finishing
                loop.call_soon_threadsafe(fn, *args)

    def _cb_connect(
        self,
        client: mqtt.Client,
        box: List[Link],
        flags: Any,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        connack = Connack(
            failed=reason.is_failure,
            reason=str(reason),
            code=int(reason.value),
            receive_max=getattr(properties, "ReceiveMaximum", None) if properties is not None else None,
            max_packet_bytes=getattr(properties, "MaximumPacketSize", None)
            if properties is not None
            else None,
        )
        self._hand(self._on_connack, box[0], connack)

    def _cb_disconnect(
        self,
        client: mqtt.Client,
        box: List[Link],
        flags: Any,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        self._hand(self._on_closed, box[0], str(reason))

    def _cb_publish(
        self,
        client: mqtt.Client,
        box: List[Link],
        mid: int,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        self._hand(self._on_ack, box[0], mid, str(reason) if reason.is_failure else None)

    def _cb_log(self, client: mqtt.Client, box: List[Link], level: int, text: str) -> None:
        if level == mqtt.MQTT_LOG_ERR and box:  # "failed to receive on socket: [SSL: ...]": why it closed
            self._hand(self._on_paho_error, box[0], str(text)[:300])

    def _cb_message(self, client: mqtt.Client, box: List[Link], msg: mqtt.MQTTMessage) -> None:
        self._hand(self._on_message, box[0], msg.topic, bytes(msg.payload), bool(msg.retain))

    # ----------------------------------------------------------------------------------------------
    # Event handlers: the loop thread.

    def _on_connack(self, link: Link, connack: Connack) -> None:
        if link.connack.done():
            return
        if connack.failed:
            link.connack.set_result(
                Refusal("refused", refused_problem(self.cfg, connack.reason, connack.code))
            )
            return
        if connack.receive_max:
            link.window = max(1, min(link.window, int(connack.receive_max)))
        if connack.max_packet_bytes:
            link.max_packet_bytes = min(link.max_packet_bytes, int(connack.max_packet_bytes))
        link.up = True
        self.connected_before = True
        link.connack.set_result(None)

    def _on_closed(self, link: Link, reason: str) -> None:
        if link.closed:
            return
        link.closed = True
        link.close_reason = reason
        link.closed_event.set()
        if not link.connack.done():
            link.connack.set_result(
                Refusal(
                    "disconnected", self._handshake_problem(reason, link), transient=self.connected_before
                )
            )
        link.wake.set()

    def _on_paho_error(self, link: Link, text: str) -> None:
        if not link.paho_error:  # the first says why; what follows is about the connection being gone
            link.paho_error = text

    def _on_ack(self, link: Link, mid: int, failure: Optional[str]) -> None:
        if mid not in link.inflight:
            return
        link.inflight.discard(mid)
        (link.acked if failure is None else link.refused).append(mid)
        self._on_ack_cb(link, mid, failure)
        link.wake.set()

    def _on_message(self, link: Link, topic: str, payload: bytes, retained: bool) -> None:
        if not link.closed:
            self._on_message_cb(link, topic, payload, retained)
