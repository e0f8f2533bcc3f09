"""The agent against a clustered broker: RabbitMQ's MQTT plugin, one node per module, version-aware.

What differs from mosquitto, and what the agent does about it (docs/mqtt.md, "A clustered broker: RabbitMQ"):
before 3.13 (Debian 12's 3.10) ``mqtt.protocol = "3.1.1"`` (an MQTT 5 CONNECT gets no CONNACK), so no
Receive Maximum, Maximum Packet Size, message expiry or will delay; from 3.13 on (Debian 13's 4.x) MQTT 5
is accepted, and the summaries and the last will are tested over both protocols. Retained messages reach
exact-topic subscribers only.
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


PROTOCOLS = ("3.1.1", "5")


def publisher(host: str, port: int, outbox: Outbox, protocol: str = "3.1.1") -> Publisher:
    return Publisher(mqtt_config(host, port, protocol=protocol, reconnect_max_s=1.0), "kiosk1", outbox)


def needs_mqtt5(rabbitmq: RabbitMQ, protocol: str) -> None:
    """Skip an MQTT 5 case on a RabbitMQ that refuses it (what it does instead is the refusal test's)."""
    if protocol == "5" and not rabbitmq.speaks_mqtt5:
        version = ".".join(map(str, rabbitmq.version))
        pytest.skip(f"RabbitMQ {version} refuses MQTT 5 (before 3.13): test_mqtt_5_by_version covers it")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_summaries_arrive_at_qos_1_in_order(
    tmp_path: Path, rabbitmq: RabbitMQ, subscriber: Callable[..., Subscriber], protocol: str
) -> None:
    needs_mqtt5(rabbitmq, protocol)
    sub = subscriber(rabbitmq, [f"{BASE}/summary/#"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    pub = publisher(rabbitmq.host, rabbitmq.port, outbox, protocol)
    async with running(pub):
        sent = [pub.enqueue(OutMessage(f"summary/{MODELS[i % 3]}", {"i": i})) for i in range(300)]
        assert await sub.until(lambda ms: len(ms) >= len(sent), TIMEOUT_S)
        assert await eventually(lambda: outbox.stats()["depth"] == 0, TIMEOUT_S)  # every PUBACK came
        assert pub.status().protocol == protocol
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


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_last_will_says_offline_when_the_link_drops(
    tmp_path: Path, rabbitmq: RabbitMQ, subscriber: Callable[..., Subscriber], protocol: str
) -> None:
    needs_mqtt5(rabbitmq, protocol)
    # Exact topic: RabbitMQ hands retained messages only to exact-topic subscribers, not to + or #.
    sub = subscriber(rabbitmq, [f"{BASE}/status"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    with Proxy(rabbitmq.host, rabbitmq.port) as proxy:
        # MQTT 5: the will waits mqtt.will_delay_s (1 s here) and is dropped if the agent is back by then.
        pub = Publisher(
            mqtt_config(proxy.host, proxy.port, protocol=protocol, reconnect_max_s=1.0, will_delay_s=1),
            "kiosk1",
            outbox,
        )
        async with running(pub):
            assert await sub.until(lambda ms: [m.payload for m in ms][-1:] == [b"online"], TIMEOUT_S)
            assert pub.status().protocol == protocol
            # The kiosk loses power: the TCP connection ends without DISCONNECT, and it stays away (its
            # reconnects pass nothing) until the broker has published the will.
            proxy.blackhole()
            proxy.cut()
            assert await sub.until(lambda ms: b"offline" in [m.payload for m in ms], TIMEOUT_S)
            proxy.resume()
            assert await sub.until(lambda ms: [m.payload for m in ms][-1:] == [b"online"], TIMEOUT_S)
        # Inside the proxy's block: "stopped" and the DISCONNECT must pass through it before it closes, or
        # the broker sees a dropped link and rightly publishes the will (seen under load).
        assert await sub.until(lambda ms: [m.payload for m in ms][-1:] == [b"stopped"], TIMEOUT_S)
    late = subscriber(rabbitmq, [f"{BASE}/status"])
    assert await late.until(lambda ms: len(ms) >= 1, TIMEOUT_S)
    assert late.messages[-1].payload == b"stopped"
    assert late.messages[-1].retain
    outbox.close()


async def test_mqtt_5_by_version(tmp_path: Path, rabbitmq: RabbitMQ) -> None:
    """Before 3.13 an MQTT 5 CONNECT gets no CONNACK and the agent's error names the fix; from 3.13 on (4.x on
    Debian 13) it is accepted, with no problem reported."""
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    pub = Publisher(mqtt_config(rabbitmq.host, rabbitmq.port, protocol="5"), "kiosk1", outbox)
    verdict = "accepted" if rabbitmq.speaks_mqtt5 else "refused"
    print(f"RabbitMQ {'.'.join(map(str, rabbitmq.version))}: MQTT 5 {verdict}")
    async with running(pub):
        if rabbitmq.speaks_mqtt5:
            assert await eventually(lambda: pub.status().connects >= 1, TIMEOUT_S), pub.status().problem
            assert (pub.status().protocol, pub.status().problem) == ("5", None)
        else:
            assert await eventually(lambda: pub.status().problem is not None, TIMEOUT_S)
            assert pub.status().connects == 0
    if not rabbitmq.speaks_mqtt5:
        assert 'set mqtt.protocol = "3.1.1"' in (pub.status().problem or "")
    outbox.close()
