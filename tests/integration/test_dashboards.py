"""What a dashboard shows, over a real mosquitto, with Home Assistant's templates rendered as HA renders them.

The second real-dashboard run (HA 2026.11, Node-RED 4.1) found the dashboard showing the past: a visitor
who left during a broker restart stayed on screen, a drained backlog stepped HA through two visits in
0.43 s, and a stopped kiosk said its parts were up. Here:

1. A late subscriber (1 s after the agent's reconnect, then HA's birth message) reads idle for every model
   within 2 s: the retained live state ``state/<model>``, re-published at every connect (the real agent).
2. A broker outage with two visits queued leaves HA's entities exactly where the live state put them while
   the backlog replays on ``summary/<model>`` and ``session`` (marked ``replay``). The mechanism does not
   depend on the outage's length (what was queued before the connect is the backlog; HA reads only the live
   state), so the 90 s outage of the report is a broker stop of a few seconds here.
3. One retained ``health`` per drained backlog (plus the connect's): 16 for a 19-message backlog before.
4. A broker restart within the fast-retry window logs one info line, not a warning and an error.
5. After SIGTERM no retained topic says ``online`` or active; the stop's words come last, in order. The
   same run's capture is checked against the topic table of ``docs/dashboards.md``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from agent.config import OutboxConfig, SummaryConfig
from agent.hume.types import HUME_MODELS, Measurement, Observation, Score
from agent.messages import OutMessage, encode
from agent.mqtt.discovery import config_topic
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from agent.ops.fleet import FleetFold
from agent.ops.parts import PARTS
from agent.visit.session import END, START, SessionEvent
from agent.visit.summary import Summarizer
from hume_emulator.emulator import Emulator
from tests.support.ha import Entities
from tests.support.kiosk import agent_config
from tests.support.mosquitto import Broker, Received, Subscriber, mqtt_config
from tests.support.processes import agent_process
from tests.support.tasks import running
from tests.support.toml_text import toml_text
from tests.support.waits import eventually

pytestmark = pytest.mark.timeout(180)

TIMEOUT_S = 20.0
DEVICE = "kiosk-1"
BASE = f"hume-edge/{DEVICE}"
MODELS = ("face", "prosody")
T0 = 1_790_000_000.0


def config_of(msgs: List[Received]) -> Optional[Dict[str, Any]]:
    """The latest discovery config a subscriber received (None: none yet)."""
    topic = config_topic("homeassistant", DEVICE)
    configs = [m for m in msgs if m.topic == topic and m.payload]
    return dict(configs[-1].json()) if configs else None


def visit(summ: Summarizer, sid: str, at: float) -> List[List[OutMessage]]:
    """A visit's batches as the service queues them: start, two windows of face and voice, the end."""
    wall = T0 + at
    batches = [summ.session_started(SessionEvent(START, sid, at, "presence"), wall)]
    for window, label in ((1, "Joy"), (2, "Concentration")):
        for model in MODELS:
            m = Measurement(
                (Score(label, 0.6 + 0.01 * window),), face_id="face_0@abc123" if model == "face" else None
            )
            summ.add(Observation(model, wall + window, (m,), session_id=sid))
        batches.append(summ.flush(wall + 5.0 * window))
    batches.append(summ.session_ended(SessionEvent(END, sid, at + 12, "absence"), wall + 12))
    return batches


def queue(pub: Publisher, batches: List[List[OutMessage]]) -> int:
    return sum(len(pub.enqueue_many(b)) for b in batches)


async def test_a_broker_outage_with_two_queued_visits_does_not_move_home_assistant(
    tmp_path: Path, mosquitto_factory: Callable[..., Broker], subscriber: Callable[..., Subscriber]
) -> None:
    broker = mosquitto_factory(persistence=True)
    # Home Assistant's client keeps its subscriptions across the broker restart (as HA resubscribes), so
    # whatever the agent publishes after it reaches HA, whoever reconnects first.
    ha = subscriber(broker, ["homeassistant/#", f"{BASE}/#"], persistent=True, client_id="home-assistant")
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    summ = Summarizer(SummaryConfig(window_s=5.0), DEVICE)
    pub = Publisher(mqtt_config(broker.host, broker.port), DEVICE, outbox, models=MODELS)
    async with running(pub):
        for topic, payload in summ.idle_at_start(MODELS, T0).items():  # as the agent does at start
            pub.set_state(topic, encode(payload))
        assert await eventually(lambda: pub.connected, TIMEOUT_S)
        queue(pub, visit(summ, "live-visit", 0.0))  # a visit HA watched live
        assert await eventually(lambda: pub.connected and outbox.depth == 0, TIMEOUT_S)
        assert await ha.until(lambda ms: any(m.topic == f"{BASE}/state/session" for m in ms), TIMEOUT_S)
        assert await eventually(lambda: config_of(ha.messages) is not None, TIMEOUT_S)
        config = config_of(ha.messages)
        assert config is not None
        live = Entities(config).take_all(ha.messages)
        assert live.history[f"{DEVICE}_face_emotion"] == [None, "joy", "concentration", None], (
            "the live visit"
        )
        before = live.states()
        assert before[f"{DEVICE}_session"] == "OFF"
        seen = len(ha.messages)

        broker.stop()  # the outage: two visits come and go while the broker is away
        queued = queue(pub, visit(summ, "queued-1", 100.0)) + queue(pub, visit(summ, "queued-2", 200.0))
        assert await eventually(lambda: not pub.connected, TIMEOUT_S)
        broker.start()

        def replayed(ms: List[Received]) -> int:
            return len(
                {
                    m.json()["seq"]
                    for m in ms[seen:]
                    if m.payload.startswith(b"{") and m.json().get("replay") is True
                }
            )

        assert await ha.until(lambda ms: replayed(ms) >= queued, TIMEOUT_S), (
            f"{replayed(ha.messages)}/{queued}"
        )
        assert await eventually(lambda: outbox.depth == 0, TIMEOUT_S)
    outbox.close()

    after = Entities(config).take_all(ha.messages)
    for key, history in after.history.items():
        moved = history[len(live.history[key]) :]
        if key == f"{DEVICE}_queue":  # the outbox's depth is live truth: the backlog, then empty, once
            assert len(moved) <= 2, moved
            assert moved[-1:] in ([], ["0"]), moved
            continue
        assert moved in ([], [before[key]]), f"{key} moved by the replay: {moved}"
    # The history still arrived, marked, for Node-RED and Grafana; the session end still landed.
    # (HA's client subscribes again after the broker restart: a retained copy may come twice; seq tells.)
    by_seq = {
        m.json()["seq"]: m.json() for m in ha.messages[seen:] if m.topic == f"{BASE}/session" and not m.retain
    }
    sessions = [by_seq[seq] for seq in sorted(by_seq)]
    assert [(s["session"], s["event"]) for s in sessions] == [
        ("queued-1", "start"),
        ("queued-1", "end"),
        ("queued-2", "start"),
        ("queued-2", "end"),
    ]
    assert all(s["replay"] is True for s in sessions)
    retained = subscriber(broker, [f"{BASE}/session", f"{BASE}/state/session", f"{BASE}/state/face"])
    assert await retained.until(lambda ms: len(ms) >= 3, TIMEOUT_S)
    now = {m.topic: m.json() for m in retained.messages}
    assert (now[f"{BASE}/session"]["session"], now[f"{BASE}/session"]["event"]) == ("queued-2", "end")
    assert (now[f"{BASE}/state/session"]["session"], now[f"{BASE}/state/session"]["event"]) == (
        "queued-2",
        "end",
    )
    assert "replay" not in now[f"{BASE}/state/session"], "live state is never a replayed message"
    assert now[f"{BASE}/state/face"]["schema"] == "hume-edge/idle/1"


def healths(msgs: List[Received]) -> List[int]:
    return [int(json.loads(m.payload)["outbox"]["depth"]) for m in msgs if m.topic == f"{BASE}/health"]


async def test_a_drained_backlog_publishes_one_health_not_one_per_batch(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    """19 messages queued offline, drained under a 40/s cap (4-message bursts): the connect's health and
    one when the queue is empty; HA records each as a queue-depth state."""
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    outbox.put_many([("summary/face", {"i": i}, False) for i in range(19)])
    sub = subscriber(mosquitto, [f"{BASE}/health", f"{BASE}/summary/#"])
    cfg = mqtt_config(mosquitto.host, mosquitto.port, max_publish_rate_per_s=40.0, health_interval_s=600.0)
    async with running(Publisher(cfg, DEVICE, outbox, models=MODELS)):
        assert await sub.until(lambda ms: bool(healths(ms)) and healths(ms)[-1] == 0, TIMEOUT_S), healths(
            sub.messages
        )
        assert sum(1 for m in sub.messages if "/summary/" in m.topic) == 19
        await asyncio.sleep(1.0)  # scenario: the acknowledgements of the last batch settle; no health follows
        assert healths(sub.messages) == [19, 0], "one health when the backlog is gone, not one per batch"
    outbox.close()


async def test_a_summary_goes_out_before_its_live_state_copy(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    """The retained copy ``state/<model>`` (and ``state/session``) follows the message it copies: it was
    published, and given a rate token, inside the enqueue, so every summary went out behind its own
    dashboard copy (benchmark 4's publish leg)."""
    sub = subscriber(mosquitto, [f"{BASE}/summary/#", f"{BASE}/session", f"{BASE}/state/#"])
    assert await sub.until(lambda _ms: sub.subscribed.is_set(), TIMEOUT_S)
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    summ = Summarizer(SummaryConfig(window_s=5.0), DEVICE)
    cfg = mqtt_config(mosquitto.host, mosquitto.port, max_publish_rate_per_s=1000.0)  # no token waits
    pub = Publisher(cfg, DEVICE, outbox, models=MODELS)
    async with running(pub):
        assert await eventually(lambda: pub.connected, TIMEOUT_S)
        copies = 0
        for batch in visit(summ, "one-visit", 0.0):  # one flush at a time, as the service's ticks queue them
            pub.enqueue_many(batch)
            copies += sum(1 for m in batch if m.state is not None)

            def all_copies(ms: List[Received], want: int = copies) -> bool:
                return len([m for m in ms if "/state/" in m.topic]) >= want

            assert await sub.until(all_copies, TIMEOUT_S)
    outbox.close()
    order = [(m.topic.split("/")[2], int(m.json()["seq"])) for m in sub.messages if m.payload]
    for kind, seq in order:
        if kind == "state":
            first = next(k for k, s in order if s == seq)
            assert first != "state", f"the live-state copy of seq {seq} went out before its message: {order}"


async def test_a_broker_restart_logs_one_info_line(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.mqtt")
    watch = subscriber(mosquitto, [f"{BASE}/status"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    pub = Publisher(mqtt_config(mosquitto.host, mosquitto.port), DEVICE, outbox, models=MODELS)
    async with running(pub):
        assert await eventually(lambda: pub.connected, TIMEOUT_S)
        caplog.clear()
        mosquitto.stop()  # not persistent: the retained "online" goes with it
        assert await eventually(lambda: not pub.connected, TIMEOUT_S)
        await asyncio.sleep(1.5)  # scenario: the broker is down long enough for refused retries
        watch.messages.clear()
        mosquitto.start()
        assert await watch.until(lambda ms: any(m.payload == b"online" for m in ms), TIMEOUT_S)
    outbox.close()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("agent.mqtt")]
    loud = [
        (level, text) for level, text in said if level >= logging.INFO and "disconnected from" not in text
    ]
    assert len(loud) == 1, loud
    level, text = loud[0]
    assert level == logging.INFO
    assert "lost the MQTT connection" in text
    assert "reconnected" in text
    print(f"\nthe one line of a broker restart: {text}")
    assert any(level == logging.DEBUG and "not back yet" in text for level, text in said), "retries at debug"


async def start_agent(cfg_path: Path, tmp_path: Path, life: int) -> asyncio.subprocess.Process:
    env = dict(os.environ, RUNTIME_DIRECTORY=str(tmp_path / "run"))
    env.pop("HUME_API_KEY", None)
    return await agent_process(
        cfg_path, cwd=tmp_path, log=tmp_path / f"agent-{life}.log", env=env, new_session=False
    )


async def begin_visit(sub: Subscriber, prefix: str) -> None:
    """``cmd/session start`` until the agent answers it (it subscribes to ``cmd/#`` once it is online)."""
    for _ in range(20):
        count = len(sub.messages)
        sub.publish(prefix + "cmd/session", b"start")
        if await sub.until(lambda ms, n=count: any(m.topic == prefix + "cmd/result" for m in ms[n:]), 1.0):
            return
    raise AssertionError("the agent never answered cmd/session start")


async def test_a_late_subscriber_after_the_agents_reconnect_reads_idle_for_every_model(
    emulator: Emulator,
    mosquitto_factory: Callable[..., Broker],
    subscriber: Callable[..., Subscriber],
    tmp_path: Path,
) -> None:
    """The report's first defect with the real agent: a visit ends while the broker restarts; the agent is
    back first and drains; Home Assistant subscribes 1 s later and sends its birth message. It must read
    idle for every model (not the last visitor) within 2 s."""
    broker = mosquitto_factory(persistence=True)  # as a real broker: retained messages survive its restart
    (tmp_path / "run").mkdir()
    cfg_path = tmp_path / "config.toml"
    data = agent_config(
        emulator,
        broker,
        tmp_path,
        session={"mode": "command", "max_session_s": 10.0},
        microphone={"source": "none"},
        hume={"models": ["face", "prosody"]},
    )
    data["device_id"] = DEVICE
    cfg_path.write_text(toml_text(data), encoding="utf-8")
    prefix = f"hume-edge/{DEVICE}/"
    sub = subscriber(broker, [prefix + "#"])
    proc = await start_agent(cfg_path, tmp_path, 1)
    log = tmp_path / "agent-1.log"
    try:
        assert await sub.until(lambda ms: any(m.payload == b"online" for m in ms), 30), "agent not online"
        await begin_visit(sub, prefix)
        assert await sub.until(
            lambda ms: any(m.topic == prefix + "state/face" and b'"faces"' in m.payload for m in ms), 60
        ), "no face reading"
        broker.stop()
        ended = await eventually(lambda: "ended (max_duration)" in log.read_text(errors="replace"), 30)
        assert ended, log.read_text(errors="replace")[-2000:]
        broker.start()
        back = await eventually(lambda: "reconnected" in log.read_text(errors="replace"), 30)
        assert back, log.read_text(errors="replace")[-2000:]
        await asyncio.sleep(1.0)  # scenario: Home Assistant subscribes 1 s after the agent is back
        ha = subscriber(broker, ["homeassistant/#", prefix + "#"])
        ha.publish("homeassistant/status", b"online")  # HA's birth message
        subscribed = time.monotonic()

        def idle_everywhere(ms: List[Received]) -> bool:
            config = config_of(ms)
            if config is None:
                return False
            states = Entities(config).take_all(ms).states()
            latest = {m.topic: m for m in ms}
            return (
                all(
                    (latest.get(f"{prefix}state/{model}") is not None)
                    and latest[f"{prefix}state/{model}"].json()["schema"] == "hume-edge/idle/1"
                    and states[f"{DEVICE}_{model}_emotion"] is None
                    and states[f"{DEVICE}_{model}_score"] is None
                    for model in ("face", "prosody")
                )
                and states[f"{DEVICE}_session"] == "OFF"
            )

        assert await ha.until(idle_everywhere, 2.0), [(m.topic, m.payload[:80]) for m in ha.messages]
        print(
            "\nHA subscribed 1 s after the reconnect: idle for every model "
            f"{time.monotonic() - subscribed:.2f} s later"
        )
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text(errors="replace")
    mqtt_lines = [line for line in text.splitlines() if "agent.mqtt" in line and "MQTT" in line]
    assert not any("WARNING" in line or "ERROR" in line for line in mqtt_lines), mqtt_lines


DOCS = Path(__file__).resolve().parents[2] / "docs" / "dashboards.md"


def documented_topics() -> List[Tuple[str, bool]]:
    """(topic regex, retained) of each row of the docs' topic table (``<model>``: a model the agent can run,
    ``<node>``: one level)."""
    text = DOCS.read_text(encoding="utf-8")
    table = text[text.index("| topic | retained |") :].split("\n\n")[0].splitlines()[2:]
    rows = []
    for row in table:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for name in re.findall(r"`([^`]+)`", cells[0]):
            pattern = (
                re.escape(name)
                .replace(re.escape("<model>"), "(" + "|".join(HUME_MODELS) + ")")
                .replace(re.escape("<node>"), "[^/]+")
            )
            rows.append((pattern, {"yes": True, "no": False}[cells[1]]))
    return rows


def said_online_or_active(payload: bytes) -> List[str]:
    """Where a retained payload says ``online`` or active: the word itself, or a JSON value ``"online"`` /
    ``"active"`` / ``"active": true`` anywhere in it (a template that merely mentions the word is not a
    state)."""
    if payload.strip() in (b"online", b"active"):
        return [payload.decode()]
    try:
        body = json.loads(payload)
    except ValueError:
        return []
    found: List[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k == "active" and v is True:
                    found.append(f"{path}.{k}")
                walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif value in ("online", "active"):
            found.append(f"{path} = {value}")

    walk(body, "")
    return found


async def test_after_sigterm_no_retained_topic_says_online_or_active(
    emulator: Emulator, mosquitto: Broker, subscriber: Callable[..., Subscriber], tmp_path: Path
) -> None:
    """The report's third defect: at SIGTERM the parts said offline, then the session end and the notice
    withdrawal re-published them online, and the retained health kept ``session.active: true``. Now the
    visit's end, then the parts (stopped), the notice (inactive), the health (inactive) and the status
    (stopped), in that order, and every retained topic says so afterwards."""
    (tmp_path / "run").mkdir()
    cfg_path = tmp_path / "config.toml"
    data = agent_config(
        emulator, mosquitto, tmp_path, session={"mode": "command"}, microphone={"source": "none"}
    )
    data["device_id"] = DEVICE
    cfg_path.write_text(toml_text(data), encoding="utf-8")
    prefix = f"hume-edge/{DEVICE}/"
    sub = subscriber(mosquitto, [prefix + "#"])
    proc = await start_agent(cfg_path, tmp_path, 1)
    try:
        assert await sub.until(lambda ms: any(m.payload == b"online" for m in ms), 30), "agent not online"
        await begin_visit(sub, prefix)
        assert await sub.until(lambda ms: any(m.topic == prefix + "summary/face" for m in ms), 60), (
            "no summary"
        )
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert await sub.until(lambda ms: ms[-1].topic == prefix + "status" and ms[-1].payload == b"stopped", 10)

    # In that order, after everything else.
    order = [(m.topic[len(prefix) :], m.payload) for m in sub.messages]

    def last(pred: Callable[[str, bytes], bool]) -> int:
        return max(i for i, (t, p) in enumerate(order) if pred(t, p))

    end = last(lambda t, p: t == "session" and json.loads(p)["event"] == "end")
    parts = [last(lambda t, p, part=part: t == f"status/{part}" and p == b"stopped") for part in PARTS]
    notice = last(lambda t, p: t == "notice" and json.loads(p)["active"] is False)
    health = last(lambda t, p: t == "health")
    status = last(lambda t, p: t == "status" and p == b"stopped")
    assert end < min(parts), order[end:]
    assert max(parts) < notice < health < status, order[end:]
    assert not any(t.startswith("status/") and p != b"stopped" for t, p in order[min(parts) :])

    # What anyone connecting now reads.
    fresh = subscriber(mosquitto, [prefix + "#", "homeassistant/#"])
    assert await fresh.until(lambda ms: any(m.topic == prefix + "health" for m in ms), 10)
    await asyncio.sleep(0.5)  # polling: the broker sends every retained message at once; let them all land
    retained = {m.topic: m.payload for m in fresh.messages if m.retain}
    assert {f"{prefix}status/{part}" for part in PARTS} <= set(retained)
    assert {prefix + "state/face", prefix + "state/session", prefix + "notice"} <= set(retained)
    wrong = {t: said_online_or_active(p) for t, p in retained.items() if said_online_or_active(p)}
    assert not wrong, wrong
    assert json.loads(retained[prefix + "state/face"])["schema"] == "hume-edge/idle/1"
    health_now = json.loads(retained[prefix + "health"])
    assert health_now["session"]["active"] is False
    assert health_now["privacy"]["notice_active"] is False
    # The docs' table is what the agent sends: every topic seen is in it, with its retained flag, and
    # every row was seen.
    rows = documented_topics()
    inbound = re.compile(re.escape(prefix) + r"cmd/(?!result$)")  # commands: the test's own, in the README
    seen = {m.topic for m in sub.messages + fresh.messages if not inbound.match(m.topic)}
    for topic in seen:
        name = topic[len(prefix) :] if topic.startswith(prefix) else topic
        matched = [retain for pattern, retain in rows if re.fullmatch(pattern, name)]
        assert len(matched) == 1, f"{name}: in {len(matched)} rows of {DOCS.name}'s topic table"
        assert matched[0] == (topic in retained), (
            f"{name}: retained is {topic in retained}, not as documented"
        )
    for pattern, _ in rows:
        names = {t[len(prefix) :] if t.startswith(prefix) else t for t in seen}
        assert any(re.fullmatch(pattern, n) for n in names), f"documented {pattern} never seen"
    # hume-edge fleet, which printed "stopped ... active", reads the same retained topics.
    fold = FleetFold("hume-edge")
    for topic, payload in retained.items():
        fold.receive(topic, payload)
    [row] = fold.report().kiosks
    assert (row.state, row.health.session_active) == ("stopped", False)
