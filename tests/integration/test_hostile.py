"""The v1 backend against servers that misbehave: silent, hostile frames, floods of made-up error codes.

Each server is a few lines of real sockets on loopback (the emulator is protocol-faithful by design, so
these are not its faults). The backend must keep running, count what it could not use, log each kind once,
and keep status and memory bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import AsyncIterator, Callable, List, Sequence, Tuple, Union

import pytest
import pytest_asyncio
from aiohttp import web

from agent.config import HumeConfig, HumeV1Config
from agent.hume.v1 import wire as v1wire
from agent.hume.v1.client import V1Backend
from tests.support.emulator import astronaut_bgr, encode_image
from tests.support.ports import serve_ws
from tests.support.waits import eventually

JPEG = encode_image(astronaut_bgr())
Frame = Union[str, bytes]


def backend_for(url: str, first_delay_range_s: Tuple[float, float] = (1.0, 5.0), **v1: float) -> V1Backend:
    cfg = HumeConfig(
        backend="v1",
        api_key="k",
        models=("face",),
        v1=HumeV1Config(url=url, min_session_s=0.0, **v1),  # type: ignore[arg-type]
    )
    return V1Backend(cfg, first_delay_range_s=first_delay_range_s)


async def until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    await eventually(check, timeout_s, what="the backend's counters to show it")


@pytest_asyncio.fixture
async def started() -> AsyncIterator[Callable[[V1Backend], asyncio.Task[None]]]:
    tasks: List[asyncio.Task[None]] = []

    def start(backend: V1Backend) -> asyncio.Task[None]:
        tasks.append(asyncio.ensure_future(backend.run()))
        backend.send_frame(JPEG, time.time(), "visitor")
        return tasks[-1]

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Hostile:
    """A WebSocket server that answers the session.update with ``frames``, then stays open."""

    def __init__(self, frames: Sequence[Frame]) -> None:
        self.frames = frames
        self.connections = 0
        self.runner: web.AppRunner

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.connections += 1
        await ws.receive()  # the session.update
        for frame in self.frames:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
        async for _ in ws:
            pass
        return ws

    async def __aenter__(self) -> str:
        self.runner, port = await serve_ws("/v1/expression/video/realtime", self.handler)
        return f"ws://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


async def test_silent_server_hits_the_handshake_deadline_is_logged_once_and_retried(
    started: Callable[[V1Backend], asyncio.Task[None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    held: List[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda _r, w: held.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # The first reconnect delay is drawn when the backend is made (a module constant patched later
        # would not reach it): short, so three connects take seconds.
        backend = backend_for(f"ws://127.0.0.1:{port}", (0.05, 0.1), connect_timeout_s=1.0)
        task = started(backend)
        await until(lambda: backend.status().link("video").connects >= 3)
        status = backend.status()
        assert "no handshake reply within 1 s" in str(status.last_error)
        assert status.link("video").state in ("backoff", "connecting")
        assert not status.ok or status.link("video").state == "connecting"
        logged = [r for r in caplog.records if "no handshake reply" in r.getMessage()]
        assert len(logged) == 1, [r.getMessage() for r in logged]
        assert not task.done()
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_nested_and_wrong_typed_frames_are_counted_and_survived(
    started: Callable[[V1Backend], asyncio.Task[None]], caplog: pytest.LogCaptureFixture
) -> None:
    frames: List[Frame] = [
        "[" * 100_000 + "]" * 100_000,  # RecursionError in json.loads
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        "{not json",
        "null",
        "[1, 2]",
        json.dumps({"type": "session.created", "session_id": 7}),
        json.dumps({"type": "measurement.result", "frame_id": "x", "faces": "nope"}),
        json.dumps({"type": "measurement.result", "frame_id": 1, "faces": [{"bbox": [1, 2]}]}),
        json.dumps({"type": "error", "code": ["list"]}),
        json.dumps(
            {"type": "session.closed", "session_id": "s", "reason": 3, "received": {}, "produced": {}}
        ),
        b"\x00\xff binary",
        json.dumps({"type": "utterly.unknown"}),
    ]
    async with Hostile(frames) as url:
        backend = backend_for(url)
        task = started(backend)
        await until(lambda: dict(backend.status().counters).get("messages_unknown", 0) >= 1)
        counters = dict(backend.status().counters)
        assert counters["messages_unreadable"] == 10
        assert not task.done()
        assert backend.status().link("video").state == "open"  # the same connection, still in use
        unreadable = [r for r in caplog.records if "unreadable server message" in r.getMessage()]
        assert len(unreadable) == 1
        assert len(unreadable[0].getMessage()) < 600  # the 200 KB frame is not in the log


async def test_ten_megabyte_frame_is_refused_counted_and_survived(
    started: Callable[[V1Backend], asyncio.Task[None]],
) -> None:
    async with Hostile(["x" * (10 * 2**20)]) as url:
        backend = backend_for(url)
        task = started(backend)
        await until(lambda: dict(backend.status().counters).get("messages_refused", 0) == 1)
        assert not task.done()
        status = backend.status().to_json()
        assert len(json.dumps(status)) < 4000


async def test_a_thousand_distinct_error_codes_keep_status_and_logs_bounded(
    started: Callable[[V1Backend], asyncio.Task[None]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    frames: List[Frame] = [
        json.dumps({"type": "error", "code": f"made_up_{i}_" + "z" * 100, "message": "m" * 5000})
        for i in range(1000)
    ]
    async with Hostile(frames) as url:
        backend = backend_for(url)
        task = started(backend)

        def seen() -> int:
            return sum(int(v) for k, v in backend.status().counters if k.startswith("error_"))

        await until(lambda: seen() == 1000)
        counters = dict(backend.status().counters)
        codes = [k for k in counters if k.startswith("error_")]
        assert len(codes) == v1wire.ERROR_CODES_MAX + 1  # the first 32, and error_other
        assert counters["error_other"] == 1000 - v1wire.ERROR_CODES_MAX
        assert max(len(k) for k in codes) <= len("error_") + v1wire.CODE_MAX_CHARS + 20
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("agent.hume.v1")]
        assert len(lines) <= v1wire.ERROR_CODES_MAX + 5
        assert max(len(line) for line in lines) < 600
        assert len(json.dumps(backend.status().to_json())) < 8000
        assert not task.done()
