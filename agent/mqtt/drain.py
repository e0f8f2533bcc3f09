"""The outbox drain: durable queue in, QoS 1/2 publishes out, a row deleted only on its PUBACK.

At every connect the outbox's in-flight rows become ready again and go out through a window of
unacknowledged publishes (``mqtt.inflight_window``, lowered to an MQTT 5 broker's Receive Maximum by the
bridge), refilled as PUBACKs arrive. Nothing is deleted before its PUBACK, so everything in flight when a
link dies goes out again on the next connection.

Within the broker's limits (``agent.mqtt.limits``): at most ``mqtt.max_publish_rate_per_s`` publishes a
second (a backlog is replayed at that pace, not at link speed), and a message bigger than
``mqtt.max_message_bytes`` or the broker's Maximum Packet Size is dropped and counted (outbox reason
``oversize``) instead of getting the link disconnected again and again with the queue stuck behind it.

Backlog and live data: the rows queued before this connection was made are the backlog; they go out with
``"replay": true`` added to their JSON. With ``mqtt.replay = "live_first"`` (the default) rows queued
since the connection go first and the backlog takes what window and rate are left, so a dashboard sees the
present at once after an outage; each part keeps ``seq`` order, but a topic's live messages arrive before
its older backlog. A retained message older than the newest one queued on its topic is sent without the
retain flag (``Outbox.superseded``), so the broker keeps the newest state whatever the order of arrival,
across reconnects and restarts. ``in_order`` sends everything by ``seq``.

MQTT 5: each message's expiry is the age it has left under ``outbox.max_age_s``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.aio import Timers
from agent.config import MqttConfig
from agent.messages import OutMessage
from agent.mqtt.acks import ACK_FLUSH_S
from agent.mqtt.limits import packet_bytes
from agent.mqtt.link import Link, props
from agent.mqtt.outbox import Outbox, Row
from agent.throttle import TokenBucket

_LOGGER = logging.getLogger(__name__)

SETTLE_RETRY_S = 1.0
"""After the outbox refused an update (disk full), try the drain step again this much later."""
_SENT, _OVERSIZE, _DOWN = "sent", "oversize", "down"
"""What happened to one row offered to the link."""
DELIVERY_TOPICS = ("notice",)
"""Rows on these topics are reported to ``Drain.on_delivered`` when the broker acknowledges them (the
privacy notice: no visitor's media leaves before the broker has it; see ``agent.privacy.state``)."""


class Drain:
    """Queues messages durably and moves them from the outbox onto a link; see the module docstring."""

    def __init__(
        self, cfg: MqttConfig, outbox: Outbox, base: str, wake: Callable[[], None], bucket: TokenBucket
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.base = base
        self.bucket = bucket
        self.wake = wake
        """Tells the publisher's loop there is work (safe to call before the loop runs)."""
        self.rejected = 0
        self.oversized = 0
        self.on_delivered: Optional[Callable[[int], None]] = None
        """Called on the loop with the seq of each :data:`DELIVERY_TOPICS` row the broker acknowledged."""
        self.write_failures = 0
        self.replayed = 0
        """Backlog messages sent (marked ``replay``), over the process's life."""
        self._watermark = 0
        """Rows with an id up to this were queued before the current connection: where the backlog is."""
        self._seq_watermark = 0
        """Rows with a seq below this were queued before the current connection: what is replayed."""
        self.timers = Timers()
        """The settle retry, the rate and the ack timers; the publisher cancels them when it stops."""
        self._write_error = ""
        self._settle_error = ""

    # ----------------------------------------------------------------------------------------------
    # Producing

    def enqueue_many(
        self, msgs: Sequence[OutMessage], *, state: Optional[Mapping[str, Optional[str]]] = None
    ) -> List[int]:
        """Durably queue messages in one transaction (one fsync); returns their seqs, -1 where lost.

        ``state`` rows are set / deleted in the same transaction (:meth:`Outbox.put_many`).

        When the outbox cannot store them (disk full, I/O error) they are lost, counted as
        ``write_failures`` and said once per distinct error, but the agent keeps running.
        """
        if not msgs:
            return []
        try:
            seqs = self.outbox.put_many([(m.topic, m.payload, m.retain) for m in msgs], state=state)
        except sqlite3.Error as exc:
            self.write_failures += len(msgs)
            if str(exc) != self._write_error:
                _LOGGER.error("cannot store a message in the outbox %s: %s", self.outbox.path, exc)
            self._write_error = str(exc)
            return [-1] * len(msgs)
        self.wake()
        return seqs

    # ----------------------------------------------------------------------------------------------
    # Draining

    def connected(self) -> None:
        """A new link is up: every in-flight row's PUBACK can no longer come, so it goes out again."""
        requeued = self.outbox.requeue_inflight()
        if requeued:
            _LOGGER.info("resending %d message(s) whose PUBACK never came", requeued)
        self._watermark = self.outbox.last_id()
        self._seq_watermark = self.outbox.next_seq()

    def acked(self, link: Link, mid: int, failure: Optional[str]) -> None:
        """The broker answered the publish ``mid`` (``failure``: it refused it)."""
        seq = link.watched.pop(mid, None)
        if failure is not None:
            self.refused(failure)
        elif seq is not None and self.on_delivered is not None:
            self.on_delivered(seq)

    def refused(self, failure: str) -> None:
        """The broker refused a message (MQTT 5 PUBACK reason >= 0x80): resending cannot help; the next step
        deletes its row, counted as dropped (``refused``)."""
        self.rejected += 1
        if self.rejected == 1 or self.rejected % 1000 == 0:
            _LOGGER.warning("broker refused a message (%s); %d refused so far", failure, self.rejected)

    def step(self, link: Link) -> bool:
        """Settle PUBACKs and refill the in-flight window within the rate, in one outbox transaction.

        Returns True when this step emptied the queue: it settled acknowledgements and nothing is left in
        flight or ready (the publisher then refreshes the retained ``health``, whose queue depth would
        otherwise stay stale until the next ``mqtt.health_interval_s``).

        When the outbox cannot be written (disk full), nothing new is published, the acknowledgements and
        in-flight marks wait in memory, and the step is retried: the MQTT link itself is fine, so it is not
        torn down (which would resend everything in flight).
        """
        acked, link.acked = link.acked, []
        refused, link.refused = link.refused, []
        sent: List[Tuple[int, int]] = []
        oversized: List[Row] = []
        try:
            if link.unmarked:
                # Marks first, in their own transaction: an ack below may be for one of these rows.
                self.outbox.settle([], link.unmarked)
                link.unmarked = []
            room = link.window - len(link.inflight)
            allowed = min(room, self.bucket.available(time.monotonic()))
            rows = self._next(allowed) if allowed > 0 else []
            for row in rows:
                outcome = self._publish(link, row, sent)
                if outcome == _DOWN:
                    break  # the link is going down; its on_disconnect is on the way
                if outcome == _OVERSIZE:
                    oversized.append(row)
            self.outbox.settle(acked, sent, refused)
            self._drop_oversized(link, oversized)
            if self._settle_error:
                _LOGGER.info("the outbox %s can be written again", self.outbox.path)
                self._settle_error = ""
        except sqlite3.Error as exc:
            link.acked = acked + link.acked
            link.refused = refused + link.refused
            link.unmarked += sent
            if str(exc) != self._settle_error:
                _LOGGER.error("cannot update the outbox %s: %s; retrying", self.outbox.path, exc)
            self._settle_error = str(exc)
            self.timers.call_later(SETTLE_RETRY_S, self.wake)
            return False
        if room > allowed and self.outbox.depth > len(link.inflight):
            self._wake_for_tokens()
        if self.outbox.acks_waiting:
            self._wake_for_acks()
        # The queue, not just the window, must be empty: under the rate cap the window empties between
        # tokens, and "emptied" then re-published health after nearly every batch (16 retained health
        # messages of 2.8 KB for a 19-message backlog).
        return bool(acked or refused) and not link.inflight and self.outbox.depth == 0

    def _next(self, limit: int) -> List[Row]:
        if self.cfg.replay == "in_order":
            return self.outbox.ready(limit)
        live = self.outbox.ready(limit, after_id=self._watermark)
        if len(live) < limit:
            live += self.outbox.ready(limit - len(live), upto_id=self._watermark)
        return live

    def _publish(self, link: Link, row: Row, sent: List[Tuple[int, int]]) -> str:
        """Publish one row: ``_SENT``, ``_OVERSIZE`` (not sent: too big) or ``_DOWN`` (paho refused)."""
        replay = row.seq < self._seq_watermark
        payload = _mark_replay(row.payload) if replay else row.payload
        topic = f"{self.base}/{row.topic}"
        if packet_bytes(topic, payload) > link.max_packet_bytes:
            return _OVERSIZE
        retain = row.retain and not self.outbox.superseded(row)
        info = link.client.publish(
            topic, payload, qos=self.cfg.qos, retain=retain, properties=self._expiry(row)
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return _DOWN
        self.bucket.take(1, time.monotonic())
        link.inflight.add(info.mid)
        sent.append((row.id, info.mid))
        if row.topic in DELIVERY_TOPICS:
            link.watched[info.mid] = row.seq
        if replay:
            self.replayed += 1
        return _SENT

    def _drop_oversized(self, link: Link, rows: List[Row]) -> None:
        if not rows:
            return
        self.outbox.discard(rows, "oversize")
        self.oversized += len(rows)
        limit = link.max_packet_bytes
        for row in rows:
            _LOGGER.warning(
                "dropped outbox message seq %d on %s: %d bytes is over the %d-byte limit "
                "(mqtt.max_message_bytes or the broker's Maximum Packet Size); %d dropped so far "
                "(health: outbox.dropped.oversize)",
                row.seq,
                row.topic,
                packet_bytes(f"{self.base}/{row.topic}", row.payload),
                limit,
                self.oversized,
            )
        self.wake()  # the rows behind them

    def _wake_for_acks(self) -> None:
        """Acknowledged rows wait to be deleted with the next put; if none comes, a later step does it."""
        self.timers.once("acks", ACK_FLUSH_S + 0.1, self.wake)

    def _wake_for_tokens(self) -> None:
        """The rate, not the window, stopped this step: come back when a token is there (one timer)."""
        self.timers.once("rate", self.bucket.wait_s(1, time.monotonic()), self.wake)

    def stop_timers(self) -> None:
        """Cancel the pending settle retry, rate and ack timers (the publisher stops)."""
        self.timers.cancel()

    def settle_acked(self, link: Link) -> None:
        """At a stop: delete what was acknowledged (not a durability matter; it saves resending it)."""
        acked, link.acked = link.acked, []
        refused, link.refused = link.refused, []
        self.outbox.settle(acked, [], refused)

    def _expiry(self, row: Row) -> Optional[Properties]:
        if self.cfg.protocol != "5":
            return None
        expiry = props(PacketTypes.PUBLISH)
        left = self.outbox.cfg.max_age_s - (time.time() - row.created)
        expiry.MessageExpiryInterval = max(1, int(left))
        return expiry


REPLAY_MARK = b',"replay":true}'


def _mark_replay(payload: bytes) -> bytes:
    """Add ``"replay": true`` to a queued JSON object (the outbox wrote it: compact, ends with ``}``)."""
    return payload[:-1] + REPLAY_MARK if payload.endswith(b"}") else payload
