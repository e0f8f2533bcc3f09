"""Within a broker's limits: Receive Maximum, a publish-rate cap, oversized messages; live data first.

Real mosquitto 2.0.11: ``max_inflight_messages 10`` makes it announce Receive Maximum 10 in its MQTT 5
CONNACK, ``max_packet_size 2000`` a Maximum Packet Size of 2000 (and it disconnects a client that sends a
bigger packet: "disconnected due to oversize packet").
"""

from __future__ import annotations

import asyncio
import bisect
from pathlib import Path
from typing import Callable, List

import pytest

from agent.config import OutboxConfig
from agent.messages import OutMessage
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from tests.support.meter import InflightMeter
from tests.support.mosquitto import Broker, Received, Subscriber, mqtt_config
from tests.support.tasks import running
from tests.support.waits import eventually

TIMEOUT_S = 30.0
BASE = "hume-edge/kiosk1"


def seqs(messages: List[Received]) -> List[int]:
    return [int(m.json()["seq"]) for m in messages]


async def test_never_more_in_flight_than_the_brokers_receive_maximum(
    tmp_path: Path, mosquitto_factory: Callable[..., Broker], subscriber: Callable[..., Subscriber]
) -> None:
    broker = mosquitto_factory(extra=["max_inflight_messages 10"])
    sub = subscriber(broker, [f"{BASE}/summary/#"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    sent = [outbox.put("summary/face", {"i": i}) for i in range(300)]
    with InflightMeter(broker.host, broker.port) as meter:
        meter.delay(0.02)  # PUBACKs come late: a window of 100 would pile up here
        pub = Publisher(mqtt_config(meter.host, meter.port), "kiosk1", outbox)
        assert pub.cfg.inflight_window == 100
        async with running(pub):
            assert await sub.until(lambda ms: len(ms) >= len(sent), TIMEOUT_S)
            assert pub.status().window == 10
    assert sorted(set(seqs(sub.messages))) == sent
    assert meter.publishes >= len(sent)
    assert 5 <= meter.max_inflight <= 10, meter.max_inflight
    outbox.close()


async def test_a_backlog_is_replayed_within_the_rate_cap(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    rate_per_s, n = 1000.0, 5000
    sub = subscriber(mosquitto, [f"{BASE}/summary/#"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    outbox.put_many([("summary/face", {"i": i}, False) for i in range(n)])
    cfg = mqtt_config(mosquitto.host, mosquitto.port, max_publish_rate_per_s=rate_per_s)
    pub = Publisher(cfg, "kiosk1", outbox)
    async with running(pub):
        assert await sub.until(lambda ms: len(ms) >= n, TIMEOUT_S)
    times = [m.at for m in sub.messages]
    burst = rate_per_s / 10
    # Upper bounds only (a slow machine can only be slower): the whole replay took at least what the cap
    # allows, and no one-second span at the subscriber saw more than a second's worth plus the burst
    # (10 % slack for the subscriber's thread receiving a clump late).
    assert times[-1] - times[0] >= (n - burst) / rate_per_s * 0.95
    most = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
    assert most <= (rate_per_s + burst) * 1.1, most
    assert all(m.json().get("replay") is True for m in sub.messages)
    outbox.close()


@pytest.mark.parametrize(
    ("protocol", "cap_bytes"),
    [("5", 131_072), ("3.1.1", 2000)],
    ids=["broker's Maximum Packet Size", "configured cap"],
)
async def test_an_oversized_message_is_dropped_counted_and_the_queue_drains(
    tmp_path: Path,
    mosquitto_factory: Callable[..., Broker],
    subscriber: Callable[..., Subscriber],
    protocol: str,
    cap_bytes: int,
) -> None:
    broker = mosquitto_factory(extra=["max_packet_size 2000"])
    sub = subscriber(broker, [f"{BASE}/summary/#"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    cfg = mqtt_config(broker.host, broker.port, protocol=protocol, max_message_bytes=cap_bytes)
    pub = Publisher(cfg, "kiosk1", outbox)
    small = [pub.enqueue(OutMessage("summary/face", {"i": i})) for i in range(5)]
    big = pub.enqueue(OutMessage("summary/face", {"pad": "x" * 5000}))
    small += [pub.enqueue(OutMessage("summary/face", {"i": i})) for i in range(5, 10)]
    async with running(pub):
        assert await sub.until(lambda ms: len(ms) >= len(small), TIMEOUT_S)
        assert await eventually(lambda: outbox.stats()["depth"] == 0, TIMEOUT_S)
        health = pub.health_snapshot()
        assert health.mqtt.oversized == 1
        assert health.outbox.dropped["oversize"] == 1
        assert health.mqtt.max_packet_bytes == 2000
        assert pub.status().connects == 1  # never disconnected for it
    assert seqs(sub.messages) == small
    assert big not in seqs(sub.messages)
    outbox.close()


async def test_live_data_first_after_an_outage_and_every_backlog_seq_arrives(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    """An outage's backlog (queued while the broker is down) and a live summary made after reconnecting."""
    loop = asyncio.get_running_loop()
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    cfg = mqtt_config(mosquitto.host, mosquitto.port, max_publish_rate_per_s=500.0)
    pub = Publisher(cfg, "kiosk1", outbox)
    async with running(pub):
        assert await eventually(lambda: pub.status().state == "connected", TIMEOUT_S)
        await loop.run_in_executor(None, mosquitto.stop)
        assert await eventually(lambda: pub.status().state != "connected", TIMEOUT_S)
        # Five minutes of a busy kiosk, cheaply: the backlog is queued at once while the broker is down.
        backlog = pub.enqueue_many([OutMessage("session", {"event": "start"}, retain=True)])
        backlog += pub.enqueue_many([OutMessage("summary/face", {"i": i}) for i in range(2000)])
        await loop.run_in_executor(None, mosquitto.start)
        sub = subscriber(mosquitto, [f"{BASE}/summary/#", f"{BASE}/session"])
        assert await eventually(lambda: pub.status().state == "connected", TIMEOUT_S)
        live = pub.enqueue(OutMessage("summary/face", {"live": True}))
        live_session = pub.enqueue(OutMessage("session", {"event": "end"}, retain=True))
        assert await sub.until(lambda ms: {live, *backlog} <= set(seqs(ms)), TIMEOUT_S)
        assert await eventually(lambda: outbox.stats()["depth"] == 0, TIMEOUT_S)
    arrived = seqs(sub.messages)
    assert arrived.index(live) < arrived.index(backlog[-1]), "the live summary waited for the backlog"
    first = {int(m.json()["seq"]): m.json() for m in reversed(sub.messages)}
    assert "replay" not in first[live]
    assert all(first[s].get("replay") is True for s in backlog)
    # The replayed retained "start" came after the live "end": the broker must still hold the newest.
    late = subscriber(mosquitto, [f"{BASE}/session"])
    assert await late.until(lambda ms: len(ms) >= 1, TIMEOUT_S)
    assert int(late.messages[0].json()["seq"]) == live_session
    outbox.close()
