"""Sessions close truthfully, seen as a dashboard sees them: the retained ``session`` on a real mosquitto.

The real agent (``hume-edge run``, command mode, synthetic face camera and espeak-ng voice, the emulator)
is started, a visit is begun with ``cmd/session start``, and once the visit has published a face summary:

1. SIGKILL (a crash, a power cut, the watchdog). The retained ``session`` is still ``start``: nothing
   could say otherwise. The agent is started again: within seconds the retained ``session`` is an ``end``
   with reason ``interrupted``, preceded by the visit's aggregate (of what was published before the kill)
   and followed by an ``idle`` message for each model that had published.
2. A second visit, then SIGTERM (a clean stop): the retained ``session`` is an ``end`` with reason
   ``shutdown``, and the retained ``status`` is ``stopped``.

Every sequenced message seen validates against the schema.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

from agent import config as config_mod
from agent.hume.types import HUME_MODELS
from agent.mqtt.outbox import Outbox
from agent.service import run_agent
from agent.visit.recorder import SESSION_STATE_PREFIX
from agent.visit.session import SessionEvent
from agent.visit.summary import Summarizer
from hume_emulator.emulator import Emulator
from tests.support.kiosk import agent_config, sequenced, validator
from tests.support.mosquitto import Broker, Received, Subscriber
from tests.support.processes import agent_process
from tests.support.toml_text import toml_text

pytestmark = pytest.mark.timeout(180)

DEVICE = "e2e-kiosk"
PREFIX = f"hume-edge/{DEVICE}/"
SUMMARY_TIMEOUT_S = 60.0
RECOVERY_TIMEOUT_S = 20.0
"""Start-up (imports, camera, links) plus the first drain; the end itself goes out on the first connect."""


def retained_session(broker: Broker, subscriber: Callable[..., Subscriber]) -> Dict[str, Any]:
    """What a dashboard connecting now reads: the retained ``session`` message."""
    sub = subscriber(broker, [PREFIX + "session"])
    assert sub.wait_for(bool, 10), "no retained session message"
    [msg] = sub.messages[:1]
    assert msg.retain
    return dict(msg.json())


async def start_agent(cfg_path: Path, tmp_path: Path, life: int) -> asyncio.subprocess.Process:
    env = dict(os.environ, RUNTIME_DIRECTORY=str(tmp_path / "run"))
    env.pop("HUME_API_KEY", None)
    log = tmp_path / f"agent-{life}.log"
    return await agent_process(cfg_path, cwd=tmp_path, log=log, env=env, new_session=False)


def of_session(msgs: List[Received], sid: str) -> List[Any]:
    """(topic suffix, payload) of the sequenced messages of one session, in arrival order."""
    return [(topic, payload) for topic, payload in sequenced(msgs) if payload.get("session") == sid]


async def begin_visit(sub: Subscriber, count_before: int) -> str:
    """``cmd/session start``; returns the session id once one of its face summaries is out.

    The command is repeated until the agent answers it on ``cmd/result``: the agent subscribes to
    ``cmd/#`` only after it has published ``online``, so the first one may reach no one.
    """
    for _ in range(20):
        sub.publish(PREFIX + "cmd/session", b"start")
        answered = await sub.until(
            lambda ms: any(m.topic == PREFIX + "cmd/result" for m in ms[count_before:]), 1.0
        )
        if answered:
            break

    def face_summary(msgs: List[Received]) -> Optional[str]:
        for m in msgs[count_before:]:
            if m.topic == PREFIX + "summary/face" and "faces" in m.json():
                return str(m.json()["session"])
        return None

    assert await sub.until(lambda ms: face_summary(ms) is not None, SUMMARY_TIMEOUT_S), "no face summary"
    sid = face_summary(sub.messages)
    assert sid is not None
    return sid


async def test_sigkill_mid_visit_is_ended_as_interrupted_and_sigterm_as_shutdown(
    emulator: Emulator, mosquitto: Broker, subscriber: Callable[..., Subscriber], tmp_path: Path
) -> None:
    (tmp_path / "run").mkdir()
    cfg_path = tmp_path / "config.toml"
    cfg = agent_config(emulator, mosquitto, tmp_path, session={"mode": "command"})
    cfg_path.write_text(toml_text(cfg), encoding="utf-8")
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    procs = []
    try:
        # Life 1: a visit, then SIGKILL.
        proc = await start_agent(cfg_path, tmp_path, 1)
        procs.append(proc)
        assert await sub.until(lambda ms: any(m.payload == b"online" for m in ms), 30), "agent not online"
        first = await begin_visit(sub, 0)
        proc.kill()
        await asyncio.wait_for(proc.wait(), 30)
        stuck = retained_session(mosquitto, subscriber)
        assert (stuck["session"], stuck["event"]) == (first, "start"), "the killed visit's start is retained"

        # Life 2: the restart ends it as interrupted, within seconds of starting.
        seen = len(sub.messages)
        restarted = time.monotonic()
        proc = await start_agent(cfg_path, tmp_path, 2)
        procs.append(proc)

        def ended(ms: List[Received]) -> bool:
            return any(p["schema"] == "hume-edge/idle/1" for _, p in of_session(ms[seen:], first))

        assert await sub.until(ended, RECOVERY_TIMEOUT_S), (tmp_path / "agent-2.log").read_text()[-3000:]
        print(f"\nrestart -> interrupted end and idle delivered: {time.monotonic() - restarted:.2f} s")
        end = retained_session(mosquitto, subscriber)
        assert (end["session"], end["event"], end["reason"]) == (first, "end", "interrupted")
        # First whatever the killed run had queued and not delivered (at-least-once: sent again), then the
        # end of the visit, decided by this run.
        tail = of_session(sub.messages[seen:], first)
        at = next(i for i, (topic, _) in enumerate(tail) if topic == "aggregate")
        assert all(p["schema"] == "hume-edge/summary/1" for _, p in tail[:at]), tail[:at]
        assert [(t, p["schema"], p["reason"]) for t, p in tail[at : at + 3]] == [
            ("aggregate", "hume-edge/aggregate/1", "interrupted"),
            ("session", "hume-edge/session/1", "interrupted"),
            ("summary/face", "hume-edge/idle/1", "interrupted"),
        ], tail[at:]
        aggregate = tail[at][1]
        assert aggregate["models"]["face"]["measurements"] >= 1, "the aggregate covers what was published"
        assert aggregate["models"]["face"]["top"], aggregate
        log2 = (tmp_path / "agent-2.log").read_text(errors="replace")
        assert f"session {first} was still open" in log2

        # Life 2 continued: a second visit, then a clean stop.
        second = await begin_visit(sub, len(sub.messages))
        assert second != first
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        end = retained_session(mosquitto, subscriber)
        assert (end["session"], end["event"], end["reason"]) == (second, "end", "shutdown")
        status = subscriber(mosquitto, [PREFIX + "status"])
        assert status.wait_for(bool, 10)
        assert status.messages[0].payload == b"stopped"
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()

    schema = validator()
    for _, payload in sequenced(sub.messages):
        schema.validate(payload)


async def test_left_open_sessions_end_before_the_next_starts_even_with_an_unreadable_checkpoint(
    emulator: Emulator,
    mosquitto: Broker,
    subscriber: Callable[..., Subscriber],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two sessions a killed run left open (one checkpoint readable, one damaged), ``always`` mode: both
    are ended as interrupted, in one go, before the new session starts; the damaged one without an
    aggregate's models, but with its end, so the retained ``session`` is never stuck."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    data = agent_config(
        emulator,
        mosquitto,
        tmp_path,
        session={"mode": "always"},
        camera={"source": "none"},
        microphone={"source": "none"},
    )
    cfg = config_mod.from_dict(data, environ={})
    killed = Summarizer(cfg.summary, DEVICE)
    killed.session_started(SessionEvent("start", "a" * 32, 0.0, "always"), 1_790_000_000.0)
    outbox = Outbox(cfg.outbox_path, cfg.outbox)
    state = {f"{SESSION_STATE_PREFIX}{'a' * 32}": killed.checkpoints(1_790_000_005.0)["a" * 32]}
    state[f"{SESSION_STATE_PREFIX}{'b' * 32}"] = '{"v": 1, "started": '  # cut short by the power cut
    outbox.put_many([], state=state)
    outbox.close()

    sub = subscriber(mosquitto, [PREFIX + "#"])
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_agent(cfg, stop))
    try:

        def new_session(ms: List[Received]) -> bool:
            return any(t == "session" and p["event"] == "start" for t, p in sequenced(ms))

        assert await sub.until(new_session, 30)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, timeout=30) == 0
    # By seq, as consumers are told to: with mqtt.replay = live_first, a message queued after the connect
    # (the new start, if the tick came late) may arrive before the backlog queued at start-up.
    msgs = sorted(sequenced(sub.messages), key=lambda tp: int(tp[1]["seq"]))
    schema = validator()
    for _, payload in msgs:
        schema.validate(payload)
    order = [
        (t, p["session"][:1], p.get("event") or p["schema"].split("/")[1], p.get("reason")) for t, p in msgs
    ]
    start = next(i for i, o in enumerate(order) if o[2] == "start")
    assert order[:start] == [
        ("aggregate", "a", "aggregate", "interrupted"),
        ("session", "a", "end", "interrupted"),
        ("aggregate", "b", "aggregate", "interrupted"),
        ("session", "b", "end", "interrupted"),
        *[(f"summary/{m}", "b", "idle", "interrupted") for m in HUME_MODELS],
    ], order
    damaged = msgs[2][1]
    assert (damaged["models"], damaged["duration_s"]) == ({}, 0.0)
    assert msgs[0][1]["duration_s"] == 5.0
    outbox = Outbox(cfg.outbox_path, cfg.outbox)
    assert outbox.state_items(SESSION_STATE_PREFIX) == {}, "both were cleared"
    outbox.close()
