"""The v0 client against a server that answers with anything: hypothesis writes the replies.

A tiny aiohttp server speaks the v0 route and answers each payload with generated frames: malformed JSON,
JSON of the wrong shape or types, unknown fields, replies to someone else's payload, binary frames, frames
over aiohttp's size limit, and close codes; then a well-formed reply, so the client's one-in-flight slot
never waits for a reply timeout. The backend must neither crash nor stall: its run task stays alive, it
logs no traceback, ``status()`` stays JSON-ready, and afterwards a good reply still becomes an observation.

The client runs on an event loop in its own thread so the hypothesis test itself is synchronous.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
from typing import Any, Awaitable, Deque, Iterator, List, Optional, Tuple, TypeVar

import aiohttp
import hypothesis.strategies as st
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings

from agent.config import HumeConfig, HumeV0Config
from agent.hume.types import Observation
from agent.hume.v0.client import V0Backend
from tests.support.ports import serve_ws
from tests.support.waits import wait_until

T = TypeVar("T")
Frame = Tuple[str, Any, bool]
"""(kind, data, echo the payload_id): kind is json, text, binary, huge or close."""

STEP_TIMEOUT_S = 15.0
KEYS = [
    "face", "prosody", "burst", "language", "predictions", "emotions", "name", "score", "error", "warning",
    "code", "payload_id", "job_details", "job_id", "frame", "time", "bbox", "box", "prob", "face_id", "begin",
    "end", "text", "position", "x", "y", "w", "h", "descriptions", "facs", "sentiment", "toxicity", "unknown",
]  # fmt: skip
GOOD = {"face": {"warning": "No faces found.", "code": "W0103"}}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.sampled_from(KEYS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    max_leaves=25,
)
frames: st.SearchStrategy[Frame] = st.one_of(
    st.tuples(
        st.just("json"), st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6), st.booleans()
    ),
    st.tuples(st.just("json"), json_values, st.just(False)),
    st.tuples(st.just("text"), st.text(max_size=200), st.just(False)),
    st.tuples(st.just("binary"), st.binary(max_size=200), st.just(False)),
    st.tuples(st.just("huge"), st.sampled_from([70_000, 1_100_000, 5_000_000]), st.booleans()),
    st.tuples(st.just("close"), st.sampled_from([1000, 1008, 1011, 4000]), st.just(False)),
)


class LoopThread:
    """An asyncio loop in a daemon thread; :meth:`run` runs a coroutine on it, bounded."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[T], timeout: float = STEP_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(STEP_TIMEOUT_S)


class ReplyServer:
    """The v0 route, answering each payload with the next scripted frames (then a good reply)."""

    def __init__(self) -> None:
        self.script: Deque[List[Frame]] = collections.deque()
        self.requests = 0
        self.answered = 0
        self.runner: Optional[web.AppRunner] = None
        self.url = ""

    async def start(self) -> None:
        self.runner, port = await serve_ws("/v0/stream/models", self._ws)
        self.url = f"ws://127.0.0.1:{port}/v0/stream/models"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            self.requests += 1
            try:
                await self._answer(ws, str(json.loads(msg.data).get("payload_id")))
            finally:
                self.answered += 1
            if ws.closed:
                break
        return ws

    async def _answer(self, ws: web.WebSocketResponse, pid: str) -> None:
        for kind, data, echo in self.script.popleft() if self.script else []:
            if kind == "close":
                await ws.close(code=data)
                return
            if kind == "binary":
                await ws.send_bytes(data)
            elif kind == "text":
                await ws.send_str(data)
            elif kind == "huge":
                body = {"payload_id": pid if echo else "x", "face": {"predictions": []}, "pad": "x" * data}
                await ws.send_str(json.dumps(body))
            else:
                body = {**data, "payload_id": pid} if echo and isinstance(data, dict) else data
                await ws.send_str(json.dumps(body))
        await ws.send_str(json.dumps({"payload_id": pid, **GOOD}))


class Harness:
    def __init__(self) -> None:
        self.thread = LoopThread()
        self.server = ReplyServer()
        self.thread.run(self.server.start())
        cfg = HumeConfig(
            backend="v0",
            api_key="fuzz-key",
            models=("face",),
            reply_timeout_s=1.0,
            fatal_retry_s=1.0,
            v0=HumeV0Config(url=self.server.url, backoff_initial_s=0.05, backoff_max_s=0.2),
        )
        self.backend = V0Backend(cfg)
        self.task: asyncio.Task[None] = self.thread.run(self._start())

    async def _start(self) -> asyncio.Task[None]:
        return asyncio.ensure_future(self.backend.run())

    async def _send(self) -> None:
        self.backend.send_frame(b"\xff\xd8\xff fuzz", time.time(), "fuzz-session")

    async def _drain(self) -> List[Observation]:
        out = []
        while True:
            try:
                out.append(await asyncio.wait_for(self.backend.receive(), 0.01))
            except asyncio.TimeoutError:
                return out

    def exchange(self, script: List[Frame]) -> List[Observation]:
        """Send one frame answered by ``script``; wait until the server answered it."""
        before = self.server.answered
        self.server.script.append(script)
        self.thread.run(self._send())
        sent = wait_until(lambda: self.server.answered > before or self.task.done(), STEP_TIMEOUT_S, 0.005)
        assert not self.task.done(), self.task
        assert sent, f"the client sent nothing for {STEP_TIMEOUT_S} s"
        return self.thread.run(self._drain())

    def close(self) -> None:
        async def stop() -> None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            await self.server.stop()

        self.thread.run(stop())
        self.thread.close()


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


@given(script=st.lists(frames, min_size=1, max_size=3))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_reply_neither_crashes_nor_stalls_the_client(
    harness: Harness, script: List[Frame], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    harness.exchange(script)
    assert not harness.task.done()
    json.dumps(harness.backend.status().to_json())
    tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith("agent.")]
    assert not tracebacks, tracebacks[0].getMessage()


def test_after_the_fuzz_a_good_reply_is_still_an_observation(harness: Harness) -> None:
    for _ in range(20):  # a socket the fuzz left in backoff comes back within a few exchanges
        got = harness.exchange([])
        if any(o.model == "face" and o.warning_code == "W0103" for o in got):
            break
    else:
        raise AssertionError(f"no observation from a good reply: {harness.backend.status()}")
    assert not harness.task.done()
