"""Announcing the kiosk to Home Assistant: the discovery config, and current state when HA (re)starts.

The payload is ``agent.mqtt.discovery``'s; this module decides when it goes out: at every connect, on
``cmd/discovery``, and when Home Assistant's birth message (``{discovery_prefix}/status`` = ``online``)
says it restarted, in which case the current state (the last summary per topic, the session, health)
follows a moment later, once HA has subscribed to the state topics it just read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable, Mapping, Tuple

from agent.config import MqttConfig
from agent.mqtt import discovery
from agent.mqtt.link import Link
from agent.mqtt.outbox import Row

_LOGGER = logging.getLogger(__name__)

HA_STATE_DELAY_S = 1.0
"""Home Assistant subscribes to state topics after it has read the discovery config; give it that time."""


class Announcer:
    """Publishes discovery (retained, QoS 0, directly) and re-sends current state for Home Assistant."""

    def __init__(
        self,
        cfg: MqttConfig,
        base: str,
        *,
        device_id: str,
        models: Tuple[str, ...],
        last_sent: Mapping[str, Row],
        publish_health: Callable[[Link], None],
    ) -> None:
        self.cfg = cfg
        self.base = base
        self.device_id = device_id
        self.models = models
        self._last_sent = last_sent
        self._publish_health = publish_health
        self.status_topic = f"{cfg.discovery_prefix}/status"

    def handle(self, link: Link, topic: str, payload: bytes) -> bool:
        """Take Home Assistant's birth message (True); False: not ours."""
        if topic != self.status_topic:
            return False
        if payload.strip() == b"online" and self.cfg.discovery:
            _LOGGER.info("Home Assistant came online: re-announcing discovery and current state")
            self.announce(link, with_state=True)
        return True

    def announce(self, link: Link, with_state: bool) -> None:
        """Discovery config now and, for a Home Assistant that (re)started, current state a moment later."""
        if not self.cfg.discovery:
            return
        config = discovery.discovery_config(self.base, self.device_id, self.models)
        topic = discovery.config_topic(self.cfg.discovery_prefix, self.device_id)
        link.direct(topic, json.dumps(config).encode(), retain=True)
        if with_state:
            asyncio.get_running_loop().call_later(HA_STATE_DELAY_S, self._republish_state, link)

    def _republish_state(self, link: Link) -> None:
        if link.closed:
            return
        for row in list(self._last_sent.values()):
            link.direct(f"{self.base}/{row.topic}", row.payload, retain=row.retain)
        self._publish_health(link)
