"""The agent against a clustered broker: RabbitMQ's MQTT plugin (MQTT 3.1.1 only), one node per module.

What differs from mosquitto, and what the agent does about it (README "A clustered broker: RabbitMQ"):
``mqtt.protocol = "3.1.1"`` (an MQTT 5 CONNECT gets no CONNACK), so no Receive Maximum, Maximum Packet Size,
message expiry or will delay; retained messages reach exact-topic subscribers only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable, List

import pytest

from agent.config import OutboxConfig
from agent.messages import OutMessage
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from tests.support.mosquitto import Subscriber, mqtt_config
from tests.support.proxy import Proxy
from tests.support.rabbitmq import RabbitMQ
from tests.support.tasks import running
from tests.support.waits import eventually

pytestmark = pytest.mark.slow
TIMEOUT_S = 30.0
BASE = "hume-edge/kiosk1"
MODELS = ("face", "prosody", "burst")


def seqs(sub: Subscriber) -> List[int]:
    return [int(m.json()["seq"]) for m in sub.messages if m.topic.startswith(f"{BASE}/summary/")]


def publisher(host: str, port: int, outbox: Outbox) -> Publisher:
    return Publisher(mqtt_config(host, port, protocol="3.1.1", reconnect_max_s=1.0), "kiosk1", outbox)


async def test_summaries_arrive_at_qos_1_in_order(
    tmp_path: Path, rabbitmq: RabbitMQ, subscriber: Callable[..., Subscriber]
) -> None:
    sub = subscriber(rabbitmq, [f"{BASE}/summary/#"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    pub = publisher(rabbitmq.host, rabbitmq.port, outbox)
    async with running(pub):
        sent = [pub.enqueue(OutMessage(f"summary/{MODELS[i % 3]}", {"i": i})) for i in range(300)]
        assert await sub.until(lambda ms: len(ms) >= len(sent), TIMEOUT_S)
        assert await eventually(lambda: outbox.stats()["depth"] == 0, TIMEOUT_S)  # every PUBACK came
        assert pub.status().protocol == "3.1.1"
    assert sorted(seqs(sub)) == sent
    for model in MODELS:
        got = [int(m.json()["seq"]) for m in sub.on(f"/summary/{model}")]
        assert got == sorted(got)
    outbox.close()


async def test_a_rabbitmq_restart_while_producing_loses_nothing(
    tmp_path: Path, rabbitmq: RabbitMQ, subscriber: Callable[..., Subscriber]
) -> None:
    loop = asyncio.get_running_loop()
    # clean_session=False: RabbitMQ queues QoS 1 for the dashboard while it is away, even across a restart.
    sub = subscriber(rabbitmq, [f"{BASE}/summary/#"], client_id="dashboard", persistent=True)
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    pub = publisher(rabbitmq.host, rabbitmq.port, outbox)
    sent: List[int] = []
    stop = asyncio.Event()

    async def produce() -> None:
        i = 0
        while not stop.is_set():
            sent.append(pub.enqueue(OutMessage(f"summary/{MODELS[i % 3]}", {"i": i})))
            i += 1
            await asyncio.sleep(0.02)  # scenario: a steady producer, 50 summaries a second

    async with running(pub):
        assert await eventually(lambda: pub.status().state == "connected", TIMEOUT_S)
        producer = asyncio.ensure_future(produce())
        assert await sub.until(lambda ms: len(ms) >= 20, TIMEOUT_S)
        await loop.run_in_executor(None, rabbitmq.stop)
        assert await eventually(lambda: pub.status().state != "connected", TIMEOUT_S)
        await loop.run_in_executor(None, rabbitmq.start)
        assert await eventually(lambda: pub.status().connects >= 2, TIMEOUT_S)
        after = len(sent)
        assert await eventually(lambda: len(sent) >= after + 20, TIMEOUT_S)  # and it keeps producing
        stop.set()
        await producer
        assert await sub.until(lambda ms: set(sent) <= set(seqs(sub)), TIMEOUT_S)
        assert await eventually(lambda: outbox.stats()["depth"] == 0, TIMEOUT_S)
    assert sorted(set(seqs(sub))) == sent
    assert any(m.json().get("replay") for m in sub.messages)  # what waited was marked as replayed
    outbox.close()


async def test_the_last_will_says_offline_when_the_link_drops(
    tmp_path: Path, rabbitmq: RabbitMQ, subscriber: Callable[..., Subscriber]
) -> None:
    # Exact topic: RabbitMQ hands retained messages only to exact-topic subscribers, not to + or #.
    sub = subscriber(rabbitmq, [f"{BASE}/status"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    with Proxy(rabbitmq.host, rabbitmq.port) as proxy:
        pub = publisher(proxy.host, proxy.port, outbox)
        async with running(pub):
            assert await sub.until(lambda ms: [m.payload for m in ms][-1:] == [b"online"], TIMEOUT_S)
            proxy.cut()  # the TCP connection ends without DISCONNECT, as when a kiosk loses power
            assert await sub.until(lambda ms: b"offline" in [m.payload for m in ms], TIMEOUT_S)
            assert await sub.until(lambda ms: [m.payload for m in ms][-1:] == [b"online"], TIMEOUT_S)
        # Inside the proxy's block: "stopped" and the DISCONNECT must pass through it before it closes, or
        # the broker sees a dropped link and rightly publishes the will (seen under load).
        assert await sub.until(lambda ms: [m.payload for m in ms][-1:] == [b"stopped"], TIMEOUT_S)
    late = subscriber(rabbitmq, [f"{BASE}/status"])
    assert await late.until(lambda ms: len(ms) >= 1, TIMEOUT_S)
    assert late.messages[-1].payload == b"stopped"
    assert late.messages[-1].retain
    outbox.close()


async def test_mqtt_5_against_it_is_refused_with_the_fix_in_the_log(
    tmp_path: Path, rabbitmq: RabbitMQ
) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    pub = Publisher(mqtt_config(rabbitmq.host, rabbitmq.port, protocol="5"), "kiosk1", outbox)
    async with running(pub):
        assert await eventually(lambda: pub.status().problem is not None, TIMEOUT_S)
        assert pub.status().connects == 0
    assert 'set mqtt.protocol = "3.1.1"' in (pub.status().problem or "")
    outbox.close()
