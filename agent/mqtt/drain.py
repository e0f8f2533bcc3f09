"""The outbox drain: durable queue in, QoS 1/2 publishes out, a row deleted only on its PUBACK.

At every connect the outbox's in-flight rows become ready again and go out, oldest first, through a window
of unacknowledged publishes (``mqtt.inflight_window``, lowered to an MQTT 5 broker's Receive Maximum by the
bridge), refilled as PUBACKs arrive, so a backlog drains at link speed. Nothing is deleted before its
PUBACK, so everything in flight when a link dies goes out again on the next connection.

MQTT 5: each message's expiry is the age it has left under ``outbox.max_age_s``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.config import MqttConfig
from agent.messages import OutMessage
from agent.mqtt.link import Link, props
from agent.mqtt.outbox import Outbox, Row

_LOGGER = logging.getLogger(__name__)

SETTLE_RETRY_S = 1.0
"""After the outbox refused an update (disk full), try the drain step again this much later."""


class Drain:
    """Queues messages durably and moves them from the outbox onto a link; see the module docstring."""

    def __init__(self, cfg: MqttConfig, outbox: Outbox, base: str, wake: Callable[[], None]) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.base = base
        self.wake = wake
        """Tells the publisher's loop there is work (safe to call before the loop runs)."""
        self.rejected = 0
        self.write_failures = 0
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

    def refused(self, failure: str) -> None:
        """The broker refused a message (MQTT 5 PUBACK reason >= 0x80): resending cannot help."""
        self.rejected += 1
        if self.rejected == 1 or self.rejected % 1000 == 0:
            _LOGGER.warning("broker refused a message (%s); %d refused so far", failure, self.rejected)

    def step(self, link: Link) -> bool:
        """Settle PUBACKs and refill the in-flight window, oldest first, in one outbox transaction.

        Returns True when this step emptied the queue: it settled acknowledgements and nothing is left in
        flight or ready (the publisher then refreshes the retained ``health``, whose queue depth would
        otherwise stay stale until the next ``mqtt.health_interval_s``).

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
                        f"{self.base}/{row.topic}",
                        row.payload,
                        qos=self.cfg.qos,
                        retain=row.retain,
                        properties=self._expiry(row),
                    )
                    if info.rc != mqtt.MQTT_ERR_SUCCESS:
                        break  # the link is going down; its on_disconnect is on the way
                    link.inflight.add(info.mid)
                    sent.append((row.id, info.mid))
            self.outbox.settle(acked, sent)
            if self._settle_error:
                _LOGGER.info("the outbox %s can be written again", self.outbox.path)
                self._settle_error = ""
            return bool(acked) and not link.inflight
        except sqlite3.Error as exc:
            link.acked = acked + link.acked
            link.unmarked += sent
            if str(exc) != self._settle_error:
                _LOGGER.error("cannot update the outbox %s: %s; retrying", self.outbox.path, exc)
            self._settle_error = str(exc)
            asyncio.get_running_loop().call_later(SETTLE_RETRY_S, self.wake)
            return False

    def settle_acked(self, link: Link) -> None:
        """At a stop: delete what was acknowledged (not a durability matter; it saves resending it)."""
        acked, link.acked = link.acked, []
        self.outbox.settle(acked, [])

    def _expiry(self, row: Row) -> Optional[Properties]:
        if self.cfg.protocol != "5":
            return None
        expiry = props(PacketTypes.PUBLISH)
        left = self.outbox.cfg.max_age_s - (time.time() - row.created)
        expiry.MessageExpiryInterval = max(1, int(left))
        return expiry
