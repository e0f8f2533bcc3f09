"""Link faults against a real mosquitto: a broker outage, and a link frozen silently mid-drain."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Callable, Dict, List, Set

import pytest

from agent.config import OutboxConfig
from agent.messages import OutMessage
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from tests.support.mosquitto import Broker, Received, Subscriber, mqtt_config
from tests.support.proxy import Proxy
from tests.support.tasks import running
from tests.support.waits import eventually

BASE = "hume-edge/kiosk1"
MODELS = ("face", "prosody", "burst")
DELIVERY_TIMEOUT_S = 60.0


def by_topic_first_seen(messages: List[Received]) -> Dict[str, List[int]]:
    """Seqs per topic and class (live, replayed) in arrival order, each counted once (at-least-once may
    repeat one, same seq). docs/mqtt.md's order promise with ``mqtt.replay = live_first``: each class in
    order.
    """
    seen: Set[int] = set()
    out: Dict[str, List[int]] = {}
    for m in messages:
        body = m.json()
        seq = int(body["seq"])
        if seq not in seen:
            seen.add(seq)
            out.setdefault(f"{m.topic} replay={body.get('replay', False)}", []).append(seq)
    return out


def distinct(messages: List[Received]) -> int:
    """Messages received, duplicates counted once (each payload carries its own seq)."""
    return len({m.payload for m in messages})


def assert_complete_and_ordered(sub: Subscriber, sent: List[int]) -> None:
    per_topic = by_topic_first_seen(sub.messages)
    received = sorted(s for seqs in per_topic.values() for s in seqs)
    assert received == sorted(sent), f"missing: {sorted(set(sent) - set(received))[:20]}"
    for topic, seqs in per_topic.items():
        assert seqs == sorted(seqs), f"out of order on {topic}"


async def produce(pub: Publisher, sent: List[int], stop: asyncio.Event, period_s: float) -> None:
    i = 0
    while not stop.is_set():
        sent.append(pub.enqueue(OutMessage(f"summary/{MODELS[i % len(MODELS)]}", {"i": i, "top": []})))
        i += 1
        await asyncio.sleep(period_s)  # scenario: a steady producer


async def outage(
    tmp_path: Path,
    mosquitto_factory: Callable[..., Broker],
    subscriber: Callable[..., Subscriber],
    outage_s: float,
) -> None:
    broker = mosquitto_factory(persistence=True)  # keeps the dashboard's session across the restart
    sub = subscriber(broker, [f"{BASE}/summary/#"], client_id="dashboard", persistent=True)
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    pub = Publisher(mqtt_config(broker.host, broker.port, reconnect_max_s=1.0), "kiosk1", outbox)
    loop = asyncio.get_running_loop()
    sent: List[int] = []
    stop = asyncio.Event()
    async with running(pub):
        producer = asyncio.ensure_future(produce(pub, sent, stop, 0.02))
        await asyncio.sleep(1.0)  # scenario: a second of normal traffic before the outage
        await loop.run_in_executor(None, broker.stop)
        await asyncio.sleep(outage_s)  # scenario: the outage's length
        assert outbox.stats()["depth"] > 0  # summaries kept coming and waited
        await loop.run_in_executor(None, broker.start)
        await asyncio.sleep(1.0)  # scenario: a second of traffic after the outage
        stop.set()
        await asyncio.wait_for(producer, 5)
        assert await sub.until(lambda ms: distinct(ms) >= len(sent), DELIVERY_TIMEOUT_S)
        assert await eventually(lambda: outbox.stats()["depth"] == 0, DELIVERY_TIMEOUT_S)
    assert_complete_and_ordered(sub, sent)
    outbox.close()


async def test_broker_restart_loses_nothing(
    tmp_path: Path, mosquitto_factory: Callable[..., Broker], subscriber: Callable[..., Subscriber]
) -> None:
    await outage(tmp_path, mosquitto_factory, subscriber, outage_s=3.0)


@pytest.mark.slow
async def test_broker_down_30_s_loses_nothing(
    tmp_path: Path, mosquitto_factory: Callable[..., Broker], subscriber: Callable[..., Subscriber]
) -> None:
    await outage(tmp_path, mosquitto_factory, subscriber, outage_s=30.0)


def queued_seqs(path: Path) -> Set[int]:
    """What the outbox file holds, read through a second connection as another process would."""
    db = sqlite3.connect(str(path))
    try:
        return {int(seq) for (seq,) in db.execute("SELECT seq FROM messages")}
    finally:
        db.close()


async def test_frozen_link_mid_drain_is_noticed_and_nothing_is_lost(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber], caplog: pytest.LogCaptureFixture
) -> None:
    sub = subscriber(mosquitto, [f"{BASE}/summary/#"])
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path, OutboxConfig())
    caplog.set_level(logging.INFO, logger="agent.mqtt")
    with Proxy(mosquitto.host, mosquitto.port) as proxy:
        cfg = mqtt_config(proxy.host, proxy.port, keepalive_s=2)
        pub = Publisher(cfg, "kiosk1", outbox)
        async with running(pub):
            assert await eventually(lambda: pub.status().state == "connected", 10)
            sent = [pub.enqueue(OutMessage(f"summary/{MODELS[i % 3]}", {"i": i})) for i in range(5_000)]
            assert await sub.until(lambda ms: len(ms) >= 200, 20)
            proxy.blackhole()
            assert len(sub.messages) < len(sent)  # frozen in the middle of the backlog
            assert await eventually(lambda: pub.status().state != "connected", 20)  # keepalive noticed
            assert proxy.discarded_bytes > 0
            # Nothing deleted before its PUBACK: whatever the dashboard has not seen is still queued.
            assert await eventually(
                lambda: set(sent) <= {int(m.json()["seq"]) for m in sub.messages} | queued_seqs(path), 10
            )
            assert outbox.stats()["inflight"] > 0  # sent into the void, unacknowledged, still there
            proxy.cut()
            proxy.resume()
            assert await eventually(lambda: outbox.stats()["depth"] == 0, DELIVERY_TIMEOUT_S)
            assert await sub.until(lambda ms: distinct(ms) >= len(sent), DELIVERY_TIMEOUT_S)
    assert any("lost the MQTT connection" in r.getMessage() for r in caplog.records)
    assert_complete_and_ordered(sub, sent)
    outbox.close()


@pytest.mark.parametrize(("protocol", "flaps"), [("5", False), ("3.1.1", True)])
async def test_a_short_blip_flaps_offline_only_without_a_will_delay(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], tmp_path: Path, protocol: str, flaps: bool
) -> None:
    sub = subscriber(mosquitto, [f"{BASE}/status"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    with Proxy(mosquitto.host, mosquitto.port) as proxy:
        cfg = mqtt_config(proxy.host, proxy.port, protocol=protocol, will_delay_s=15)
        pub = Publisher(cfg, "kiosk1", outbox)
        async with running(pub):
            assert await eventually(lambda: pub.status().connects == 1, 10)
            proxy.cut()  # the broker sees the connection drop without a DISCONNECT
            assert await eventually(lambda: pub.status().connects == 2, 10)
            assert await sub.until(lambda ms: len(sub.on("/status")) >= (3 if flaps else 2), 10)
            await asyncio.sleep(0.5)  # scenario: a connected spell after the reconnect, before the stop
        # "stopped" is published as the publisher stops: wait for it to reach the subscriber, before the
        # proxy closes (it cuts what it has not forwarded yet, and the broker would send the will).
        assert await sub.until(
            lambda ms: [m.payload for m in ms if m.topic.endswith("/status")][-1:] == [b"stopped"], 10
        )
    statuses = [m.payload for m in sub.on("/status")]
    assert (b"offline" in statuses) is flaps
    outbox.close()


async def test_the_will_still_says_offline_when_the_agent_stays_gone(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscriber(mosquitto, [f"{BASE}/status"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    with Proxy(mosquitto.host, mosquitto.port) as proxy:
        cfg = mqtt_config(proxy.host, proxy.port, keepalive_s=1, will_delay_s=1)
        pub = Publisher(cfg, "kiosk1", outbox)
        async with running(pub):
            assert await eventually(lambda: pub.status().connects == 1, 10)
            proxy.blackhole()  # the broker's keepalive ends the session, then the will delay runs out
            assert await sub.until(lambda ms: [m.payload for m in sub.on("/status")][-1:] == [b"offline"], 15)
            proxy.cut()
            proxy.resume()
            assert await sub.until(lambda ms: [m.payload for m in sub.on("/status")][-1:] == [b"online"], 15)
    outbox.close()


async def test_a_full_disk_during_the_drain_keeps_the_link_and_loses_nothing(
    tmp_path: Path,
    mosquitto: Broker,
    subscriber: Callable[..., Subscriber],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The outbox refuses its updates for a while (disk full): the MQTT link is not torn down, nothing is
    published twice because a mark could not be stored, and everything arrives once the disk has room."""
    sub = subscriber(mosquitto, [f"{BASE}/summary/#"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    pub = Publisher(mqtt_config(mosquitto.host, mosquitto.port), "kiosk1", outbox)
    real_settle = outbox.settle
    full = {"on": False, "refused": 0}

    def settle(acked: object, sent: object, refused: object = ()) -> int:
        if full["on"]:
            full["refused"] += 1
            raise sqlite3.OperationalError("database or disk is full")
        return real_settle(acked, sent, refused)  # type: ignore[arg-type]

    monkeypatch.setattr(outbox, "settle", settle)
    async with running(pub):
        assert await eventually(lambda: pub.status().state == "connected", 10)
        sent = [pub.enqueue(OutMessage(f"summary/{MODELS[i % 3]}", {"i": i})) for i in range(300)]
        full["on"] = True
        sent += [pub.enqueue(OutMessage(f"summary/{MODELS[i % 3]}", {"i": i})) for i in range(300, 400)]
        assert await eventually(lambda: full["refused"] >= 2, 10)  # retried, not given up
        full["on"] = False
        assert await eventually(lambda: outbox.stats()["depth"] == 0, 20)
        assert await sub.until(lambda ms: distinct(ms) >= len(sent), 20)
    assert pub.status().connects == 1, "a full disk tore the MQTT link down"
    assert not any("failed unexpectedly" in r.getMessage() for r in caplog.records)
    assert sum("cannot update the outbox" in r.getMessage() for r in caplog.records) == 1  # said once
    seqs = [int(m.json()["seq"]) for m in sub.messages]
    assert len(seqs) == len(set(seqs)), "a message was published twice"
    assert_complete_and_ordered(sub, sent)
    outbox.close()
