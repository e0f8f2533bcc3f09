"""The publisher against a real mosquitto: delivery, status, health, discovery, commands, refusals."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Callable, List

import pytest

from agent.config import OutboxConfig
from agent.messages import OutMessage
from agent.mqtt.commands import Command
from agent.mqtt.discovery import config_topic
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from agent.ops.health import ServiceHealth
from tests.support.meter import PUBLISH, SUBSCRIBE, InflightMeter
from tests.support.mosquitto import Broker, Subscriber, make_certs, mqtt_config
from tests.support.tasks import running
from tests.support.waits import eventually

TIMEOUT_S = 15.0
BASE = "hume-edge/kiosk1"
DISCOVERY = config_topic("homeassistant", "kiosk1")


def service_health() -> ServiceHealth:
    return ServiceHealth(device_id="kiosk1")


def seqs_on(sub: Subscriber, suffix: str) -> List[int]:
    return [int(m.json()["seq"]) for m in sub.on(suffix)]


def disk_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("outbox.sqlite*"))


def write_garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage after a power cut" * 500)


def retries(caplog: pytest.LogCaptureFixture) -> int:
    """Connection attempts that repeated a problem already reported (logged at debug as "still: ...")."""
    return sum(r.getMessage().startswith("still:") for r in caplog.records)


def errors(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("agent.mqtt")
    ]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_delivers_in_order_with_status_health_and_discovery(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber], protocol: str
) -> None:
    sub = subscriber(mosquitto)
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    cfg = mqtt_config(mosquitto.host, mosquitto.port, protocol=protocol)
    pub = Publisher(cfg, "kiosk1", outbox, health=service_health)
    async with running(pub):
        seqs = [
            pub.enqueue(OutMessage(f"summary/{m}", {"top": [], "i": i}))
            for i in range(200)
            for m in ("face", "burst")
        ]
        assert await sub.until(
            lambda ms: len(sub.on("/summary/face")) + len(sub.on("/summary/burst")) >= 400, TIMEOUT_S
        )
        assert await sub.until(lambda ms: len(sub.on("/health")) >= 1, TIMEOUT_S)
        for model in ("face", "burst"):
            got = seqs_on(sub, f"/summary/{model}")
            assert got == sorted(got) == seqs[model == "burst" :: 2]
        assert all(m.json()["ts"].endswith("Z") for m in sub.on("/summary/face"))
        assert [m.payload for m in sub.on(f"{BASE}/status")] == [b"online"]
        body = sub.on("/health")[-1].json()
        assert body["device_id"] == "kiosk1"
        assert "outbox" in body
        assert body["mqtt"]["state"] == "connected"
        config = sub.on(DISCOVERY)[0].json()
        assert config["availability"][0]["topic"] == f"{BASE}/status"
        assert await eventually(lambda: outbox.stats()["depth"] == 0, TIMEOUT_S)
    assert await sub.until(
        lambda ms: [m.payload for m in sub.on(f"{BASE}/status")][-1:] == [b"stopped"], TIMEOUT_S
    )
    late = subscriber(mosquitto, [f"{BASE}/status", f"{BASE}/health", "homeassistant/#"])
    assert await late.until(lambda ms: len(ms) >= 3, TIMEOUT_S)
    assert all(m.retain for m in late.messages)
    assert late.on("/status")[0].payload == b"stopped"
    outbox.close()


async def test_commands_are_validated_and_answered(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    sub = subscriber(mosquitto)
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    pub = Publisher(mqtt_config(mosquitto.host, mosquitto.port), "kiosk1", outbox, health=service_health)
    commands = pub.commands().__aiter__()
    async with running(pub):
        # The discovery config leaves after the publisher's SUBSCRIBE on the same connection: once it is
        # here, the broker holds the subscription and a command cannot be missed.
        discovery = config_topic("homeassistant", "kiosk1")
        assert await sub.until(lambda ms: any(m.topic == discovery for m in ms), TIMEOUT_S)
        sub.publish(f"{BASE}/cmd/session", b"start")
        assert await asyncio.wait_for(commands.__anext__(), TIMEOUT_S) == Command("session", "start")
        sub.publish(f"{BASE}/cmd/session", json.dumps({"action": "end"}).encode())
        assert await asyncio.wait_for(commands.__anext__(), TIMEOUT_S) == Command("session", "end")
        for bad in (b"reboot", b"{"):
            sub.publish(f"{BASE}/cmd/session", bad)
        sub.publish(f"{BASE}/cmd/selfdestruct", b"now")
        assert await sub.until(lambda ms: len(sub.on("/cmd/result")) >= 5, TIMEOUT_S)
        replies = [m.json() for m in sub.on("/cmd/result")]
        assert [r["ok"] for r in replies] == [True, True, False, False, False]
        assert "send 'start' or 'end'" in replies[2]["error"]
        assert "allowed are cmd/session, cmd/discovery" in replies[4]["error"]
        with pytest.raises(asyncio.TimeoutError):  # bad input changed nothing
            await asyncio.wait_for(commands.__anext__(), 0.3)

        configs = len(sub.on(DISCOVERY))
        sub.publish(f"{BASE}/cmd/discovery", b"")
        assert await sub.until(lambda ms: len(sub.on(DISCOVERY)) > configs, TIMEOUT_S)
        pub.enqueue(OutMessage("summary/face", {"faces": []}))
        assert await sub.until(lambda ms: len(sub.on("/summary/face")) == 1, TIMEOUT_S)
        healths = len(sub.on("/health"))
        sub.publish("homeassistant/status", b"online")
        # Home Assistant's birth: discovery and a fresh health; no summary or session is sent again.
        assert await sub.until(lambda ms: len(sub.on("/health")) > healths, TIMEOUT_S)
        assert len(sub.on(DISCOVERY)) == configs + 2
        assert len(sub.on("/summary/face")) == 1
        assert not sub.on(f"{BASE}/session")
    outbox.close()


async def test_online_is_announced_only_after_the_command_subscription(
    tmp_path: Path, mosquitto: Broker
) -> None:
    """A dashboard that sees "online" and sends a command at once must reach a subscribed agent: the
    broker handles one client's packets in order, so the SUBSCRIBE has to leave before that PUBLISH."""
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    with InflightMeter(mosquitto.host, mosquitto.port) as meter:
        pub = Publisher(mqtt_config(meter.host, meter.port), "kiosk1", outbox)
        online = (PUBLISH, f"{BASE}/status".encode())
        async with running(pub):
            await eventually(lambda: online in meter.upstream, TIMEOUT_S, what="status online")
        kinds = [kind for kind, _ in meter.upstream]
        assert SUBSCRIBE in kinds[: meter.upstream.index(online)], meter.upstream
    outbox.close()


async def test_queued_notice_goes_before_the_direct_burst(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    """A visit's notice queued while disconnected gates the visit's media until its PUBACK: at the connect
    it goes out with the first drain step, ahead of the direct re-announcements (status, every state,
    discovery, health: 14 publishes here, more than the 10-token burst at 100/s), not behind them waiting
    7-10 ms per token. Read as a subscriber of the real broker sees it: the order of arrival."""
    sub = subscriber(mosquitto, [f"{BASE}/#", "homeassistant/#"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    pub = Publisher(mqtt_config(mosquitto.host, mosquitto.port), "kiosk1", outbox, health=service_health)
    for i in range(11):  # state to re-announce at the connect (held while disconnected)
        pub.set_state(f"status/part{i}", b"online")
    seq = pub.enqueue(OutMessage("notice", {"active": True, "text": "measuring"}, retain=True))
    async with running(pub):
        assert await sub.until(
            lambda ms: bool(sub.on("/notice")) and bool(sub.on("/health")) and bool(sub.on(DISCOVERY)),
            TIMEOUT_S,
        )
    topics = [m.topic for m in sub.messages]
    first = topics.index(f"{BASE}/notice")
    assert sub.messages[first].json()["seq"] == seq
    direct = [t for t in topics if t != f"{BASE}/notice"]
    assert len(direct) > 10, "precondition: the direct burst is bigger than the rate's burst"
    assert first == 0, f"the notice arrived after {topics[:first]}"
    outbox.close()


async def test_wrong_password_is_said_once_and_retried_never_connected(
    tmp_path: Path,
    mosquitto_factory: Callable[..., Broker],
    subscriber: Callable[..., Subscriber],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = mosquitto_factory(password=("agent", "right"))
    sub = subscriber(broker, username="agent", password="right")
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    cfg = mqtt_config(broker.host, broker.port, username="agent", password="wrong")
    pub = Publisher(cfg, "kiosk1", outbox, health=service_health)
    caplog.set_level(logging.DEBUG, logger="agent.mqtt")
    async with running(pub) as task:
        assert await eventually(lambda: retries(caplog) >= 3, TIMEOUT_S)
        assert not task.done()
        status = pub.status()
        assert status.state == "refused"
        assert status.connects == 0
        assert len(errors(caplog)) == 1
        assert "refused the connection: Not authorized" in errors(caplog)[0]
        assert "mqtt.password" in errors(caplog)[0]
        assert "wrong" not in errors(caplog)[0]
    assert sub.on("/status") == []
    outbox.close()


async def test_tls_mismatch_is_said_once_and_the_right_ca_connects(
    tmp_path: Path,
    mosquitto_factory: Callable[..., Broker],
    subscriber: Callable[..., Subscriber],
    caplog: pytest.LogCaptureFixture,
) -> None:
    certs = make_certs(tmp_path / "pki")
    broker = mosquitto_factory(tls=certs)
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    cfg = mqtt_config(broker.host, broker.port, tls=True, tls_ca=str(certs.other_ca))
    caplog.set_level(logging.DEBUG, logger="agent.mqtt")
    pub = Publisher(cfg, "kiosk1", outbox, health=service_health)
    async with running(pub) as task:
        assert await eventually(lambda: retries(caplog) >= 2, TIMEOUT_S)
        assert not task.done()
        assert len(errors(caplog)) == 1
        assert "certificate verify failed" in errors(caplog)[0]
        assert "mqtt.tls_ca" in errors(caplog)[0]
        assert pub.status().connects == 0
    good = Publisher(
        mqtt_config(broker.host, broker.port, tls=True, tls_ca=str(certs.ca)),
        "kiosk1",
        outbox,
        health=service_health,
    )
    async with running(good):
        seq = good.enqueue(OutMessage("session", {"event": "start"}))
        assert await eventually(lambda: outbox.stats()["depth"] == 0, TIMEOUT_S)
        assert good.status().state == "connected"
        assert seq > 0
    outbox.close()


async def test_unreachable_at_start_then_delivers_when_the_broker_appears(
    tmp_path: Path,
    mosquitto: Broker,
    subscriber: Callable[..., Subscriber],
    caplog: pytest.LogCaptureFixture,
) -> None:
    mosquitto.stop()
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    pub = Publisher(mqtt_config(mosquitto.host, mosquitto.port), "kiosk1", outbox, health=service_health)
    caplog.set_level(logging.DEBUG, logger="agent.mqtt")
    async with running(pub) as task:
        seqs = [pub.enqueue(OutMessage("summary/face", {"i": i})) for i in range(20)]
        assert await eventually(lambda: retries(caplog) >= 2, TIMEOUT_S)
        assert not task.done()
        assert len(errors(caplog)) == 1
        assert "unreachable: Connection refused" in errors(caplog)[0]
        mosquitto.start()
        sub = subscriber(mosquitto, [f"{BASE}/summary/#"])
        pub.enqueue(OutMessage("summary/face", {"i": 20}))
        assert await sub.until(lambda ms: len(ms) >= 1, TIMEOUT_S)
        assert await eventually(lambda: outbox.stats()["depth"] == 0, TIMEOUT_S)
        assert seqs == sorted(seqs)
    outbox.close()


async def test_full_outbox_drops_oldest_counts_and_publishes_the_drops(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    mosquitto.stop()
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig(max_rows=50))
    pub = Publisher(mqtt_config(mosquitto.host, mosquitto.port), "kiosk1", outbox, health=service_health)
    async with running(pub):
        seqs = [pub.enqueue(OutMessage("summary/face", {"pad": "x" * 200})) for _ in range(120)]
        assert outbox.stats()["depth"] == 50
        assert disk_bytes(tmp_path) < 4 * 2**20  # rows + a WAL checkpointed every ~1 MB
        mosquitto.start()
        sub = subscriber(mosquitto, [f"{BASE}/summary/#", f"{BASE}/health"])
        assert await sub.until(lambda ms: len(sub.on("/summary/face")) >= 50 and sub.on("/health"), TIMEOUT_S)
        assert seqs_on(sub, "/summary/face") == seqs[-50:]
        health = sub.on("/health")[-1].json()
        assert health["outbox"]["dropped"]["rows"] == 70
        assert health["mqtt"]["dropped"] == 70
    outbox.close()


async def test_corrupt_outbox_is_quarantined_and_the_agent_runs(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite"
    write_garbage(path)
    sub = subscriber(mosquitto, [f"{BASE}/#"])
    outbox = Outbox(path, OutboxConfig())
    assert outbox.quarantined is not None
    assert outbox.quarantined.name.startswith("outbox.sqlite.corrupt-")
    assert any("is corrupt" in m for m in errors(caplog))
    pub = Publisher(mqtt_config(mosquitto.host, mosquitto.port), "kiosk1", outbox, health=service_health)
    async with running(pub):
        pub.enqueue(OutMessage("session", {"event": "start"}, retain=True))
        assert await sub.until(lambda ms: bool(sub.on("/session")), TIMEOUT_S)
        assert await sub.until(lambda ms: bool(sub.on("/health")), TIMEOUT_S)
        assert sub.on("/health")[-1].json()["outbox"]["quarantined"] is not None
    outbox.close()
