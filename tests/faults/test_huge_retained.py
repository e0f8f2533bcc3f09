"""A 250 MB retained message on a topic the agent subscribes to cannot take it down (mosquitto allows 256 MB).

Before: paho buffered the whole message before the 1 KiB command limit was checked, the agent reached
808 MiB (past the unit's MemoryMax=768M), was killed, and got the same retained message after its restart.
Now the agent announces MQTT 5's Maximum Packet Size (``mqtt.max_incoming_bytes``) in its CONNECT and the
broker never sends it anything larger.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support.mosquitto import Broker, Subscriber
from tests.support.processes import agent_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

DEVICE = "big-retained"
PREFIX = f"hume-edge/{DEVICE}/"
HUGE_BYTES = 250 * 2**20
PEAK_RSS_MB = 250.0
"""The agent's peak RSS bound: ~100 MB here at rest (camera and microphone off); one copy of the message
alone would be 250 MB."""


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def start_agent(tmp_path: Path, broker: Broker, emulator_url: str, protocol: str = "5") -> Any:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"""device_id = "{DEVICE}"
[hume]
backend = "v0"
api_key = "test-key"
[hume.v0]
url = "{emulator_url}"
[camera]
source = "none"
[microphone]
source = "none"
[session]
mode = "command"
[mqtt]
protocol = "{protocol}"
max_incoming_bytes = 65536
host = "{broker.host}"
port = {broker.port}
health_interval_s = 1.0
[outbox]
path = "{tmp_path / "outbox.sqlite"}"
""",
        encoding="utf-8",
    )
    env = dict(os.environ, RUNTIME_DIRECTORY=str(tmp_path))
    return await agent_process(cfg, cwd=tmp_path, log=tmp_path / "agent.log", env=env)


async def stop(proc: Any) -> int:
    if proc.returncode is None:
        os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    return int(proc.returncode)


async def test_a_250_mb_retained_command_is_never_buffered(
    emulator: Any, mosquitto: Broker, subscriber: Any, tmp_path: Path
) -> None:
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "health", PREFIX + "status"])
    sub.client.publish(PREFIX + "cmd/session", b"s" * HUGE_BYTES, qos=1, retain=True).wait_for_publish(120)
    for run in range(2):  # and again after a restart: the message is still retained
        before = len(sub.on("health"))
        proc = await start_agent(tmp_path, mosquitto, emulator.url)
        try:
            assert await sub.until(lambda ms, b=before: len(sub.on("health")) >= b + 3, 60), (
                tmp_path / "agent.log"
            ).read_text(errors="replace")[-3000:]
            peak = peak_rss_mb(proc.pid)
            assert proc.returncode is None, f"run {run}: the agent ended"
        finally:
            code = await stop(proc)
        assert code == 0, (tmp_path / "agent.log").read_text(errors="replace")[-3000:]
        assert peak < PEAK_RSS_MB, f"run {run}: peak RSS {peak:.0f} MB"
    assert sub.on("status")[-1].payload == b"stopped"


async def test_mqtt_3_1_1_counts_what_it_could_not_refuse(
    emulator: Any, mosquitto: Broker, subscriber: Any, tmp_path: Path
) -> None:
    """MQTT 3.1.1 has no Maximum Packet Size: the broker sends it, the agent drops it unread and says so."""
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "health", PREFIX + "cmd/result"])
    proc = await start_agent(tmp_path, mosquitto, emulator.url, protocol="3.1.1")
    try:
        assert await sub.until(lambda ms: len(sub.on("health")) >= 1, 60)
        sub.publish(PREFIX + "cmd/text", b"t" * 100_000)

        def oversized(ms: Any) -> bool:
            last = sub.on("health")[-1].json()
            return bool(last["mqtt"]["commands"]["oversized"] == 1)

        assert await sub.until(oversized, 30)
        assert not sub.on("cmd/result"), "an oversized message was parsed and answered"
    finally:
        assert await stop(proc) == 0
