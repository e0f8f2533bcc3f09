"""The MQTT side of the agent, composed: connect, drain, take commands, announce, report health.

One job per module, wired here:

* ``agent.mqtt.bridge``: the connection (paho's thread in, asyncio out), CONNACK limits, closing;
* ``agent.mqtt.drain``: the durable outbox onto the link, a row deleted only on its PUBACK;
* ``agent.mqtt.intake``: ``cmd/…`` into :class:`~agent.mqtt.commands.Command` values, each answered;
* ``agent.mqtt.announce``: Home Assistant discovery, and current state when HA restarts;
* ``agent.ops.health``: the typed agent-wide snapshot this module publishes as retained ``health``.

Reconnecting is ours, not paho's: a capped, jittered backoff (``agent.backoff``), and a fresh client each
time. Status, health, discovery and command replies are published directly, not through the outbox: they
are state whose latest value is all that matters, and replaying an hour of stale health after an outage
would only delay the summaries behind them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import AsyncIterator, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.aio import OnFirstUse, cancel_and_wait, spawn
from agent.backoff import Backoff
from agent.config import CommandsConfig, HumeConfig, MqttConfig
from agent.messages import OutMessage, encode
from agent.mqtt.announce import Announcer
from agent.mqtt.bridge import Bridge
from agent.mqtt.commands import Command
from agent.mqtt.drain import Drain
from agent.mqtt.guard import CommandGuard
from agent.mqtt.intake import CommandIntake
from agent.mqtt.limits import publish_bucket
from agent.mqtt.link import Link
from agent.mqtt.outbox import Outbox
from agent.ops.health import Health, MqttHealth, ProcessHealth, ServiceHealth
from agent.ops.mqtt_client import Refusal

_LOGGER = logging.getLogger(__name__)

FAST_RETRY_S = 1.0
"""A broker that served us a moment ago and now refuses at once (a restart) is retried within this (or
``mqtt.reconnect_min_s`` if larger): after a 20 s broker restart the agent was back 10 s late when the
backoff had kept growing through the outage (1, 2, 4, 8 s ...)."""
FAST_RETRY_WINDOW_S = 300.0
"""For this long after a connection ended, quick refusals get fast retries; then the plain backoff."""


def _no_service() -> Optional[ServiceHealth]:
    return None


class Publisher:
    """See the module docstring. Construct on or off the loop; :meth:`run` is the one long-lived task.

    ``health`` returns the service's part of the health snapshot (None: none, e.g. in tools and tests).
    """

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        outbox: Outbox,
        health: Callable[[], Optional[ServiceHealth]] = _no_service,
        *,
        models: Tuple[str, ...] = HumeConfig().models,
        commands: Optional[CommandsConfig] = None,
        command_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not device_id or any(c in device_id for c in "/+#"):
            raise ValueError(f"device_id {device_id!r}: must be non-empty and contain no '/', '+' or '#'")
        self.cfg = cfg
        self.device_id = device_id
        self.outbox = outbox
        self.models = models
        self.service_health = health
        """The service's part of the snapshot; the service registers its own when it is composed."""
        self.base = f"{cfg.topic_prefix}/{device_id}"
        self.client_id = cfg.client_id or f"hume-edge-{device_id}"
        self._backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s)
        self._wake = OnFirstUse(asyncio.Event)
        self._state = "disconnected"
        self._problem: Optional[str] = None
        self._connects = 0
        self._health_depth = 0
        """Queue depth in the last health published: a drain that empties the queue re-publishes it."""
        self._lost_at: Optional[float] = None
        """Monotonic time the last established connection ended (None: never connected)."""
        self._lost: Optional[Tuple[str, int]] = None
        """Why the last connection ended and how many publishes were in flight; said once, at the
        reconnect, when that comes within the fast-retry window (see :meth:`_report`)."""
        self._quiet_problem: Optional[str] = None
        self._rng = random.Random()
        self._started = time.monotonic()
        self._health_failed = False
        self._bucket = publish_bucket(cfg.max_publish_rate_per_s, time.monotonic())
        self._drain = Drain(cfg, outbox, self.base, self._poke, self._bucket)
        self.guard = CommandGuard(commands or CommandsConfig(), command_clock)
        self.intake = CommandIntake(
            self.base, lambda link: self.announcer.announce(link, with_state=True), self.guard
        )
        self.announcer = Announcer(
            cfg,
            self.base,
            device_id=device_id,
            models=models,
            publish_health=self._publish_health,
        )
        self._bridge: Optional[Bridge] = None
        self._states: Dict[str, bytes] = {}
        self._copies: List[Tuple[str, bytes]] = []
        """Live-state copies of just-queued messages, waiting for the drain step that sends the messages
        themselves (:meth:`enqueue_many`), in the order they were queued: each goes out, as before, so a
        dashboard's history keeps every value (two windows flushed in one tick are two states)."""

    # ----------------------------------------------------------------------------------------------
    # Public API

    def enqueue(self, msg: OutMessage) -> int:
        """Durably queue a message (``msg.topic`` relative to ``{prefix}/{device_id}/``); returns its seq.

        Returns -1 if the outbox cannot store it (disk full, I/O error): the message is lost, counted in
        :meth:`status` as ``write_failures`` and said once per distinct error, but the agent keeps running.
        """
        return self.enqueue_many([msg])[0]

    def enqueue_many(
        self, msgs: Sequence[OutMessage], *, state: Optional[Mapping[str, Optional[str]]] = None
    ) -> List[int]:
        """:meth:`enqueue` for several messages in one transaction: one fsync for a whole summary flush.

        ``state`` rows are written in the same transaction (:meth:`Outbox.put_many`).

        A message with a live-state topic (``OutMessage.state``) also becomes that retained topic, with
        its ``seq``: the state is what was produced last, so it is never a replayed message, however long
        the backlog (``agent.summary``). The copy goes out right after the drain step that sends the
        message (or with every state at the next connect), not before it: published here, each summary's
        copy was encoded, handed to paho and given a rate token ahead of the summary itself, which then
        waited behind its own dashboard copy (scripts/bench/latency.py: see the commit that made this).
        """
        seqs = self._drain.enqueue_many(msgs, state=state)
        for msg, seq in zip(msgs, seqs):
            if msg.state is not None and seq >= 0:
                payload = encode(dict(msg.payload, seq=seq))
                if self._states.get(msg.state) != payload:
                    self._states[msg.state] = payload
                    if self.connected:  # else the next connect sends every state: memory stays bounded
                        self._copies.append((msg.state, payload))
        return seqs

    @property
    def connected(self) -> bool:
        """Whether a broker connection is up right now (cheap: no outbox query)."""
        return self._state == "connected"

    @property
    def on_delivered(self) -> Optional[Callable[[int], None]]:
        """Called on the loop with the seq of each ``notice`` row the broker acknowledged."""
        return self._drain.on_delivered

    @on_delivered.setter
    def on_delivered(self, callback: Optional[Callable[[int], None]]) -> None:
        self._drain.on_delivered = callback

    def set_state(self, topic: str, payload: bytes) -> None:
        """Retained state outside the outbox (``status/camera`` ...; ``topic`` relative): published now if
        connected and again at every connect; only the latest value matters, as for ``status`` itself."""
        if self._states.get(topic) == payload:
            return
        self._states[topic] = payload
        self._copies = [c for c in self._copies if c[0] != topic]  # older: must not go out after this
        link = self._link
        if link is not None and link.up and not link.closed:
            link.direct(f"{self.base}/{topic}", payload, retain=True)

    def _publish_copies(self, link: Link) -> None:
        """The live-state copies of the messages queued since the last drain step (:meth:`enqueue_many`)."""
        copies, self._copies = self._copies, []
        if link.up and not link.closed:
            for topic, payload in copies:
                link.direct(f"{self.base}/{topic}", payload, retain=True)

    def commands(self) -> AsyncIterator[Command]:
        """Valid commands from ``cmd/…``, in arrival order (invalid ones were already answered)."""
        return self.intake.commands()

    def status(self) -> MqttHealth:
        """The MQTT link's part of the health snapshot."""
        link = self._link
        stats = self.outbox.health()
        return MqttHealth(
            state=self._state,
            broker=self._where,
            protocol=self.cfg.protocol,
            client_id=self.client_id,
            problem=self._problem or self._quiet_problem,
            connects=self._connects,
            inflight=len(link.inflight) if link else 0,
            window=link.window if link else self.cfg.inflight_window,
            rejected=self._drain.rejected,
            oversized=self._drain.oversized,
            replayed=self._drain.replayed,
            max_publish_rate_per_s=self.cfg.max_publish_rate_per_s,
            max_packet_bytes=link.max_packet_bytes if link else self.cfg.max_message_bytes,
            write_failures=self._drain.write_failures,
            queue_depth=stats.depth,
            dropped=stats.dropped_total,
            commands=self.guard.snapshot(),
        )

    def health_snapshot(self) -> Health:
        """The agent-wide snapshot: the service's part, this link's, the outbox's and the process's."""
        try:
            service = self.service_health() or ServiceHealth(device_id=self.device_id)
        except Exception:  # a reporting bug must not take the link down; say it once
            if not self._health_failed:
                _LOGGER.exception("the health callback failed; publishing the MQTT part only")
            self._health_failed = True
            service = ServiceHealth(device_id=self.device_id)
        return Health(
            ts=time.time(),
            process=ProcessHealth.measure(self._started),
            service=service,
            mqtt=self.status(),
            outbox=self.outbox.health(),
        )

    async def run(self) -> None:
        """Connect, drain, reconnect, until cancelled; then publish ``stopped`` and disconnect cleanly."""
        bridge = self._make_bridge()
        first = True
        try:
            while True:
                self._state = "connecting"
                outcome = await bridge.connect(clean_start=first or not bridge.resume_session)
                refusal: Optional[Refusal] = None
                if isinstance(outcome, Refusal):
                    refusal = outcome
                    self._report(outcome)
                else:
                    first = False
                    self._backoff.reset()
                    try:
                        await self._serve(outcome)
                    except Exception:  # a bug or a failing disk must not end the link for good
                        _LOGGER.exception("the MQTT link failed unexpectedly; reconnecting")
                    await bridge.close(outcome)
                    self._lost_at = time.monotonic()
                delay = self._retry_delay(refusal)
                _LOGGER.debug("next MQTT connection attempt in %.2f s", delay)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self._drain.stop_timers()
            self.announcer.timers.cancel()
            await self._stop()
            raise

    def _recently_lost(self) -> bool:
        return self._lost_at is not None and time.monotonic() - self._lost_at <= FAST_RETRY_WINDOW_S

    def _retry_delay(self, refusal: Optional[Refusal]) -> float:
        """The wait before the next attempt: the backoff, cut short for a broker that is coming back.

        A broker that was serving us a moment ago (within :data:`FAST_RETRY_WINDOW_S`) and now refuses
        at once is restarting: it gets a retry within :data:`FAST_RETRY_S` (jittered, at least half of it,
        so a fleet does not reconnect in step), as does the first attempt after a connection ends. Each
        such try costs one refused TCP handshake. A broker that never answers (timeouts), refuses our
        credentials, or has not served us for a while keeps the capped exponential backoff.
        """
        delay = self._backoff.next_delay()
        if refusal is None or (refusal.transient and self._recently_lost()):
            fast_s = max(self.cfg.reconnect_min_s, FAST_RETRY_S)
            delay = min(delay, self._rng.uniform(fast_s / 2, fast_s))
        return delay

    # ----------------------------------------------------------------------------------------------

    @property
    def _link(self) -> Optional[Link]:
        return self._bridge.link if self._bridge is not None else None

    @property
    def _where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def wake_event(self) -> asyncio.Event:
        """Set when the drain has work (made on first use: a Publisher may be built before the loop runs)."""
        return self._wake.get()

    def _poke(self) -> None:
        wake = self._wake.made
        if wake is not None:
            wake.set()

    def _make_bridge(self) -> Bridge:
        if self._bridge is None:
            self._bridge = Bridge(
                self.cfg,
                self.client_id,
                f"{self.base}/status",
                wake=self.wake_event(),
                bucket=self._bucket,
                on_message=self._on_message,
                on_ack=self._drain.acked,
            )
        return self._bridge

    def _on_message(self, link: Link, topic: str, payload: bytes, retained: bool) -> None:
        if len(payload) > self.cfg.max_incoming_bytes:
            self.guard.oversized()
            return
        if topic == self.announcer.status_topic:
            if self.guard.announce_allowed():
                self.announcer.handle(link, topic, payload)
            return
        self.intake.handle(link, topic, payload, retained)

    def _report(self, refusal: Refusal) -> None:
        """Say a problem once per change; the same problem again goes to debug (no hot-loop logs).

        A broker that just dropped us and refuses at once is restarting: while that lasts less than
        :data:`FAST_RETRY_WINDOW_S` nothing is logged above debug, and the reconnect says it all in one
        info line (:meth:`_serve`). A restart used to log a warning and an error although the agent was
        back within 0.5 s; an outage that outlasts the window, or any other refusal, is an error as before.
        """
        self._state = refusal.state
        if refusal.transient and self._lost is not None and self._recently_lost():
            _LOGGER.debug("MQTT broker %s not back yet: %s", self._where, refusal.problem)
            self._quiet_problem = refusal.problem
            return
        if refusal.problem != self._problem:
            _LOGGER.error(
                "%s; retrying with backoff (at most every %g s)", refusal.problem, self.cfg.reconnect_max_s
            )
        else:
            _LOGGER.debug("still: %s", refusal.problem)
        self._problem = refusal.problem

    def _log_connected(self) -> None:
        lost, self._lost = self._lost, None
        if lost is not None and self._problem is None:
            reason, inflight = lost
            assert self._lost_at is not None
            _LOGGER.info(
                "lost the MQTT connection to %s (%s) and reconnected %.2f s later; %d message(s) that were "
                "in flight resent",
                self._where,
                reason,
                time.monotonic() - self._lost_at,
                inflight,
            )
        elif self._problem is not None or self._connects == 1:
            _LOGGER.info(
                "connected to MQTT broker %s as %s (MQTT %s)", self._where, self.client_id, self.cfg.protocol
            )
        self._problem = self._quiet_problem = None

    def _publish_health(self, link: Link) -> None:
        snapshot = self.health_snapshot()
        self._health_depth = snapshot.outbox.depth
        link.direct(f"{self.base}/health", json.dumps(snapshot.to_json(), default=str).encode(), retain=True)

    async def _health_loop(self, link: Link) -> None:
        while not link.closed:
            self._publish_health(link)
            await asyncio.sleep(self.cfg.health_interval_s)

    async def _serve(self, link: Link) -> None:
        self._connects += 1
        self._state = "connected"
        self._log_connected()
        self._drain.connected()
        topics = [f"{self.base}/cmd/#", self.announcer.status_topic]
        if self.cfg.protocol == "5":
            opts = SubscribeOptions(qos=1, noLocal=True)
            link.client.subscribe([(t, opts) for t in topics])
        else:
            link.client.subscribe([(t, 1) for t in topics])
        # The first drain step before the direct burst: status, every state, discovery and health used up
        # the whole 10-token burst (at 100/s) at every connect, so the first queued rows (a visit's
        # notice, which gates its media) then waited 7-10 ms per token, 2-4 times a connect. Now they take
        # the burst and the direct state goes into the bucket's debt after them; the live-state copies of
        # queued messages go after the messages themselves (test_queued_notice_goes_before_the_direct_burst).
        self._drain.step(link)
        # "online" after the SUBSCRIBE: a broker handles one client's packets in order, so whoever sees
        # "online" and sends a command at once reaches a subscribed agent (before, that first command was
        # sometimes dropped by the broker: test_bad_commands' first example, under load).
        link.direct(f"{self.base}/status", b"online", retain=True)
        self._copies = []  # every state goes now, the latest of each
        for topic, payload in self._states.items():  # after the SUBSCRIBE: commands come first
            link.direct(f"{self.base}/{topic}", payload, retain=True)
        self.announcer.announce(link, with_state=False)
        health = spawn(self._health_loop(link), "hume-edge.mqtt.health")
        wake = self.wake_event()
        try:
            while not link.closed:
                wake.clear()
                if self._drain.step(link) and self._health_depth:
                    self._publish_health(link)  # the retained health showed a backlog that is gone now
                self._publish_copies(link)
                await wake.wait()
        finally:
            await cancel_and_wait([health])
            if link.closed:
                self._state = "disconnected"
                self._lost = (link.close_reason, len(link.inflight))
                _LOGGER.debug("lost the MQTT connection to %s (%s)", self._where, link.close_reason)

    async def _stop(self) -> None:
        """Retained ``stopped``, then a clean DISCONNECT (so the broker drops the ``offline`` will).

        TCP keeps order, so the broker handles ``stopped`` before the DISCONNECT that paho writes after it.
        """
        link = self._link
        self._state = "stopped"
        if link is None or self._bridge is None:
            return
        was_up = link.up and not link.closed
        if was_up:
            # The last word: a health that says stopped (the service has ended the session, withdrawn
            # the notice and stopped the parts by now), then the status; the live state before them.
            self._publish_copies(link)
            self._publish_health(link)
            link.direct(f"{self.base}/status", b"stopped", retain=True)
        await self._bridge.close(link)
        self._drain.settle_acked(link)
        if was_up:
            _LOGGER.info("disconnected from MQTT broker %s", self._where)
