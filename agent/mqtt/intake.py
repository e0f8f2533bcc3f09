"""Command intake: ``{prefix}/{device_id}/cmd/…`` messages become :class:`Command` values, each answered.

Every message on ``cmd/…`` (except our own ``cmd/result``) gets exactly one reply on ``cmd/result``: refused
with the reason (``agent.mqtt.commands`` names what was received and what is allowed), refused as busy when
the service has not consumed :data:`COMMAND_QUEUE_SIZE` earlier ones, or accepted. A command the service
carries out on arrival (:attr:`CommandIntake.immediate`: ``cmd/privacy``) is answered with what it decided,
not queued. Replies are published
directly (QoS 0), not through the outbox: an answer only matters to someone listening now.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, AsyncIterator, Callable, Dict, Optional

from agent.aio import OnFirstUse
from agent.messages import utc_iso
from agent.mqtt.commands import Command, CommandError, parse_command
from agent.mqtt.guard import CommandGuard
from agent.mqtt.link import Link
from agent.throttle import LogThrottle
from agent.untrusted import clip

_LOGGER = logging.getLogger(__name__)

REFUSAL_LOG_S = 60.0
"""A kind of refusal (invalid, or over a command's budget) is logged at most this often; health counts all."""
ACCEPTED_LOG_S = 10.0
"""An accepted command of one kind (name and action) is logged at most this often. Some cost nothing and are
not limited (``session end``, ``privacy resume``): a script sending 1,000 a second wrote as many journal
lines. What they change is logged where it happens (a session's end, a pause's end); health counts all."""
COMMAND_QUEUE_SIZE = 32
"""Commands the service has not consumed yet; more are refused with a reply, not queued without bound."""


class CommandIntake:
    """Parses, queues and answers commands; :meth:`commands` is the service's side."""

    def __init__(self, base: str, on_discovery: Callable[[Link], None], guard: CommandGuard) -> None:
        self.prefix = f"{base}/cmd/"
        self._on_discovery = on_discovery
        self._guard = guard
        self.immediate: Dict[str, Callable[[Command], Optional[str]]] = {}
        """Commands carried out here, on arrival, by name (the hub's ``privacy``): the handler acts and
        returns why it did not (None: done), and the reply says what it decided. Queued for the service
        instead, "pause, resume, pause" arriving together were all vetted against the state before the
        first was carried out, and the last was refused by the pause rule after its reply had said ok
        (#31). Never queued, so never refused as busy, and no guard budget applies to them."""
        self._refusals = LogThrottle(_LOGGER, REFUSAL_LOG_S)
        """Anyone who can publish can be refused 1,000 times a second: one line a minute per kind."""
        self._accepted = LogThrottle(_LOGGER, ACCEPTED_LOG_S)
        self._queue: OnFirstUse[asyncio.Queue[Command]] = OnFirstUse(
            lambda: asyncio.Queue(COMMAND_QUEUE_SIZE)
        )

    @property
    def queue(self) -> asyncio.Queue[Command]:
        return self._queue.get()

    async def commands(self) -> AsyncIterator[Command]:
        """Valid commands, in arrival order (invalid ones were already answered)."""
        queue = self.queue
        while True:
            yield await queue.get()

    def handle(self, link: Link, topic: str, payload: bytes, retained: bool = False) -> bool:
        """Take ``topic`` if it is a command (True), answering on ``cmd/result``; False: not ours."""
        if not topic.startswith(self.prefix):
            return False
        name = topic[len(self.prefix) :]
        if name == "result":
            return True
        if retained:
            if self._guard.retained(name[:64]):
                _LOGGER.warning(
                    "ignored a retained message on %s: commands act only when sent live (a retained one "
                    "would replay at every connect); clear it with an empty retained message",
                    clip(topic),
                )
            return True
        try:
            cmd = parse_command(name, payload)
        except CommandError as exc:
            self._guard.invalid()
            self._refusals.log(logging.INFO, "invalid", "refused a command: %s", exc)
            self._reply(link, {"ok": False, "error": str(exc)})
            return True
        act = self.immediate.get(cmd.name)
        why = (
            self._guard.disabled(cmd.name)
            or (act(cmd) if act is not None else None)
            or self._guard.budget(cmd.name, cmd.action, len(cmd.text))
        )
        if why is not None:
            self._refusals.log(logging.INFO, f"refused {cmd.name}", "refused a command: %s", why)
            self._reply(link, {"ok": False, **cmd.describe(), "error": why})
            return True
        if cmd.name == "discovery":
            self._on_discovery(link)
        elif act is None:  # an immediate one is done by now
            try:
                self.queue.put_nowait(cmd)
            except asyncio.QueueFull:
                self._reply(link, {"ok": False, **cmd.describe(), "error": "busy: too many commands pending"})
                return True
        self._accepted.log(logging.INFO, f"{cmd.name} {cmd.action}", "accepted command %s", cmd.describe())
        self._reply(link, {"ok": True, **cmd.describe()})
        return True

    def _reply(self, link: Link, body: Dict[str, Any]) -> None:
        if not self._guard.may_reply():
            return
        body["ts"] = utc_iso(time.time())
        link.direct(f"{self.prefix}result", json.dumps(body).encode(), retain=False)
