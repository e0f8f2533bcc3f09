"""The agent protects itself on an open broker (no ACL): the whole agent, a real mosquitto, the v0 emulator.

* A retained ``cmd/session start`` left on the broker does not start a session when the agent (re)connects.
* A flood of forced starts and of maximum-size ``cmd/text`` stays within ``[commands]``'s limits, counted at
  the emulator (what Hume would bill), every refusal answered on ``cmd/result``.
* 500 ``cmd/discovery`` cause a bounded number of publications.
* A flood of commands that cost nothing (``session end``, ``privacy resume``) is logged a bounded number
  of times.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Dict, List

import pytest

from agent import config as config_mod
from agent.service import run_agent
from tests.support.emulator import TEST_KEY
from tests.support.mosquitto import Received, Subscriber
from tests.support.waits import eventually

pytestmark = pytest.mark.timeout(120)

DEVICE = "guarded-kiosk"
PREFIX = f"hume-edge/{DEVICE}/"
WAIT_S = 30.0
MAX_TEXT = "x" * 9_999 + "."  # 10,000 characters: the most one cmd/text may hold


def agent_config(emulator: Any, broker: Any, tmp_path: Path, **commands: Any) -> config_mod.Config:
    return config_mod.from_dict(
        {
            "device_id": DEVICE,
            "hume": {
                "backend": "v0",
                "api_key": TEST_KEY,
                "models": ["language"],
                "v0": {"url": emulator.url},
            },
            "camera": {"source": "none"},
            "microphone": {"source": "none"},
            "session": {"mode": "command"},
            "mqtt": {"host": broker.host, "port": broker.port, "health_interval_s": 1.0},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            "commands": commands,
        },
        environ={},
    )


def results(sub: Subscriber) -> List[Dict[str, Any]]:
    return [m.json() for m in sub.on("cmd/result")]


def health(msgs: List[Received]) -> Dict[str, Any]:
    bodies = [m.json() for m in msgs if m.topic == PREFIX + "health"]
    return bodies[-1]["mqtt"]["commands"] if bodies else {}


async def test_retained_start_is_ignored_and_floods_stay_within_the_limits(
    emulator: Any, mosquitto: Any, subscriber: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    # Someone left a retained start on the broker: every (re)connect of the agent receives it.
    sub.client.publish(PREFIX + "cmd/session", b"start", qos=1, retain=True).wait_for_publish(10)
    cfg = agent_config(emulator, mosquitto, tmp_path, session_starts_per_hour=2, replies_per_s=100.0)
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_agent(cfg, stop))
    try:
        assert await sub.until(lambda ms: health(ms).get("retained_ignored") == 1, WAIT_S), health(
            sub.messages
        )
        assert not [m for m in sub.messages if m.topic == PREFIX + "session"], (
            "a retained command started a session"
        )
        assert not results(sub), "a retained command was answered (it would be, at every reconnect)"
        # Clearing it reaches the connected agent as a live, empty command: refused like any bad payload.
        sub.client.publish(PREFIX + "cmd/session", b"", qos=1, retain=True).wait_for_publish(10)
        assert await sub.until(lambda ms: len(results(sub)) >= 1, WAIT_S)
        cleared = results(sub).pop(0)
        assert not cleared["ok"], cleared

        for _ in range(5):
            sub.publish(PREFIX + "cmd/session", b"start")
        assert await sub.until(lambda ms: len(results(sub)) >= 6, WAIT_S)
        assert [r["ok"] for r in results(sub)[1:]] == [True, True, False, False, False]
        assert "at most 2 an hour" in results(sub)[-1]["error"]
        assert await sub.until(lambda ms: any(m.topic == PREFIX + "session" for m in ms), WAIT_S)

        for _ in range(5):
            sub.publish(PREFIX + "cmd/text", MAX_TEXT.encode())
        assert await sub.until(lambda ms: len(results(sub)) >= 11, WAIT_S)
        assert [r["ok"] for r in results(sub)[6:]] == [True, True, False, False, False]

        def texts() -> int:
            return sum(1 for _, m in emulator.requests if m.raw_text)

        assert await eventually(lambda: texts() >= 2, WAIT_S), "the accepted texts never reached Hume"
        sub.publish(PREFIX + "cmd/session", b"end")
        assert await sub.until(lambda ms: any(m.topic == PREFIX + "aggregate" for m in ms), WAIT_S)
        assert texts() == 2, "more text reached Hume than commands.text_chars_per_minute allows"
    finally:
        stop.set()
        assert await asyncio.wait_for(task, WAIT_S) == 0
    sessions = [m.json() for m in sub.messages if m.topic == PREFIX + "session" and m.payload]
    assert [s["event"] for s in sessions].count("start") == 1


async def test_a_discovery_flood_causes_a_bounded_number_of_publications(
    emulator: Any, mosquitto: Any, subscriber: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    watcher: Subscriber = subscriber(mosquitto, ["#"])
    # The defaults: 6 announcements a minute, 5 replies a second.
    cfg = agent_config(emulator, mosquitto, tmp_path)
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_agent(cfg, stop))
    try:
        assert await watcher.until(lambda ms: any(m.topic.startswith("homeassistant/") for m in ms), WAIT_S)
        before = len(watcher.messages)
        flooder: Subscriber = subscriber(mosquitto, [PREFIX + "flooder-unused"])
        for _ in range(500):
            flooder.publish(PREFIX + "cmd/discovery", b"")

        def counted(ms: List[Received]) -> bool:
            c = health(ms)
            return c.get("accepted", 0) + c.get("rate_limited", 0) >= 500

        assert await watcher.until(counted, WAIT_S), health(watcher.messages)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, WAIT_S) == 0
    during = [m for m in watcher.messages[before:] if not m.topic.endswith("/cmd/discovery")]
    by_kind = {
        "discovery": sum(m.topic.startswith("homeassistant/") for m in during),
        "replies": sum(m.topic.endswith("cmd/result") for m in during),
    }
    counts = health(watcher.messages)
    assert counts["accepted"] <= 6, counts
    assert counts["rate_limited"] >= 494, counts
    assert by_kind["discovery"] <= 6, by_kind
    assert by_kind["replies"] <= 10 + 5 * 10, by_kind  # a burst, then 5/s over at most ~10 s of flood
    assert counts["replies_dropped"] >= 400, counts


async def test_a_flood_of_free_commands_is_logged_a_bounded_number_of_times(
    emulator: Any,
    mosquitto: Any,
    subscriber: Any,
    tmp_path: Path,
    *,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``cmd/session end`` and ``cmd/privacy resume`` cost nothing and have no budget: every one is accepted.
    Each wrote an "accepted command" line, so anyone able to publish could fill the journal at the
    broker's rate (300 commands: 300 lines). Health still counts every one."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    watcher: Subscriber = subscriber(mosquitto, [PREFIX + "health"])
    cfg = agent_config(emulator, mosquitto, tmp_path)
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_agent(cfg, stop))
    try:
        assert await watcher.until(lambda ms: bool(health(ms)), WAIT_S)
        caplog.set_level(logging.INFO, logger="agent.mqtt.intake")
        flooder: Subscriber = subscriber(mosquitto, [PREFIX + "flooder-unused"])
        for _ in range(150):
            flooder.publish(PREFIX + "cmd/session", b"end")
            flooder.publish(PREFIX + "cmd/privacy", b"resume")
        assert await watcher.until(lambda ms: health(ms).get("accepted", 0) >= 300, WAIT_S), health(
            watcher.messages
        )
    finally:
        stop.set()
        assert await asyncio.wait_for(task, WAIT_S) == 0
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("accepted command")]
    assert 2 <= len(said) <= 4, said  # one per kind, a second one each if the flood straddled 10 s
