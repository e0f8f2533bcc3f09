"""The MQTT link: drains the durable outbox to the broker, publishes status, health and discovery, and
turns ``cmd/…`` messages into :class:`~agent.mqtt.commands.Command` values.

Bridging paho into asyncio: each connection gets a **fresh paho client running its own network thread**
(``loop_start``, ``reconnect_on_failure=False``). Paho's thread is the configuration its authors test most
(TLS ``want read/write``, keepalive, partial writes), while the add_reader pattern re-implements that
plumbing around private details. Paho callbacks only translate their arguments into plain values and hand
them to the event loop with ``call_soon_threadsafe``; every decision, and every outbox access, happens on the
loop. The blocking parts (TCP connect, TLS handshake, joining the thread) run in the default executor.

Reconnecting is ours, not paho's: a capped, jittered backoff (``agent.backoff``), and a fresh client each
time, so paho never keeps or resends anything from an earlier connection. The outbox is the one source of
retries: at every connect its in-flight rows become ready again and go out, oldest first, through a window
of ``mqtt.inflight_window`` unacknowledged publishes (smaller if an MQTT 5 broker announces a smaller Receive
Maximum), refilled as PUBACKs arrive, so a backlog drains at link speed. A row is deleted only when its
PUBACK arrives. A link that goes silent without FIN or RST is noticed by paho's keepalive (a PINGREQ
unanswered: about two keepalive periods), which ends the connection; nothing was deleted, so everything
in flight goes out again on the next connection.

Status, health, discovery and command replies are published directly, not through the outbox: they are
state whose latest value is all that matters, and replaying an hour of stale health after an outage would
only delay the summaries behind them.

MQTT 5 extras: each message's expiry is the age it has left under ``outbox.max_age_s``; the last will
(``offline``) has a delay of ``mqtt.will_delay_s`` and the session outlives it, so a Wi-Fi blip shorter than
that does not flap ``offline``. For that the agent reconnects with Clean Start = 0; with QoS 2 it keeps Clean
Start = 1, because a fresh client's packet ids could collide with the broker's QoS 2 state of the old session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import socket
import sqlite3
import ssl
import time
from typing import Any, AsyncIterator, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.aio import wait_event
from agent.backoff import Backoff
from agent.config import HumeConfig, MqttConfig
from agent.mqtt import discovery
from agent.mqtt.commands import Command, CommandError, parse_command
from agent.mqtt.outbox import Outbox, Row, utc_iso
from agent.summary import OutMessage

_LOGGER = logging.getLogger(__name__)

CONNACK_TIMEOUT_S = 10.0
"""A broker that accepted TCP (and TLS) but sends no CONNACK by then is treated as unreachable."""
STOP_TIMEOUT_S = 2.0
"""How long a DISCONNECT may take before the socket is shut down under paho."""
SETTLE_RETRY_S = 1.0
"""After the outbox refused an update (disk full), try the drain step again this much later."""
HA_STATE_DELAY_S = 1.0
"""Home Assistant subscribes to state topics after it has read the discovery config; give it that time."""
COMMAND_QUEUE_SIZE = 32
"""Commands the service has not consumed yet; more are refused with a reply, not queued without bound."""
REMEMBERED_TOPICS = ("summary/", "session")
"""The last message sent on these topics is re-sent when Home Assistant comes online (its current state)."""


_Refusal = Tuple[str, str]
"""Why a connection attempt did not get us connected: (state to report, problem text)."""


def _loop_stop(client: mqtt.Client) -> None:
    """``client.loop_stop()``, surviving paho 2.2's race (eclipse-paho/paho.mqtt.python#872).

    loop_stop checks ``_thread`` and then joins it, but the thread clears ``_thread`` as it ends; a link
    that died on its own can win that race, and the AttributeError would end the publisher's task.
    """
    with contextlib.suppress(AttributeError):  # the thread had ended: what loop_stop waits for anyway
        client.loop_stop()


def _props(packet_type: int) -> Properties:
    """paho's ``Properties`` constructor is untyped; this is the one typed door to it."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]


class _Link:
    """One connection: its paho client and what happens on it. Only the event loop thread touches it."""

    def __init__(self, client: mqtt.Client, window: int, connack: asyncio.Future[Optional[_Refusal]]) -> None:
        self.client = client
        self.window = window
        self.connack = connack
        self.started = False
        self.up = False
        self.closed = False
        self.close_reason = ""
        self.inflight: Set[int] = set()
        self.acked: List[int] = []
        self.unmarked: List[Tuple[int, int]] = []
        """(row id, mid) published on this link whose in-flight mark the outbox could not store yet."""
        self.closed_event = asyncio.Event()


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Disable Nagle on the broker socket: paho does not, and a summary then waits for the broker's
    delayed ACK (~40 ms) behind the previous packet (scripts/bench/latency.py: p99 47 ms -> 9 ms)."""
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Publisher:
    """See the module docstring. Construct on or off the loop; :meth:`run` is the one long-lived task."""

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        outbox: Outbox,
        health: Callable[[], Mapping[str, Any]],
        *,
        models: Tuple[str, ...] = HumeConfig().models,
    ) -> None:
        if not device_id or any(c in device_id for c in "/+#"):
            raise ValueError(f"device_id {device_id!r}: must be non-empty and contain no '/', '+' or '#'")
        self.cfg = cfg
        self.device_id = device_id
        self.outbox = outbox
        self.models = models
        self._health = health
        self.base = f"{cfg.topic_prefix}/{device_id}"
        self.client_id = cfg.client_id or f"hume-edge-{device_id}"
        self._backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._wake: Optional[asyncio.Event] = None
        self._commands: Optional[asyncio.Queue[Command]] = None
        self._link: Optional[_Link] = None
        self._state = "disconnected"
        self._problem: Optional[str] = None
        self._connects = 0
        self._started = time.monotonic()
        self._rejected = 0
        self._last_sent: Dict[str, Row] = {}
        self._health_failed = False
        self._write_failures = 0
        self._write_error = ""
        self._settle_error = ""

    # ----------------------------------------------------------------------------------------------
    # Public API

    def enqueue(self, msg: OutMessage) -> int:
        """Durably queue a message (``msg.topic`` relative to ``{prefix}/{device_id}/``); returns its seq.

        Returns -1 if the outbox cannot store it (disk full, I/O error): the message is lost, counted in
        :meth:`status` as ``write_failures`` and said once per distinct error, but the agent keeps running.
        """
        return self.enqueue_many([msg])[0]

    def enqueue_many(self, msgs: Sequence[OutMessage]) -> List[int]:
        """:meth:`enqueue` for several messages in one transaction: one fsync for a whole summary flush."""
        if not msgs:
            return []
        try:
            seqs = self.outbox.put_many([(m.topic, m.payload, m.retain) for m in msgs])
        except sqlite3.Error as exc:
            self._write_failures += len(msgs)
            if str(exc) != self._write_error:
                _LOGGER.error("cannot store a message in the outbox %s: %s", self.outbox.path, exc)
            self._write_error = str(exc)
            return [-1] * len(msgs)
        if self._wake is not None:
            self._wake.set()
        return seqs

    async def commands(self) -> AsyncIterator[Command]:
        """Valid commands from ``cmd/…``, in arrival order (invalid ones were already answered)."""
        queue = self._primitives()[1]
        while True:
            yield await queue.get()

    def status(self) -> Dict[str, Any]:
        """Link state for health and the status file (JSON-ready)."""
        link = self._link
        stats = self.outbox.stats()
        return {
            "state": self._state,
            "broker": f"{self.cfg.host}:{self.cfg.port}",
            "protocol": self.cfg.protocol,
            "client_id": self.client_id,
            "problem": self._problem,
            "connects": self._connects,
            "inflight": len(link.inflight) if link else 0,
            "window": link.window if link else self.cfg.inflight_window,
            "rejected": self._rejected,
            "write_failures": self._write_failures,
            "queue_depth": stats["depth"],
            "dropped": stats["dropped_total"],
        }

    async def run(self) -> None:
        """Connect, drain, reconnect, until cancelled; then publish ``stopped`` and disconnect cleanly."""
        self._loop = asyncio.get_running_loop()
        self._primitives()
        first = True
        try:
            while True:
                link = await self._connect(clean_start=first or not self._resume_session)
                if link is not None:
                    first = False
                    self._backoff.reset()
                    try:
                        await self._serve(link)
                    except Exception:  # a bug or a failing disk must not end the link for good
                        _LOGGER.exception("the MQTT link failed unexpectedly; reconnecting")
                    await self._close(link)
                await asyncio.sleep(self._backoff.next_delay())
        except asyncio.CancelledError:
            await self._stop()
            raise

    # ----------------------------------------------------------------------------------------------
    # Connecting

    @property
    def _v5(self) -> bool:
        return self.cfg.protocol == "5"

    @property
    def _resume_session(self) -> bool:
        return self._v5 and self.cfg.will_delay_s > 0 and self.cfg.qos == 1

    def _primitives(self) -> Tuple[asyncio.Event, asyncio.Queue[Command]]:
        # Created on first use inside the loop: on Python 3.9 they bind to the loop current at creation.
        if self._wake is None or self._commands is None:
            self._wake = asyncio.Event()
            self._commands = asyncio.Queue(COMMAND_QUEUE_SIZE)
        return self._wake, self._commands

    def _make_client(self, link_box: List[_Link]) -> mqtt.Client:
        cfg = self.cfg
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            transport="websockets" if cfg.transport == "websockets" else "tcp",
            reconnect_on_failure=False,
            userdata=link_box,
        )
        client.max_inflight_messages_set(0)  # our window bounds it; paho's default of 20 would throttle
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password or None)
        if cfg.tls:
            client.tls_set(
                ca_certs=cfg.tls_ca or None, certfile=cfg.tls_cert or None, keyfile=cfg.tls_key or None
            )
        will_props = None
        if self._v5 and cfg.will_delay_s > 0:
            will_props = _props(PacketTypes.WILLMESSAGE)
            will_props.WillDelayInterval = int(cfg.will_delay_s)
        client.will_set(self._topic("status"), "offline", qos=1, retain=True, properties=will_props)
        client.on_connect = self._cb_connect
        client.on_socket_open = _no_delay
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        client.on_message = self._cb_message
        return client

    def _open_blocking(self, client: mqtt.Client, clean_start: bool) -> None:
        """TCP connect, TLS handshake and CONNECT; runs in the executor."""
        if self._v5:
            props = _props(PacketTypes.CONNECT)
            if self._resume_session:
                props.SessionExpiryInterval = int(self.cfg.will_delay_s)
            client.connect(
                self.cfg.host, self.cfg.port, self.cfg.keepalive_s, clean_start=clean_start, properties=props
            )
        else:
            client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)

    async def _connect(self, clean_start: bool) -> Optional[_Link]:
        """One attempt; returns a link whose CONNACK accepted us, or None (problem reported)."""
        loop = asyncio.get_running_loop()
        self._state = "connecting"
        box: List[_Link] = []
        try:
            client = await loop.run_in_executor(None, self._make_client, box)
        except (OSError, ValueError) as exc:
            self._report("disconnected", f"cannot set up the MQTT client: {exc} (check mqtt.tls_* paths)")
            return None
        link = self._link = _Link(client, self.cfg.inflight_window, loop.create_future())
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
                refusal = ("disconnected", f"no CONNACK from {self._where} within {CONNACK_TIMEOUT_S:g} s")
        if refusal is None:
            return link
        self._report(*refusal)
        await self._close(link)
        return None

    async def _open(self, link: _Link, clean_start: bool) -> Optional[_Refusal]:
        """TCP, TLS and CONNECT in the executor; what went wrong, in words a person can act on."""
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, self._open_blocking, link.client, clean_start
            )
        except ssl.SSLCertVerificationError as exc:
            return (
                "disconnected",
                f"TLS handshake with {self._where} failed: certificate verify failed ({exc.verify_message}); "
                "mqtt.tls_ca must name the CA that signed the broker's certificate, and the certificate "
                "must name mqtt.host",
            )
        except ssl.SSLError as exc:
            return ("disconnected", f"TLS with {self._where} failed: {exc.reason or exc}; check mqtt.tls_*")
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            return ("disconnected", f"MQTT broker {self._where} unreachable: {reason}")
        return None

    @property
    def _where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def _report(self, state: str, problem: str) -> None:
        """Say a problem once per change; the same problem again goes to debug (no hot-loop logs)."""
        self._state = state
        if problem != self._problem:
            _LOGGER.error("%s; retrying with backoff (at most every %g s)", problem, self.cfg.reconnect_max_s)
        else:
            _LOGGER.debug("still: %s", problem)
        self._problem = problem

    async def _close(self, link: _Link) -> None:
        """Disconnect (best effort, bounded) and join paho's thread, off the loop."""
        if self._link is link:
            self._link = None
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
        box: List[_Link],
        flags: Any,
        reason: ReasonCode,
        props: Optional[Properties],
    ) -> None:
        receive_max = getattr(props, "ReceiveMaximum", None) if props is not None else None
        self._hand(self._on_connack, box[0], reason.is_failure, str(reason), int(reason.value), receive_max)

    def _cb_disconnect(
        self,
        client: mqtt.Client,
        box: List[_Link],
        flags: Any,
        reason: ReasonCode,
        props: Optional[Properties],
    ) -> None:
        self._hand(self._on_closed, box[0], str(reason))

    def _cb_publish(
        self, client: mqtt.Client, box: List[_Link], mid: int, reason: ReasonCode, props: Optional[Properties]
    ) -> None:
        self._hand(self._on_ack, box[0], mid, str(reason) if reason.is_failure else None)

    def _cb_message(self, client: mqtt.Client, box: List[_Link], msg: mqtt.MQTTMessage) -> None:
        self._hand(self._on_message, box[0], msg.topic, bytes(msg.payload))

    # ----------------------------------------------------------------------------------------------
    # Event handlers: the loop thread.

    def _on_connack(
        self, link: _Link, failed: bool, reason: str, code: int, receive_max: Optional[int]
    ) -> None:
        if link.connack.done():
            return
        if failed:
            link.connack.set_result(
                (
                    "refused",
                    f"MQTT broker {self._where} refused the connection: {reason} (reason code {code}); "
                    "check mqtt.username / mqtt.password and the broker's access rules",
                )
            )
            return
        if receive_max:
            link.window = max(1, min(link.window, int(receive_max)))
        link.up = True
        link.connack.set_result(None)

    def _on_closed(self, link: _Link, reason: str) -> None:
        if link.closed:
            return
        link.closed = True
        link.close_reason = reason
        link.closed_event.set()
        if not link.connack.done():
            link.connack.set_result(
                (
                    "disconnected",
                    f"{self._where} closed the connection before CONNACK ({reason}); is it an MQTT port, "
                    "and does mqtt.tls match it?",
                )
            )
        if self._wake is not None:
            self._wake.set()

    def _on_ack(self, link: _Link, mid: int, failure: Optional[str]) -> None:
        if mid not in link.inflight:
            return
        link.inflight.discard(mid)
        link.acked.append(mid)
        if failure is not None:
            # The broker refused this message (MQTT 5 PUBACK reason >= 0x80): resending cannot help.
            self._rejected += 1
            if self._rejected == 1 or self._rejected % 1000 == 0:
                _LOGGER.warning("broker refused a message (%s); %d refused so far", failure, self._rejected)
        if self._wake is not None:
            self._wake.set()

    def _on_message(self, link: _Link, topic: str, payload: bytes) -> None:
        if link.closed:
            return
        if topic == f"{self.cfg.discovery_prefix}/status":
            if payload.strip() == b"online" and self.cfg.discovery:
                _LOGGER.info("Home Assistant came online: re-announcing discovery and current state")
                self._announce(link, with_state=True)
            return
        name = topic[len(self._topic("cmd/")) :]
        if name == "result" or not topic.startswith(self._topic("cmd/")):
            return
        try:
            cmd = parse_command(name, payload)
        except CommandError as exc:
            _LOGGER.info("refused a command: %s", exc)
            self._reply(link, {"ok": False, "error": str(exc)})
            return
        if cmd.name == "discovery":
            self._announce(link, with_state=True)
        else:
            try:
                self._primitives()[1].put_nowait(cmd)
            except asyncio.QueueFull:
                self._reply(link, {"ok": False, **cmd.describe(), "error": "busy: too many commands pending"})
                return
        _LOGGER.info("accepted command %s", cmd.describe())
        self._reply(link, {"ok": True, **cmd.describe()})

    # ----------------------------------------------------------------------------------------------
    # Serving a connection

    def _topic(self, rel: str) -> str:
        return f"{self.base}/{rel}"

    def _direct(self, link: _Link, topic: str, payload: bytes, retain: bool) -> None:
        """Publish state that bypasses the outbox (status, health, discovery, replies) at QoS 0.

        QoS 0 keeps these out of the broker's Receive Maximum, which the outbox window uses up; losing one
        needs a dropped connection, and every connection starts by publishing all of them again.
        """
        link.client.publish(topic, payload, qos=0, retain=retain)

    def _reply(self, link: _Link, body: Dict[str, Any]) -> None:
        body["ts"] = utc_iso(time.time())
        self._direct(link, self._topic("cmd/result"), json.dumps(body).encode(), retain=False)

    def _announce(self, link: _Link, with_state: bool) -> None:
        """Discovery config now and, for a Home Assistant that (re)started, current state a moment later."""
        if not self.cfg.discovery:
            return
        config = discovery.discovery_config(self.base, self.device_id, self.models)
        topic = discovery.config_topic(self.cfg.discovery_prefix, self.device_id)
        self._direct(link, topic, json.dumps(config).encode(), retain=True)
        if with_state:
            asyncio.get_running_loop().call_later(HA_STATE_DELAY_S, self._republish_state, link)

    def _republish_state(self, link: _Link) -> None:
        if link.closed:
            return
        for row in list(self._last_sent.values()):
            self._direct(link, self._topic(row.topic), row.payload, retain=row.retain)
        self._publish_health(link)

    def health_snapshot(self) -> Dict[str, Any]:
        """The service's health merged with this link's and the outbox's figures."""
        try:
            snapshot = dict(self._health())
        except Exception:  # a reporting bug must not take the link down; say it once
            if not self._health_failed:
                _LOGGER.exception("the health callback failed; publishing the MQTT part only")
            self._health_failed = True
            snapshot = {}
        cpu = os.times()
        snapshot.setdefault("uptime_s", round(time.monotonic() - self._started, 1))
        snapshot.setdefault("cpu_s", round(cpu.user + cpu.system, 2))
        snapshot.setdefault(
            "rss_peak_mb", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        )
        snapshot["mqtt"] = self.status()
        snapshot["outbox"] = self.outbox.stats()
        snapshot["ts"] = utc_iso(time.time())
        return snapshot

    def _publish_health(self, link: _Link) -> None:
        payload = json.dumps(self.health_snapshot(), default=str).encode()
        self._direct(link, self._topic("health"), payload, retain=True)

    async def _health_loop(self, link: _Link) -> None:
        while not link.closed:
            self._publish_health(link)
            await asyncio.sleep(self.cfg.health_interval_s)

    async def _serve(self, link: _Link) -> None:
        self._connects += 1
        self._state = "connected"
        if self._problem is not None or self._connects == 1:
            _LOGGER.info(
                "connected to MQTT broker %s as %s (MQTT %s)", self._where, self.client_id, self.cfg.protocol
            )
        self._problem = None
        requeued = self.outbox.requeue_inflight()
        if requeued:
            _LOGGER.info("resending %d message(s) whose PUBACK never came", requeued)
        self._direct(link, self._topic("status"), b"online", retain=True)
        if self._v5:
            opts = SubscribeOptions(qos=1, noLocal=True)
            link.client.subscribe(
                [(self._topic("cmd/#"), opts), (f"{self.cfg.discovery_prefix}/status", opts)]
            )
        else:
            link.client.subscribe([(self._topic("cmd/#"), 1), (f"{self.cfg.discovery_prefix}/status", 1)])
        self._announce(link, with_state=False)
        health = asyncio.ensure_future(self._health_loop(link))
        wake = self._primitives()[0]
        try:
            while not link.closed:
                wake.clear()
                self._drain_step(link)
                await wake.wait()
        finally:
            health.cancel()
            await asyncio.gather(health, return_exceptions=True)
            if link.closed:
                self._state = "disconnected"
                _LOGGER.warning(
                    "lost the MQTT connection to %s (%s); %d message(s) in flight will be resent",
                    self._where,
                    link.close_reason,
                    len(link.inflight),
                )

    def _drain_step(self, link: _Link) -> None:
        """Settle PUBACKs and refill the in-flight window, oldest first, in one outbox transaction.

        When the outbox cannot be written (disk full), nothing new is published, the acknowledgements and
        in-flight marks wait in memory, and the step is retried: the MQTT link itself is fine, so it is not
        torn down (which would resend everything in flight).
        """
        acked, link.acked = link.acked, []
        sent: List[Tuple[int, int]] = []
        try:
            if link.unmarked:
                # Marks first, in their own transaction: an ack below may be for one of these rows.
                self.outbox.settle([], link.unmarked)
                link.unmarked = []
            room = link.window - len(link.inflight)
            if room > 0:
                for row in self.outbox.ready(room):
                    info = link.client.publish(
                        self._topic(row.topic),
                        row.payload,
                        qos=self.cfg.qos,
                        retain=row.retain,
                        properties=self._expiry(row),
                    )
                    if info.rc != mqtt.MQTT_ERR_SUCCESS:
                        break  # the link is going down; its on_disconnect is on the way
                    link.inflight.add(info.mid)
                    sent.append((row.id, info.mid))
                    if row.topic.startswith(REMEMBERED_TOPICS):
                        self._last_sent[row.topic] = row
            self.outbox.settle(acked, sent)
            if self._settle_error:
                _LOGGER.info("the outbox %s can be written again", self.outbox.path)
                self._settle_error = ""
        except sqlite3.Error as exc:
            link.acked = acked + link.acked
            link.unmarked += sent
            if str(exc) != self._settle_error:
                _LOGGER.error("cannot update the outbox %s: %s; retrying", self.outbox.path, exc)
            self._settle_error = str(exc)
            if self._loop is not None and self._wake is not None:
                self._loop.call_later(SETTLE_RETRY_S, self._wake.set)

    def _expiry(self, row: Row) -> Optional[Properties]:
        if not self._v5:
            return None
        props = _props(PacketTypes.PUBLISH)
        left = self.outbox.cfg.max_age_s - (time.time() - row.created)
        props.MessageExpiryInterval = max(1, int(left))
        return props

    # ----------------------------------------------------------------------------------------------
    # Stopping

    async def _stop(self) -> None:
        """Retained ``stopped``, then a clean DISCONNECT (so the broker drops the ``offline`` will).

        TCP keeps order, so the broker handles ``stopped`` before the DISCONNECT that paho writes after it.
        """
        link = self._link
        self._state = "stopped"
        if link is None:
            return
        was_up = link.up and not link.closed
        if was_up:
            self._direct(link, self._topic("status"), b"stopped", retain=True)
        await self._close(link)
        # Deleting acknowledged rows is not a durability matter, but it saves resending them next start.
        acked, link.acked = link.acked, []
        self.outbox.settle(acked, [])
        if was_up:
            _LOGGER.info("disconnected from MQTT broker %s", self._where)
