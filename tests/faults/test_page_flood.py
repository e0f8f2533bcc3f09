"""Any local process can open connections to the notice page; none of that may take the agent down (#31).

Before: ~1,010 idle TCP connections used up the unit's default 1024 descriptors, the status writer failed
with EMFILE and the agent exited 1 (systemd restarted it every 10 s); connections with unfinished headers
were never timed out; eight held ``/events`` streams made the kiosk's own browser get 503.

Here the agent runs as a process under the unit's default soft limit (``prlimit --nofile=1024:4096``, what
systemd gives a service without ``LimitNOFILE=``); the test opens 1,100 idle connections, 300 whose headers
trickle in and never end, and 8 held event streams, then the kiosk browser (headless Chromium) loads the
page, its event stream delivers a live change (a pause sent over MQTT), and the agent keeps publishing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
from pathlib import Path
from typing import Any, List, Set, Tuple

import pytest

from tests.support.chromium import chromium, needs_chromium
from tests.support.mosquitto import Broker, Subscriber
from tests.support.ports import free_port
from tests.support.processes import agent_process
from tests.support.toml_text import toml_text
from tests.support.waits import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) is not installed"),
]

DEVICE = "page-flood"
PREFIX = f"hume-edge/{DEVICE}/"
IDLE = 1100
SLOW_HEADERS = 300
HELD_STREAMS = 8
UNIT_DEFAULT_NOFILE = "1024:4096"
"""systemd's default for a service: soft 1024 (the agent raises it itself; the shipped unit sets 4096)."""

Conn = Tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_many(port: int, n: int, first: bytes = b"") -> List[Conn]:
    conns: List[Conn] = []
    for _ in range(n):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            continue  # the old agent stopped accepting (EMFILE): what it could not take is not held
        if first:
            writer.write(first)
        conns.append((reader, writer))
    return conns


async def trickle(conns: List[Conn], stop: asyncio.Event) -> None:
    """A header line now and then on each connection, never the blank line that ends the headers."""
    n = 0
    while not stop.is_set():
        n += 1
        for _, writer in conns:
            if not writer.is_closing():
                with contextlib.suppress(OSError):
                    writer.write(f"X-Slow-{n}: a\r\n".encode())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)  # polling: one header a second per connection


def closed_by_server(conns: List[Conn], closed: Set[int]) -> int:
    return sum(1 for reader, _ in conns if id(reader) in closed)


async def drain_all(conns: List[Conn], closed: Set[int]) -> None:
    """Read whatever the server sends until it closes (EOF, or a reset: it closed with headers unread)."""

    async def drain(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(4096):
                pass
        closed.add(id(reader))

    await asyncio.gather(*(drain(r) for r, _ in conns))


@needs_chromium
async def test_a_flood_of_connections_cannot_take_the_agent_or_the_page_down(
    emulator: Any, mosquitto: Broker, subscriber: Any, tmp_path: Path
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = IDLE + SLOW_HEADERS + HELD_STREAMS + 200
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"this test process needs {need} descriptors (hard limit {hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    port = free_port()
    data = {
        "device_id": DEVICE,
        "hume": {"backend": "v0", "api_key": "test-key", "v0": {"url": emulator.url}},
        "camera": {"source": "none"},
        "microphone": {"source": "none"},
        "session": {"mode": "command"},
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "health_interval_s": 1.0},
        "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        "privacy": {"page": True, "page_port": port},
    }
    cfg = tmp_path / "config.toml"
    cfg.write_text(toml_text(data), encoding="utf-8")
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    env = dict(os.environ, RUNTIME_DIRECTORY=str(tmp_path))
    log = tmp_path / "agent.log"
    wrapper = ("prlimit", f"--nofile={UNIT_DEFAULT_NOFILE}", "--")
    proc = await agent_process(cfg, cwd=tmp_path, log=log, env=env, wrapper=wrapper)
    conns: List[Conn] = []
    stop_trickle = asyncio.Event()
    trickler = None
    try:
        assert await sub.until(lambda ms: len(sub.on("health")) >= 1, 60), log.read_text()[-3000:]
        streams = await open_many(port, HELD_STREAMS, b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        idle = await open_many(port, IDLE)
        slow = await open_many(port, SLOW_HEADERS, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        conns = streams + idle + slow
        trickler = asyncio.ensure_future(trickle(slow, stop_trickle))
        closed: Set[int] = set()
        drainer = asyncio.ensure_future(drain_all(conns, closed))
        # Every slow-header connection is closed by the agent within its idle timeout (5 s), trickle or not.
        assert await eventually(lambda: closed_by_server(slow, closed) == len(slow), 30), (
            f"{len(slow) - closed_by_server(slow, closed)} of {len(slow)} slow-header connections still open"
        )
        assert proc.returncode is None, log.read_text()[-3000:]
        before = len(sub.on("health"))
        assert await sub.until(lambda ms: len(sub.on("health")) >= before + 3, 30), (
            "the agent stopped publishing"
        )

        # The kiosk's browser: the page loads and its event stream delivers a live change.
        async with chromium() as browser:
            await browser.navigate(f"http://127.0.0.1:{port}/")
            await browser.wait_for("document.body.dataset.paused === 'false'", timeout_s=20)
            sub.publish(PREFIX + "cmd/privacy", b"pause")
            await browser.wait_for("document.body.dataset.paused === 'true'", timeout_s=20)
        assert proc.returncode is None, log.read_text()[-3000:]
        drainer.cancel()
    finally:
        stop_trickle.set()
        if trickler is not None:
            await trickler
        for _, writer in conns:
            writer.close()
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0, log.read_text()[-3000:]
    text = log.read_text(errors="replace")
    assert "Too many open files" not in text
