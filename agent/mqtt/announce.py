"""Announcing the kiosk to Home Assistant: the discovery config, and current state when HA (re)starts.

The payload is ``agent.mqtt.discovery``'s; this module decides when it goes out: at every connect, on
``cmd/discovery``, and when Home Assistant's birth message (``{discovery_prefix}/status`` = ``online``)
says it restarted, in which case a fresh ``health`` follows a moment later, once HA has subscribed to the
state topics it just read.

No sequenced message is ever re-sent for Home Assistant: the ``session`` and ``health`` topics are
retained, so HA reads them when it subscribes; summaries are not, so after an HA restart the per-model
sensors read ``unknown`` until the next summary window (``summary.window_s``) rather than every
subscriber receiving old summaries again with their old ``seq``.
"""

from __future__ import annotations

import json
import logging
from typing import Callable, Tuple

from agent.aio import Timers
from agent.config import MqttConfig
from agent.mqtt import discovery
from agent.mqtt.link import Link

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
        publish_health: Callable[[Link], None],
    ) -> None:
        self.cfg = cfg
        self.base = base
        self.device_id = device_id
        self.models = models
        self._publish_health = publish_health
        self.status_topic = f"{cfg.discovery_prefix}/status"
        self.timers = Timers()
        """The delayed health re-send; the publisher cancels it when it stops."""

    def handle(self, link: Link, topic: str, payload: bytes) -> bool:
        """Take Home Assistant's birth message (True); False: not ours."""
        if topic != self.status_topic:
            return False
        if payload.strip() == b"online" and self.cfg.discovery:
            _LOGGER.info("Home Assistant came online: re-announcing discovery and current state")
            self.announce(link, with_state=True)
        return True

    def announce(self, link: Link, with_state: bool) -> None:
        """Discovery config now and, for a Home Assistant that (re)started, fresh health a moment later."""
        if not self.cfg.discovery:
            return
        prefix = self.cfg.discovery_prefix
        config = discovery.discovery_config(self.base, self.device_id, self.models)
        link.direct(discovery.config_topic(prefix, self.device_id), json.dumps(config).encode(), retain=True)
        if with_state:
            self.timers.call_later(HA_STATE_DELAY_S, self._republish_health, link)

    def _republish_health(self, link: Link) -> None:
        if not link.closed:
            self._publish_health(link)
