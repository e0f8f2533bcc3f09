"""A hostile (or badly broken) Hume v0 endpoint cannot grow the agent (a process, against a real mosquitto).

The endpoint answers every payload with something a real server never sends: error replies with a distinct
code each (hundreds of them), 512 KiB "codes" with 512 KiB texts, JSON nested 100,000 deep, 10 MB text
frames. The agent must keep running and publishing health, with its peak RSS, the status file and the
retained health message bounded; the codes it counts stay few (:data:`agent.untrusted.MAX_DISTINCT_KEYS`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List

import pytest
import pytest_asyncio
from aiohttp import WSMsgType, web

from agent.hume.v0.protocol import PATH
from agent.untrusted import MAX_DISTINCT_KEYS
from tests.support.mosquitto import Broker, Subscriber
from tests.support.ports import free_port, serve_ws
from tests.support.processes import agent_process
from tests.support.waits import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

DEVICE = "hostile-hume"
PREFIX = f"hume-edge/{DEVICE}/"
DISTINCT_CODES = 200
"""Distinct codes the endpoint sends before the checks (~10 s here); the unit tests count to 1,000."""
PEAK_RSS_MB = 300.0
"""The agent's peak RSS bound: ~90 MB at rest here; one 4 MB frame (aiohttp's default limit) is read at
most, plus the JSON decoder's work on a 1 MB reply. Without the bounds a 30 s run reached 203 MiB and grew."""
SMALL_BYTES = 64 * 1024
"""The status file and the retained health message stay under this (they reached 52 MB before)."""


class HostileHume:
    """A v0 endpoint that answers every payload with one of the hostile replies, in turn."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}{PATH}"
        self.served = 0
        self.codes: List[str] = []
        self.kinds: Dict[str, int] = {}
        self._runner: Any = None

    def reply_for(self, payload_id: Any) -> str:
        n = self.served
        self.served += 1
        if n % 10 == 3:
            kind, body = "giant", {"error": "x" * 2**19, "code": "E" + "9" * 2**19, "payload_id": payload_id}
        elif n % 10 == 6:
            self.kinds["nested"] = self.kinds.get("nested", 0) + 1
            return "[" * 100_000 + "]" * 100_000
        elif n % 50 == 9:
            self.kinds["huge"] = self.kinds.get("huge", 0) + 1
            return json.dumps({"error": "y" * 10 * 2**20, "code": "E0101", "payload_id": payload_id})
        else:
            code = f"E{1000 + len(self.codes):04d}"
            self.codes.append(code)
            kind, body = (
                "distinct",
                {"error": f"{code} " + "z" * 10_000, "code": code, "payload_id": payload_id},
            )
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        return json.dumps(body)

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=16 * 2**20)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            try:
                payload_id = json.loads(msg.data).get("payload_id")
            except ValueError:
                payload_id = None
            await ws.send_str(self.reply_for(payload_id))
        return ws

    async def __aenter__(self) -> HostileHume:
        self._runner, _ = await serve_ws(PATH, self.handler, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


@pytest_asyncio.fixture
async def hostile() -> AsyncIterator[HostileHume]:
    async with HostileHume() as server:
        yield server


def config_toml(hume_url: str, broker: Broker, workdir: Path) -> str:
    return f"""device_id = "{DEVICE}"
[hume]
backend = "v0"
api_key = "any-key"
fps_pred = 10.0
[hume.v0]
url = "{hume_url}"
backoff_initial_s = 0.05
backoff_max_s = 0.2
[camera]
source = "synthetic"
fps = 10.0
static_threshold = 0.0
[microphone]
source = "speech"
[session]
mode = "always"
[mqtt]
host = "{broker.host}"
port = {broker.port}
health_interval_s = 1.0
[outbox]
path = "{workdir / "outbox.sqlite"}"
"""


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def test_a_hostile_endpoint_cannot_grow_the_agent(
    hostile: HostileHume, mosquitto: Broker, subscriber: Any, tmp_path: Path
) -> None:
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "health"])
    cfg = tmp_path / "config.toml"
    cfg.write_text(config_toml(hostile.url, mosquitto, tmp_path), encoding="utf-8")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = dict(os.environ, RUNTIME_DIRECTORY=str(run_dir))
    log_path = tmp_path / "agent.log"
    proc = await agent_process(cfg, cwd=tmp_path, log=log_path, env=env)
    try:
        seen_all = await eventually(
            lambda: (
                proc.returncode is not None
                or (len(hostile.codes) >= DISTINCT_CODES and "huge" in hostile.kinds)
            ),
            120,
            0.2,
        )
        assert proc.returncode is None, log_path.read_text(errors="replace")[-3000:]
        assert seen_all, (hostile.kinds, len(hostile.codes))
        before = len(sub.messages)
        assert await sub.until(lambda ms: len(ms) >= before + 2, 10), "health stopped being published"
        peak = peak_rss_mb(proc.pid)
        assert proc.returncode is None, "the agent ended"
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    log = log_path.read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    health = sub.messages[-1]
    assert len(health.payload) < SMALL_BYTES, len(health.payload)
    status_file = run_dir / "status.json"
    assert status_file.stat().st_size < SMALL_BYTES, status_file.stat().st_size
    assert peak < PEAK_RSS_MB, f"peak RSS {peak:.0f} MB"
    link = json.loads(health.payload)["hume"]["links"]["video"]
    error_counters = [k for k in link if k.startswith("error_")]
    assert len(error_counters) <= MAX_DISTINCT_KEYS + 1, error_counters  # + "other"
    assert "error_malformed" in link  # the 512 KiB codes, counted under one name
    assert len(log) < 200_000, f"{len(log)} bytes of log"  # no server text copied into the log in bulk
    assert "z" * 300 not in log
