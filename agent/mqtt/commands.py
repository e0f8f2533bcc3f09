"""Parsing and validating the ``{prefix}/{device_id}/cmd/…`` messages a dashboard or operator sends.

Pure: no MQTT here. Anything not understood raises :class:`CommandError` whose text names what was received
and what is allowed; the publisher sends that text back on ``cmd/result`` and changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Dict

SESSION_ACTIONS = ("start", "end")
COMMANDS = ("session", "discovery")
MAX_PAYLOAD_BYTES = 1024
"""A command is a word or a tiny JSON object; anything bigger is refused unread."""


class CommandError(ValueError):
    """A ``cmd/…`` message that is not a valid command; the text is sent back to the sender."""


@dataclasses.dataclass(frozen=True)
class Command:
    """A validated command: ``name`` ``"session"`` with ``action`` start | end, or ``"discovery"``."""

    name: str
    action: str = ""

    def describe(self) -> Dict[str, Any]:
        """The command as JSON-ready data, for the ``cmd/result`` reply."""
        return {"command": self.name, **({"action": self.action} if self.action else {})}


def parse_command(name: str, payload: bytes) -> Command:
    """Validate the message received on ``cmd/<name>``; raise :class:`CommandError` if it is not valid."""
    if name not in COMMANDS:
        raise CommandError(f"unknown command topic cmd/{name[:64]!s}: allowed are cmd/session, cmd/discovery")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandError(
            f"cmd/{name}: payload of {len(payload)} bytes, at most {MAX_PAYLOAD_BYTES} allowed"
        )
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError(f"cmd/{name}: payload is not UTF-8 text") from None
    if name == "discovery":
        return Command("discovery")
    return Command("session", _session_action(text))


def _session_action(text: str) -> str:
    allowed = "'start' or 'end' (plain, or JSON {\"action\": \"start\"})"
    action: Any = text
    if text.startswith(("{", '"')):
        try:
            data = json.loads(text)
        except ValueError:
            raise CommandError(f"cmd/session: payload is not valid JSON; send {allowed}") from None
        action = data.get("action") if isinstance(data, dict) else data
    if not isinstance(action, str) or action.lower() not in SESSION_ACTIONS:
        shown = repr(action)[:64]
        raise CommandError(f"cmd/session: action {shown} is not allowed; send {allowed}")
    return action.lower()
