"""Parsing and validating the ``{prefix}/{device_id}/cmd/…`` messages a dashboard or operator sends.

Pure: no MQTT here. Anything not understood raises :class:`CommandError` whose text names what was received
and what is allowed; the publisher sends that text back on ``cmd/result`` and changes nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Tuple

from agent.untrusted import UntrustedInputError, clip, loads

SESSION_ACTIONS = ("start", "end")
PRIVACY_ACTIONS = ("pause", "resume")
COMMANDS = ("session", "discovery", "text", "privacy")
MAX_PAYLOAD_BYTES = 1024
"""A command is a word or a tiny JSON object; anything bigger is refused unread."""
MAX_TEXT_CHARS = 10_000
"""cmd/text: Hume's limit per language payload."""
MAX_TEXT_PAYLOAD_BYTES = 4 * MAX_TEXT_CHARS + 64
"""cmd/text: UTF-8 takes up to 4 bytes a character, plus a small JSON wrapper."""


class CommandError(ValueError):
    """A ``cmd/…`` message that is not a valid command; the text is sent back to the sender."""


@dataclasses.dataclass(frozen=True)
class Command:
    """A validated command: ``"session"`` with ``action`` start | end, ``"discovery"``, or ``"text"``.

    ``text`` (cmd/text) is what a visitor typed or said, from the kiosk's UI or a speech-to-text step,
    for Hume's language model; it is used only while a visitor session is active.
    """

    name: str
    action: str = ""
    text: str = dataclasses.field(default="", repr=False)

    def describe(self) -> Dict[str, Any]:
        """The command as JSON-ready data, for the ``cmd/result`` reply (never the visitor's text)."""
        extra: Dict[str, Any] = {"action": self.action} if self.action else {}
        if self.name == "text":
            extra["chars"] = len(self.text)
        return {"command": self.name, **extra}


def parse_command(name: str, payload: bytes) -> Command:
    """Validate the message received on ``cmd/<name>``; raise :class:`CommandError` if it is not valid."""
    if name not in COMMANDS:
        allowed = ", ".join(f"cmd/{c}" for c in COMMANDS)
        raise CommandError(f"unknown command topic cmd/{clip(name, 64)}: allowed are {allowed}")
    limit = MAX_TEXT_PAYLOAD_BYTES if name == "text" else MAX_PAYLOAD_BYTES
    if len(payload) > limit:
        raise CommandError(f"cmd/{name}: payload of {len(payload)} bytes, at most {limit} allowed")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError(f"cmd/{name}: payload is not UTF-8 text") from None
    if name == "discovery":
        return Command("discovery")
    if name == "text":
        return Command("text", text=_text(text))
    if name == "privacy":
        return Command("privacy", _action("privacy", text, PRIVACY_ACTIONS))
    return Command("session", _action("session", text, SESSION_ACTIONS))


def _text(text: str) -> str:
    allowed = f'plain UTF-8 text, or JSON {{"text": "..."}}, 1 to {MAX_TEXT_CHARS} characters'
    value: Any = text
    if text.startswith("{"):
        try:
            data = loads(text, max_bytes=MAX_TEXT_PAYLOAD_BYTES, what="cmd/text")
        except UntrustedInputError:
            raise CommandError(f"cmd/text: payload is not valid JSON; send {allowed}") from None
        value = data.get("text") if isinstance(data, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise CommandError(f"cmd/text: no text found; send {allowed}")
    if len(value) > MAX_TEXT_CHARS:
        raise CommandError(f"cmd/text: {len(value)} characters; send {allowed}")
    return value.strip()


def _action(name: str, text: str, actions: Tuple[str, ...]) -> str:
    """``cmd/session`` (start / end) and ``cmd/privacy`` (pause / resume): a word, or JSON with ``action``."""
    allowed = f'{" or ".join(repr(a) for a in actions)} (plain, or JSON {{"action": "{actions[0]}"}})'
    action: Any = text
    if text.startswith(("{", '"')):
        try:
            data = loads(text, max_bytes=MAX_PAYLOAD_BYTES, what=f"cmd/{name}")
        except UntrustedInputError:
            raise CommandError(f"cmd/{name}: payload is not valid JSON; send {allowed}") from None
        action = data.get("action") if isinstance(data, dict) else data
    if not isinstance(action, str) or action.lower() not in actions:
        shown = repr(action)[:64]
        raise CommandError(f"cmd/{name}: action {shown} is not allowed; send {allowed}")
    return action.lower()
