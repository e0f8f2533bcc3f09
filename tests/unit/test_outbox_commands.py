"""The pure parts of agent/mqtt besides the outbox: command parsing (discovery: test_discovery.py)."""

from __future__ import annotations

import pytest

from agent.mqtt.commands import Command, CommandError, parse_command


@pytest.mark.parametrize(
    ("payload", "action"),
    [(b"start", "start"), (b" END\n", "end"), (b'{"action":"start"}', "start"), (b'"end"', "end")],
)
def test_session_commands(payload: bytes, action: str) -> None:
    assert parse_command("session", payload) == Command("session", action)


@pytest.mark.parametrize("payload", [b"  I love this place!  ", b'{"text": "I love this place!"}'])
def test_text_command(payload: bytes) -> None:
    cmd = parse_command("text", payload)
    assert cmd.text == "I love this place!"
    assert cmd.describe() == {"command": "text", "chars": 18}  # the reply never echoes the visitor's words
    assert "love" not in repr(cmd)


def test_discovery_command_ignores_payload() -> None:
    assert parse_command("discovery", b"") == Command("discovery")


@pytest.mark.parametrize(
    ("name", "payload", "says"),
    [
        ("session", b"restart", "'restart' is not allowed; send 'start' or 'end'"),
        ("session", b"{nope", "not valid JSON"),
        ("session", b'{"action": 3}', "3 is not allowed"),
        ("session", b"\xff\xfe", "not UTF-8"),
        ("session", b"x" * 5000, "at most 1024 allowed"),
        ("reboot", b"now", "allowed are cmd/session, cmd/discovery, cmd/text"),
        ("text", b"   ", "no text found"),
        ("text", b'{"text": 5}', "no text found"),
        ("text", b"{broken", "not valid JSON"),
        ("text", b"a" * 10_001, "10001 characters"),
        ("text", b"a" * 50_000, "at most 40064 allowed"),
    ],
)
def test_bad_commands_say_what_is_allowed(name: str, payload: bytes, says: str) -> None:
    with pytest.raises(CommandError, match=None) as err:
        parse_command(name, payload)
    assert says in str(err.value)


def test_deeply_nested_json_is_a_clear_refusal_not_a_crash() -> None:
    payload = b'{"text": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"  # within cmd/text's 40 KB
    with pytest.raises(CommandError, match="cmd/text: payload is not valid JSON"):
        parse_command("text", payload)


def test_an_unknown_command_topic_is_named_as_one_printable_line() -> None:
    """The topic's name went into the refusal (log, cmd/result) unclipped: U+2028 forged log entries (#31)."""
    with pytest.raises(CommandError) as err:
        parse_command("x\u2028<3>forged\nline" + "y" * 500, b"")
    message = str(err.value)
    assert message.isprintable()
    assert len(message) < 200
