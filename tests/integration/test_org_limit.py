"""The organisation's request limit: how the emulator answers over it (v0 and v1 on one budget), and how
the v1 and v0 backends wait for it (``rate_limited``, media held, measured once a session opens).

The limit is scaled down (a few opens per few seconds) so each test takes seconds; the budget is spent
by "another kiosk of the organisation" through the emulator's own counter, so the backend under test is
the one that meets the limit.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import AsyncIterator, Callable, List

import aiohttp
import pytest
import pytest_asyncio

from agent.aio import cancel_and_wait, spawn
from agent.config import HumeConfig, HumeV0Config, HumeV1Config
from agent.hume.v0.client import V0Backend
from agent.hume.v1.client import V1Backend
from hume_emulator.emulator import Emulator, EmulatorSettings
from hume_emulator.orglimit import OrgLimitSettings
from hume_emulator.v1.emulator import EmulatorV1, EmulatorV1Settings
from tests.support.emulator import astronaut_bgr, encode_image
from tests.support.emulator_v1 import TEST_KEY
from tests.support.tasks import STOP_TIMEOUT_S
from tests.support.waits import eventually

JPEG = encode_image(astronaut_bgr())
OTHER_KIOSK = "other-kiosk-key"
"""A second key of the same organisation: it spends the shared budget."""
WAIT_S = 30.0
"""Retry-After (at most the window) plus the first full-jitter draw (at most 8 s), with room for load."""


def limited(requests: int, window_s: float, answer: str = "handshake") -> OrgLimitSettings:
    return OrgLimitSettings(requests, window_s, ((TEST_KEY, "acme"), (OTHER_KIOSK, "acme")), answer)


@pytest_asyncio.fixture
async def running() -> AsyncIterator[Callable[[object], asyncio.Task[None]]]:
    """Backends started mid-test; each test stops them before its emulator stops (an open session would
    hold the emulator's shutdown)."""
    tasks: List[asyncio.Task[None]] = []

    def start(backend: object) -> asyncio.Task[None]:
        tasks.append(spawn(backend.run(), "test.backend"))  # type: ignore[attr-defined]
        return tasks[-1]

    yield start
    assert not await cancel_and_wait(tasks, timeout_s=STOP_TIMEOUT_S)


async def test_v0_and_v1_share_the_budget_and_answer_429_with_retry_after() -> None:
    settings = EmulatorSettings(api_keys=(TEST_KEY, OTHER_KIOSK), org_limit=limited(2, 30.0))
    emu = Emulator(settings)
    emu.serve_v1_too()
    async with emu, aiohttp.ClientSession() as http:
        headers = {"X-Hume-Api-Key": TEST_KEY}
        async with http.ws_connect(emu.url, headers=headers):
            pass
        async with http.ws_connect(emu.base_url + "/v1/expression/video/realtime", headers=headers) as ws:
            assert json.loads((await ws.receive()).data)["type"] == "session.created"
        for url, key in ((emu.url, OTHER_KIOSK), (emu.base_url + "/v1/expression/audio/realtime", TEST_KEY)):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url, headers={"X-Hume-Api-Key": key})
            assert refused.value.status == 429
            assert refused.value.headers is not None
            assert 28 <= int(refused.value.headers["Retry-After"]) <= 30
        async with http.get(emu.base_url + "/_emulator/stats") as resp:
            stats = (await resp.json())["org_limit"]
        assert stats["admitted"] == {"acme": 2}
        assert stats["refused"] == {"acme": 2}
        # A refused key names no organisation: 401, not counted.
        with pytest.raises(aiohttp.WSServerHandshakeError) as wrong:
            await http.ws_connect(emu.url, headers={"X-Hume-Api-Key": "wrong"})
        assert wrong.value.status == 401


async def test_v1_can_answer_in_band_with_the_realtime_error_instead() -> None:
    settings = EmulatorV1Settings(api_keys=(TEST_KEY,), org_limit=limited(1, 30.0, "error"))
    async with EmulatorV1(settings) as emu, aiohttp.ClientSession() as http:
        headers = {"X-Hume-Api-Key": TEST_KEY}
        async with http.ws_connect(emu.url_video, headers=headers) as ws:
            assert json.loads((await ws.receive()).data)["type"] == "session.created"
        async with http.ws_connect(emu.url_video, headers=headers) as ws:
            error = json.loads((await ws.receive()).data)
            assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1013
        assert error["type"] == "error"
        assert error["code"] == "rate_limited"
        assert error["retryable"] is True
        assert emu.connections == 1  # no session was created for the refused one


def v1_config(emu: EmulatorV1) -> HumeConfig:
    v1 = HumeV1Config(url=emu.base_url, min_session_s=0.0)
    return HumeConfig(backend="v1", api_key=TEST_KEY, models=("face",), v1=v1)


@pytest.mark.parametrize("answer", ["handshake", "error"])
async def test_v1_backend_waits_rate_limited_holding_the_visit_and_measures_once_a_session_opens(
    answer: str, running: Callable[[object], asyncio.Task[None]]
) -> None:
    window_s = 4.0
    settings = EmulatorV1Settings(api_keys=(TEST_KEY, OTHER_KIOSK), org_limit=limited(2, window_s, answer))
    async with EmulatorV1(settings) as emu:
        backend = V1Backend(v1_config(emu))
        task = running(backend)
        spent_at = time.monotonic()
        assert emu.state.org_limit.admit(OTHER_KIOSK) is None
        assert emu.state.org_limit.admit(OTHER_KIOSK) is None  # the organisation's budget is spent
        t0 = time.time()
        backend.send_frame(JPEG, t0, "visitor")  # a visitor arrives while the kiosk is limited
        await eventually(
            lambda: backend.status().state == "rate_limited", WAIT_S, what="the backend says rate_limited"
        )
        status = backend.status()
        assert not status.ok
        assert "organisation request limit" in str(status.last_error)
        assert dict(status.link("video").counters)["rate_limited"] >= 1
        obs = await asyncio.wait_for(backend.receive(), WAIT_S)
        assert obs.session_id == "visitor"
        assert obs.captured_at == t0  # the held frame itself, measured once the budget allowed
        assert time.monotonic() - spent_at >= window_s * 0.9  # not before the window renewed
        refusals = emu.state.org_limit.refused.get("acme", 0)
        assert refusals <= 3  # Retry-After + jitter: no hot retry loop while limited
        assert backend.status().link("video").state in ("open", "idle", "closing")
        assert not await cancel_and_wait([task], timeout_s=STOP_TIMEOUT_S)  # before the emulator stops


async def test_v0_link_waits_rate_limited_then_measures(
    running: Callable[[object], asyncio.Task[None]],
) -> None:
    settings = EmulatorSettings(api_keys=(TEST_KEY, OTHER_KIOSK), org_limit=limited(1, 4.0))
    async with Emulator(settings) as emu:
        assert emu.org_limit.admit(OTHER_KIOSK) is None
        cfg = HumeConfig(backend="v0", api_key=TEST_KEY, models=("face",), v0=HumeV0Config(url=emu.url))
        backend = V0Backend(cfg)
        task = running(backend)
        await eventually(
            lambda: backend.status().link("video").state == "rate_limited",
            WAIT_S,
            what="the v0 video socket says rate_limited",
        )
        assert dict(backend.status().link("video").counters)["rate_limited"] >= 1
        backend.send_frame(JPEG, time.time(), "visitor")
        obs = await asyncio.wait_for(backend.receive(), WAIT_S)
        assert obs.model == "face"
        assert not await cancel_and_wait([task], timeout_s=STOP_TIMEOUT_S)
