"""The emulator over real loopback sockets: auth, framing, limits, faults, control endpoints, CLI."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Optional

import aiohttp
import pytest
import pytest_asyncio

from agent.hume.v0.protocol import API_KEY_HEADER
from hume_emulator.emulator import Emulator, EmulatorSettings
from tests.support.emulator import TEST_KEY, astronaut_bgr, b64, encode_image, espeak_wav

TIMEOUT_S = 10.0
HEADERS = {API_KEY_HEADER: TEST_KEY}
TEXT_REQUEST = {"data": "Hello there", "raw_text": True, "models": {"language": {}}}


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
        yield session


async def roundtrip(ws: aiohttp.ClientWebSocketResponse, request: Dict[str, Any]) -> Dict[str, Any]:
    await ws.send_str(json.dumps(request))
    reply: Dict[str, Any] = json.loads(await ws.receive_str(timeout=TIMEOUT_S))
    return reply


async def test_apikey_query_parameter_authenticates(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(f"{emulator.url}?apikey={TEST_KEY}") as ws:
        assert "language" in await roundtrip(ws, TEXT_REQUEST)


@pytest.mark.parametrize("headers", [{}, {API_KEY_HEADER: "nope"}], ids=["missing", "wrong"])
async def test_bad_keys_are_refused_with_401(
    emulator: Emulator, http: aiohttp.ClientSession, headers: Dict[str, str]
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(emulator.url, headers=headers)
    assert info.value.status == 401
    async with http.get(emulator.url, headers=headers) as resp:
        assert resp.status == 401
        assert await resp.text() == "Websocket initialized with invalid credentials."
    assert emulator.connections == 0


async def test_requests_and_connections_are_recorded(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    for _ in range(2):
        async with http.ws_connect(emulator.url, headers=HEADERS) as ws:
            await roundtrip(ws, {**TEXT_REQUEST, "payload_id": f"c{emulator.connections}"})
    assert emulator.connections == 2
    assert [(n, m.payload_id) for n, m in emulator.requests] == [(1, "c1"), (2, "c2")]


async def test_one_reply_per_request_in_order_and_errors_keep_the_socket(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(emulator.url, headers=HEADERS) as ws:
        await ws.send_str("{oops")
        await ws.send_str(json.dumps({"stream_window_ms": 1, "payload_id": "w", "job_details": True}))
        await ws.send_bytes(b"\x00\x01")
        await ws.send_str(json.dumps({**TEXT_REQUEST, "payload_id": "ok"}))
        replies = [json.loads(await ws.receive_str(timeout=TIMEOUT_S)) for _ in range(4)]
    assert [r.get("code") for r in replies] == ["E0100", "E0101", "E0101", None]
    assert [r.get("payload_id") for r in replies] == [None, "w", None, "ok"]
    assert len(replies[1]["job_details"]["job_id"]) == 32
    assert "language" in replies[3]


async def test_same_seed_same_replies_other_seed_other_replies(http: aiohttp.ClientSession) -> None:
    requests = [
        {"data": b64(encode_image(astronaut_bgr())), "models": {"face": {"identify_faces": True}}},
        {"data": b64(espeak_wav("Nice to meet you")), "models": {"prosody": {}, "burst": {}}},
        {**TEXT_REQUEST, "job_details": True},
    ]

    async def replies(seed: int) -> List[str]:
        async with (
            Emulator(EmulatorSettings(seed=seed)) as emu,
            http.ws_connect(emu.url, headers=HEADERS) as ws,
        ):
            out = []
            for request in requests:
                await ws.send_str(json.dumps(request))
                out.append(await ws.receive_str(timeout=TIMEOUT_S))
            return out

    first, second, other = await replies(1), await replies(1), await replies(2)
    assert first == second
    assert all(a != b for a, b in zip(first, other))


# ----------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("close_after", [0, 2])
async def test_close_after_n_replies_with_the_given_code(
    emulator: Emulator, http: aiohttp.ClientSession, close_after: int
) -> None:
    emulator.faults.update({"close_after": close_after, "close_code": 4001})
    async with http.ws_connect(emulator.url, headers=HEADERS) as ws:
        for _ in range(close_after):
            assert "language" in await roundtrip(ws, TEXT_REQUEST)
        msg = await ws.receive(timeout=TIMEOUT_S)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4001


async def test_delay_holds_the_reply_back(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    emulator.faults.delay_ms = 1500
    async with http.ws_connect(emulator.url, headers=HEADERS) as ws:
        await ws.send_str(json.dumps(TEXT_REQUEST))
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.3)
        assert "language" in json.loads(await ws.receive_str(timeout=TIMEOUT_S))


async def test_silent_reads_but_never_answers(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{emulator.base_url}/_emulator/faults", json={"silent": True}) as resp:
        assert resp.status == 200
    async with http.ws_connect(emulator.url, headers=HEADERS) as ws:
        await ws.send_str(json.dumps(TEXT_REQUEST))
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.3)
        emulator.faults.silent = False
        assert "language" in await roundtrip(ws, TEXT_REQUEST)


async def test_refuse_for_a_while_then_accept(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    async with http.post(
        f"{emulator.base_url}/_emulator/faults", json={"refuse_for_s": 30, "refuse_status": 502}
    ) as resp:
        assert (await resp.json())["refuse_for_s"] == 30
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(emulator.url, headers=HEADERS)
    assert info.value.status == 502
    emulator.faults.refuse_for_s = 0
    async with http.ws_connect(emulator.url, headers=HEADERS) as ws:
        assert "language" in await roundtrip(ws, TEXT_REQUEST)


async def test_injected_warning_nests_under_the_requested_model(
    emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    emulator.faults.warning_code = "W0104"
    async with http.ws_connect(emulator.url, headers=HEADERS) as ws:
        reply = await roundtrip(ws, {**TEXT_REQUEST, "payload_id": "n"})
    assert reply == {
        "payload_id": "n",
        "language": {"warning": "No emotional language detected.", "code": "W0104"},
    }


async def test_control_endpoints(emulator: Emulator, http: aiohttp.ClientSession) -> None:
    url = f"{emulator.base_url}/_emulator"
    async with http.post(f"{url}/faults", json={"close_code": 1005}) as resp:
        assert resp.status == 400
        assert "WebSocket close code" in (await resp.json())["error"]
    async with http.post(f"{url}/faults", json={"eat_cake": True}) as resp:
        assert resp.status == 400
        assert "unknown fault 'eat_cake'" in (await resp.json())["error"]
    async with http.post(f"{url}/faults", json={"error": "E0300"}) as resp:
        assert (await resp.json())["error_code"] == "E0300"
    async with http.ws_connect(emulator.url, headers=HEADERS) as ws:
        assert (await roundtrip(ws, TEXT_REQUEST))["code"] == "E0300"
        async with http.get(f"{url}/stats") as resp:
            stats = await resp.json()
    assert stats["connections"] == 1
    assert stats["open"] == 1
    assert stats["requests"] == 1
    assert stats["replies"] == 1
    assert stats["faults"]["error_code"] == "E0300"


# ------------------------------------------------------------------------------------------ limits


async def test_idle_connections_are_closed(http: aiohttp.ClientSession) -> None:
    async with Emulator(EmulatorSettings(idle_timeout_s=0.3)) as emu:
        async with http.ws_connect(emu.url, headers=HEADERS, autoping=True) as ws:
            assert "language" in await roundtrip(ws, TEXT_REQUEST)
            msg = await ws.receive(timeout=TIMEOUT_S)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1000
        assert msg.extra == "idle timeout"


async def test_handshake_rate_is_limited(http: aiohttp.ClientSession) -> None:
    async with Emulator(EmulatorSettings(handshake_rate_per_s=2)) as emu:
        statuses = []
        for _ in range(3):
            async with http.get(emu.url, headers=HEADERS) as resp:  # not an upgrade: cheap, still counted
                statuses.append(resp.status)
    assert statuses[2] == 429


async def test_shutdown_closes_open_sockets_as_going_away(http: aiohttp.ClientSession) -> None:
    emu = Emulator()
    await emu.start()
    async with http.ws_connect(emu.url, headers=HEADERS) as ws:
        receiving = asyncio.ensure_future(ws.receive(timeout=TIMEOUT_S))  # a client always reads
        await asyncio.wait_for(emu.stop(), TIMEOUT_S)
        msg = await asyncio.wait_for(receiving, TIMEOUT_S)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1001


# --------------------------------------------------------------------------------------------- CLI

CLI = (
    "import argparse, sys\n"
    "from hume_emulator.emulator import add_arguments, run_from_args\n"
    "parser = argparse.ArgumentParser()\n"
    "add_arguments(parser)\n"
    "sys.exit(run_from_args(parser.parse_args(sys.argv[1:])))\n"
)


HUME_EDGE = Path(sys.executable).with_name("hume-edge")


def start_cli(*args: str, prelude: str = "", command: Optional[List[str]] = None) -> subprocess.Popen:  # type: ignore[type-arg]
    """The emulator's flags in a child process: its CLI module by default, or ``command`` (the real one)."""
    return subprocess.Popen(
        [*(command or [sys.executable, "-c", prelude + CLI]), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_cli_runs_standalone_with_keys_and_faults(http: aiohttp.ClientSession) -> None:
    flags = ["--host", "127.0.0.1", "--port", "0", "--api-key", "k1", "--api-key", "k2", "--seed", "3"]
    proc = start_cli(*flags, "--latency-ms", "1", "--idle-timeout-s", "30", "--fault", "error=E0300")
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), TIMEOUT_S)
        match = re.search(r"listening on (ws://127\.0\.0\.1:\d+/v0/stream/models)", line)
        assert match, line
        async with http.ws_connect(match.group(1), headers={API_KEY_HEADER: "k2"}) as ws:
            reply = await roundtrip(ws, {**TEXT_REQUEST, "payload_id": "cli"})
        assert (reply["code"], reply["payload_id"]) == ("E0300", "cli")
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(match.group(1), headers=HEADERS)  # test-key is not among k1, k2
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(asyncio.to_thread(proc.wait), TIMEOUT_S)
    assert code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fault", "close-code=1005"], "close_code' must be a WebSocket close code"),
        (["--fault", "error=oops"], "an error code like E0300"),
        (["--fault", "teleport=1"], "unknown fault 'teleport'"),
        (["--idle-timeout-s", "0"], "idle_timeout_s must be > 0"),
    ],
)
async def test_cli_rejects_bad_flags_with_a_clear_message(args: List[str], message: str) -> None:
    proc = start_cli("--port", "0", *args)
    _out, err = await asyncio.wait_for(asyncio.to_thread(proc.communicate), TIMEOUT_S)
    assert proc.returncode == 2
    assert message in err


async def test_cli_reports_a_busy_port(emulator: Emulator) -> None:
    proc = start_cli("--port", str(emulator.port))
    _, err = await asyncio.wait_for(asyncio.to_thread(proc.communicate), TIMEOUT_S)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{emulator.port}" in err


async def test_cli_without_opencv_loads_and_says_what_to_install() -> None:
    proc = start_cli("--port", "0", prelude="import sys\nsys.modules['cv2'] = None\n")
    _, err = await asyncio.wait_for(asyncio.to_thread(proc.communicate), TIMEOUT_S)
    assert proc.returncode == 1
    assert "pip install 'hume-edge-agent[vision]'" in err


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"]
)
async def test_control_posts_a_web_form_could_send_are_refused(
    emulator: Emulator, http: aiohttp.ClientSession, content_type: str
) -> None:
    body = '{"error_code": "E0300"}'
    async with http.post(
        f"{emulator.base_url}/_emulator/faults", data=body, headers={"Content-Type": content_type}
    ) as resp:
        assert resp.status == 415
        assert "application/json" in (await resp.json())["error"]
    assert emulator.faults.error_code is None  # nothing changed


@pytest.mark.parametrize("path", ["/_emulator/faults", "/_emulator/stats"])
async def test_control_requests_under_another_host_name_are_refused(
    emulator: Emulator, http: aiohttp.ClientSession, path: str
) -> None:
    """A DNS-rebinding page is same-origin under its own name and may send JSON (#31)."""
    headers = {"Host": f"rebind.example:{emulator.port}"}
    async with http.post(f"{emulator.base_url}{path}", json={"error_code": "E0300"}, headers=headers) as resp:
        assert resp.status == 403
    async with http.get(f"{emulator.base_url}{path}", headers=headers) as resp:
        assert resp.status == 403
    assert emulator.faults.error_code is None  # nothing changed
    for host in (f"127.0.0.1:{emulator.port}", f"localhost:{emulator.port}", "localhost"):
        async with http.get(f"{emulator.base_url}/_emulator/stats", headers={"Host": host}) as resp:
            assert resp.status == 200, host


def test_a_non_loopback_bind_is_warned_about() -> None:
    from hume_emulator.control import bind_warning

    assert bind_warning("127.0.0.1") is None
    assert bind_warning("::1") is None
    assert bind_warning("localhost") is None
    for host in ("0.0.0.0", "192.0.2.7", "kiosk.example", ""):
        warning = bind_warning(host)
        assert warning is not None
        assert "no authentication" in warning


async def test_hume_edge_emulator_without_api_serves_both(http: aiohttp.ClientSession) -> None:
    """``hume-edge emulator`` as a user starts it, no ``--api``: an agent of either backend finds its way.

    ``hume-edge run`` defaults to v1 while the emulator once defaulted to v0: the agent got HTTP 404 and
    waited 300 s (issue #30).
    """
    proc = start_cli("--port", "0", "--api-key", TEST_KEY, command=[str(HUME_EDGE), "emulator"])
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), TIMEOUT_S)
        match = re.search(r"listening on ws://(127\.0\.0\.1:\d+)/v0/stream/models and ws://\1/v1/", line)
        assert match, line
        netloc = match.group(1)
        async with http.ws_connect(f"ws://{netloc}/v1/expression/video/realtime", headers=HEADERS) as ws:
            first = json.loads(await ws.receive_str(timeout=TIMEOUT_S))  # the v1 server speaks first
        assert isinstance(first, dict), first
        assert first.get("type"), first
        async with http.ws_connect(f"ws://{netloc}/v0/stream/models", headers=HEADERS) as ws:
            reply = await roundtrip(ws, {**TEXT_REQUEST, "payload_id": "v0"})
        assert reply["payload_id"] == "v0", reply
        assert "language" in reply, reply
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(asyncio.to_thread(proc.wait), TIMEOUT_S)
    assert code == 0
