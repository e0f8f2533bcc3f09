"""The v1 emulator over real loopback WebSockets: handshake rules, inducible endings, control endpoints."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List

import aiohttp
import pytest

from agent.hume.v1 import protocol as p
from hume_emulator.v1.emulator import EmulatorV1, EmulatorV1Settings
from tests.support.emulator_v1 import TEST_KEY

TIMEOUT_S = 10.0


async def read_all(ws: aiohttp.ClientWebSocketResponse) -> List[Dict[str, Any]]:
    async def run() -> List[Dict[str, Any]]:
        return [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]

    return await asyncio.wait_for(run(), TIMEOUT_S)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Hume-Api-Key": "wrong"}, 401),
        ({"X-Hume-Api-Key": TEST_KEY, "Authorization": f"Bearer {TEST_KEY}"}, 401),
        ({"Authorization": f"Bearer {TEST_KEY}"}, 101),
        ({"X-Hume-Api-Key": TEST_KEY}, 101),
    ],
)
async def test_exactly_one_valid_credential_is_required(
    emulator_v1: EmulatorV1, headers: Dict[str, str], status: int
) -> None:
    async with aiohttp.ClientSession() as http:
        if status == 101:
            async with http.ws_connect(emulator_v1.url_video, headers=headers) as ws:
                first = await asyncio.wait_for(ws.receive_json(), TIMEOUT_S)
                assert first["type"] == "session.created"
                assert first["face"] == {"threshold": 0.9, "min_size": 60}
            return
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await http.ws_connect(emulator_v1.url_audio, headers=headers)
        assert exc.value.status == status
    assert emulator_v1.connections == 0


async def test_idle_session_ends_with_idle_timeout() -> None:
    settings = EmulatorV1Settings(api_keys=(TEST_KEY,), idle_timeout_s=0.3)
    headers = {p.API_KEY_HEADER: TEST_KEY}
    async with EmulatorV1(settings) as emu, aiohttp.ClientSession() as http:  # noqa: SIM117 - 3.9 syntax
        async with http.ws_connect(emu.url_audio, headers=headers) as ws:
            messages = await read_all(ws)
            assert ws.close_code == p.CLOSE_NORMAL
    assert [m["type"] for m in messages] == ["session.created", "session.closed"]
    assert messages[1]["reason"] == "idle_timeout"
    assert messages[1]["received"] == {"audio_duration_ms": 0, "frames": 0}


async def test_shutdown_and_faults_through_the_control_endpoints(emulator_v1: EmulatorV1) -> None:
    faults = emulator_v1.base_url + "/_emulator/v1/faults"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(emulator_v1.url_video, headers={p.API_KEY_HEADER: TEST_KEY}) as ws:
            await asyncio.wait_for(ws.receive_json(), TIMEOUT_S)
            async with http.post(emulator_v1.base_url + "/_emulator/v1/shutdown?code=1001", json={}) as resp:
                assert await resp.json() == {"ended": 1}
            messages = await read_all(ws)
            assert ws.close_code == 1001
        assert messages[-1]["reason"] == "server_shutdown"
        async with http.post(faults, json={"refuse_status": 503}) as resp:
            assert resp.status == 200
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await http.ws_connect(emulator_v1.url_audio, headers={p.API_KEY_HEADER: TEST_KEY})
        assert exc.value.status == 503
        async with http.post(faults, json={"bogus": 1}) as resp:
            assert resp.status == 400
            assert "bogus" in (await resp.json())["message"]
        async with http.get(emulator_v1.base_url + "/_emulator/v1/stats") as resp:
            stats = await resp.json()
    assert stats["connections"] == 1
    assert stats["sessions"][0]["reason"] == "server_shutdown"


async def test_pings_are_answered(emulator_v1: EmulatorV1) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {p.API_KEY_HEADER: TEST_KEY}
        async with http.ws_connect(emulator_v1.url_audio, headers=headers, autoping=False) as ws:
            assert (await asyncio.wait_for(ws.receive_json(), TIMEOUT_S))["type"] == "session.created"
            await ws.ping(b"keepalive")
            pong = await asyncio.wait_for(ws.receive(), TIMEOUT_S)
            assert pong.type == aiohttp.WSMsgType.PONG
