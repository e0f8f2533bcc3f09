"""A script with a broker login cannot hold the kiosk paused beyond ``cmd/privacy``'s share of an hour (#31).

The whole agent, a real mosquitto, the v0 emulator. ``cmd/privacy`` used to be limited by a token bucket
(6 an hour, starting full, refilling while a pause ran) and a pause sent while paused restarted the maximum,
so a script re-sending ``pause`` just before each maximum held the kiosk paused for about the whole first
hour. Now the pause rule (``agent.privacy.state.PauseControl``) counts pause starts in a sliding hour and a
pause while paused changes nothing: at most ``commands.privacy_per_hour`` (6) x ``privacy.max_pause_s``
(300 s) = 1800 s of any hour, the first included.

An hour in about a minute: the agent's rule clock (``run_agent(monotonic=...)``) runs 60 times faster than
real time; MQTT and the emulator keep the real one. The script is as strong as a script can be: it reads
the agent's pause state in-process and sends ``cmd/privacy pause`` the moment a pause ends, again whenever
a pause has under 60 s left (to extend it, as the old rule allowed; again every 30 s), and every 30 s
while refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from agent.hub import TICK_S, Agent
from agent.privacy.state import PauseEvent
from agent.service import run_agent
from tests.integration.test_command_guard import PREFIX, agent_config, results
from tests.support.mosquitto import Received, Subscriber
from tests.support.waits import eventually

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

SPEEDUP = 60.0
"""Rule seconds per real second: the hour takes a minute."""
HOUR_S = 3600.0
MAX_PAUSE_S = 300.0
PER_HOUR = 6
LATE_S = 2 * TICK_S * SPEEDUP
"""How late the tick loop may notice a pause's end, in rule seconds: it runs every TICK_S (0.5 s) of real
time, 30 s here (1 s in real life); twice that under a loaded machine."""


class FastClock:
    """``time.monotonic``, running ``SPEEDUP`` times faster from the moment it is made."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def __call__(self) -> float:
        return self._t0 + (time.monotonic() - self._t0) * SPEEDUP

    def real_s(self, rule_s: float) -> float:
        return max(0.0, rule_s / SPEEDUP)


def record_pauses(agent: Agent, log: List[PauseEvent], woken: asyncio.Event) -> None:
    """Record every pause event the agent's state machine yields (with its rule time); wake on an end."""
    control = agent.desk.pause
    for name in ("pause", "resume", "tick"):
        real: Callable[..., List[PauseEvent]] = getattr(control, name)

        def recorded(*args: Any, _real: Callable[..., List[PauseEvent]] = real) -> List[PauseEvent]:
            events = _real(*args)
            log.extend(events)
            if any(e.kind == "resumed" for e in events):
                woken.set()
            return events

        setattr(control, name, recorded)


async def nap(woken: asyncio.Event, real_s: float) -> None:
    """The script waits until a pause ends (``woken``) or ``real_s`` pass, whichever comes first."""
    woken.clear()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(woken.wait(), real_s)


def paused_spans(log: List[PauseEvent], until: float) -> List[Tuple[float, float]]:
    spans: List[Tuple[float, float]] = []
    began: Optional[float] = None
    for ev in log:
        if ev.kind == "paused":
            began = ev.at
        elif began is not None:
            spans.append((began, ev.at))
            began = None
    if began is not None:
        spans.append((began, until))
    return spans


def privacy_health(msgs: List[Received]) -> Dict[str, Any]:
    bodies = [m.json() for m in msgs if m.topic == PREFIX + "health"]
    return bodies[-1].get("privacy") or {} if bodies else {}


async def test_an_mqtt_script_cannot_hold_the_kiosk_paused_beyond_its_share_of_the_first_hour(
    emulator: Any, mosquitto: Any, subscriber: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    assert sub.connected.wait(10)
    cfg = agent_config(emulator, mosquitto, tmp_path, privacy_per_hour=PER_HOUR, replies_per_s=100.0)
    assert cfg.privacy.max_pause_s == MAX_PAUSE_S
    clock = FastClock()
    log: List[PauseEvent] = []
    woken = asyncio.Event()
    agents: List[Agent] = []
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_agent(cfg, stop, on_agent=agents.append, monotonic=clock))
    try:
        assert await eventually(lambda: bool(agents), 10)
        agent = agents[0]
        record_pauses(agent, log, woken)
        assert await sub.until(lambda ms: bool(privacy_health(ms)), 30), "the agent never published health"
        start = clock()
        end = start + HOUR_S + 2 * LATE_S
        last_sent, ended_at_send = float("-inf"), 0
        while clock() < end:
            now = clock()
            left = agent.desk.pause.remaining_s(now)
            if left is not None and left >= 60.0:  # paused for a while yet: wait to extend it, or its end
                await nap(woken, clock.real_s(left - 60.0))
                continue
            ended = sum(1 for e in log if e.kind == "resumed")
            if now - last_sent < 30.0 and ended == ended_at_send:  # every 30 s, or at once when one ended
                await nap(woken, clock.real_s(last_sent + 30.0 - now))
                continue
            answered = len(results(sub))
            sub.publish(PREFIX + "cmd/privacy", b"pause")
            last_sent, ended_at_send = now, ended
            assert await sub.until(lambda ms, n=answered: len(results(sub)) > n, 10), "cmd/privacy unanswered"
        first_hour = [(max(a, start), min(b, start + HOUR_S)) for a, b in paused_spans(log, clock())]
        paused_s = sum(max(0.0, b - a) for a, b in first_hour)
        starts = [e.at for e in log if e.kind == "paused" and e.at < start + HOUR_S]
        longest_s = max(b - a for a, b in paused_spans(log, clock()))
        replies = results(sub)
        refused = [r for r in replies if not r["ok"]]
        counted = await sub.until(
            lambda ms: privacy_health(ms).get("mqtt_pauses_refused", -1) >= len(refused) > 0, 15
        )
    finally:
        stop.set()
        code = await asyncio.wait_for(task, timeout=30)
    assert code == 0
    share_s = PER_HOUR * MAX_PAUSE_S  # 1800 s: half of the hour
    assert paused_s <= share_s + PER_HOUR * LATE_S, (
        f"paused {paused_s:.0f} s of the first hour ({len(starts)} starts, the longest pause "
        f"{longest_s:.0f} s); the rule allows {PER_HOUR} x {MAX_PAUSE_S:g} s = {share_s:g} s"
    )
    assert len(starts) <= PER_HOUR, starts
    assert longest_s <= MAX_PAUSE_S + LATE_S, "a pause was extended past privacy.max_pause_s"
    assert paused_s >= share_s - PER_HOUR * 60.0, "the script should have had its whole share"
    assert refused, "the script was never refused"
    assert all(r["command"] == "privacy" and r["action"] == "pause" for r in refused), refused
    assert "(commands.privacy_per_hour = 6); it can pause again in" in refused[0]["error"], refused[0]
    assert counted, ("every refusal is counted in health", len(refused), privacy_health(sub.messages))


async def test_replies_to_pause_resume_pause_sent_together_say_what_happened(
    emulator: Any, mosquitto: Any, subscriber: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#31's reply race: "pause, resume, pause" arriving before the agent's loop gets to them. With one
    pause an hour allowed, the second pause is refused by the pause rule; its reply must say so (it said ok
    when the commands were all vetted before the first was carried out). The agent's loop is held until
    its MQTT thread has handed over all three, as when they arrive in one read."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    assert sub.connected.wait(10)
    cfg = agent_config(emulator, mosquitto, tmp_path, privacy_per_hour=1, replies_per_s=100.0)
    log: List[PauseEvent] = []
    agents: List[Agent] = []
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_agent(cfg, stop, on_agent=agents.append))
    try:
        assert await eventually(lambda: bool(agents), 10)
        agent = agents[0]
        record_pauses(agent, log, asyncio.Event())
        assert await sub.until(lambda ms: bool(privacy_health(ms)), 30), "the agent never published health"
        bridge = agent.publisher._bridge
        assert bridge is not None
        handed = threading.Event()
        commands: List[str] = []
        hand = bridge._hand

        def counting(fn: Callable[..., None], *args: Any) -> None:
            hand(fn, *args)
            if len(args) > 1 and args[1] == PREFIX + "cmd/privacy":
                commands.append(args[1])
                if len(commands) == 3:
                    handed.set()

        monkeypatch.setattr(bridge, "_hand", counting)
        for action in (b"pause", b"resume", b"pause"):
            sub.publish(PREFIX + "cmd/privacy", action)
        assert handed.wait(15), "the agent never received the three commands"  # holds the loop meanwhile
        assert await sub.until(lambda ms: len(results(sub)) >= 3, 15), results(sub)
        replies = results(sub)
        started = [e for e in log if e.kind == "paused"]
        assert [(r["action"], r["ok"]) for r in replies] == [
            ("pause", True),
            ("resume", True),
            ("pause", False),
        ]
        assert sum(r["ok"] for r in replies if r["action"] == "pause") == len(started) == 1, (replies, log)
        assert "(commands.privacy_per_hour = 1)" in replies[2]["error"], replies[2]
        assert agent.desk.pause.refused["mqtt"] == 1, "the refusal is counted, once"
        assert not agent.desk.paused
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
