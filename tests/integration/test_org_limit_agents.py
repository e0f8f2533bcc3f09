"""Several real agents against one organisation's request limit, scaled down (6 opens per 10 s).

Three ``hume-edge run`` processes (synthetic visitor, face only, a new visit every 10 s) share one
organisation on a ``hume-edge emulator`` process with ``--org-requests-per-min 6 --org-window-s 10``.
Another kiosk of the organisation (this test, with its own key) spends every open the moment it frees, as a
fleet reconnecting after an outage would. While it does: every agent's status file and ``hume-edge fleet`` say
``rate_limited``, and no agent retries faster than the limit's floor. Then it stops: every agent measures
(face results in its status) within the window plus the agents' wait cap (``hume.rate_limit_max_s``, scaled
down with the window). Throughout, no 10 s window holds more than 6 admitted opens (plus one, the bound the
issue allows), and no agent exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import aiohttp
import pytest

from agent.backoff import RATE_LIMIT_FLOOR_S
from agent.ops import status as status_mod
from tests.support.mosquitto import Broker
from tests.support.ports import free_port
from tests.support.processes import port_open
from tests.support.waits import eventually, wait_until

EXE = Path(sys.executable).with_name("hume-edge")
LIMIT, WINDOW_S = 6, 10.0
KIOSK_KEY, OTHER_KEY = "kiosk-key", "other-kiosk-key"
AGENTS = ("kiosk-a", "kiosk-b", "kiosk-c")
START_TIMEOUT_S = 90.0
"""Three agents starting at once on a loaded 2-core machine (OpenCV, the synthetic scene) take a while."""
HOG_S = 15.0
MEASURE_TIMEOUT_S = 2 * WINDOW_S + 30.0
"""Retry-After (at most the window) + the jittered wait (at most rate_limit_max_s = the window) + load."""
CONFIG = """\
device_id = "{device}"
[hume]
api_key = "{key}"
backend = "v1"
models = ["face"]
rate_limit_max_s = {window_s}
[hume.v1]
url = "http://127.0.0.1:{emulator}"
min_session_s = 1
[camera]
source = "synthetic"
fps = 2
[microphone]
source = "none"
[session]
debounce_s = 0.5
max_session_s = 10
[mqtt]
host = "127.0.0.1"
port = {broker}
health_interval_s = 1
discovery = false
"""


class Proc:
    def __init__(self, args: List[str], log: Path, env: Optional[Dict[str, str]] = None, cwd: Path = Path()):
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd
            )

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Agent(Proc):
    def __init__(self, workdir: Path, device: str, emulator: int, broker: int) -> None:
        self.device = device
        self.dir = workdir / device
        self.dir.mkdir()
        config = self.dir / "config.toml"
        config.write_text(
            CONFIG.format(device=device, key=KIOSK_KEY, window_s=WINDOW_S, emulator=emulator, broker=broker)
        )
        env = {k: v for k, v in os.environ.items() if k not in ("HUME_API_KEY", "NOTIFY_SOCKET")}
        env.update(STATE_DIRECTORY=str(self.dir / "state"), RUNTIME_DIRECTORY=str(self.dir / "run"))
        super().__init__([str(EXE), "run", "--config", str(config)], self.dir / "agent.log", env, self.dir)

    def hume(self) -> Dict[str, Any]:
        snap = status_mod.read(self.dir / "run" / status_mod.FILE_NAME)
        hume = (snap or {}).get("hume")
        return hume if isinstance(hume, dict) else {}

    def video(self) -> Dict[str, Any]:
        video = self.hume().get("links", {}).get("video")
        return video if isinstance(video, dict) else {}


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    emu = Proc(
        [str(EXE), "emulator", "--api", "v1", "--host", "127.0.0.1", "--port", str(port),
         "--api-key", KIOSK_KEY, "--api-key", OTHER_KEY,
         "--org-requests-per-min", str(LIMIT), "--org-window-s", str(WINDOW_S)],
        tmp_path / "emulator.log",
    )  # fmt: skip
    try:
        assert wait_until(lambda: port_open(port), 30), emu.tail()
        yield port
    finally:
        emu.stop()


def stats(port: int) -> Dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/v1/stats", timeout=10) as resp:
        body: Dict[str, Any] = json.loads(resp.read())
    return body["org_limit"]


def most_in_a_window(times: List[float]) -> int:
    times = sorted(times)
    return max((sum(1 for u in times[i:] if u - t < WINDOW_S) for i, t in enumerate(times)), default=0)


async def hog(port: int, stop: asyncio.Event) -> int:
    """Another kiosk of the organisation: opens a session whenever the budget has one, at once."""
    opened = 0
    url = f"ws://127.0.0.1:{port}/v1/expression/video/realtime"
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            try:
                async with http.ws_connect(url, headers={"X-Hume-Api-Key": OTHER_KEY}):
                    opened += 1
            except aiohttp.WSServerHandshakeError:
                pass
            await asyncio.sleep(0.1)  # polling: a slot frees as the oldest open leaves the window
    return opened


def fleet_states(broker: int) -> Dict[str, Any]:
    proc = subprocess.run(
        [str(EXE), "fleet", "--host", "127.0.0.1", "--port", str(broker), "--json"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return {row["device"]: row.get("hume_state") for row in json.loads(proc.stdout)["kiosks"]}


@pytest.mark.slow
async def test_agents_at_the_organisation_limit_wait_rate_limited_and_measure_once_it_allows(
    emulator: int, mosquitto: Broker, tmp_path: Path
) -> None:
    stop_hog = asyncio.Event()
    hogging = asyncio.ensure_future(hog(emulator, stop_hog))
    agents = [Agent(tmp_path, device, emulator, mosquitto.port) for device in AGENTS]
    try:
        await eventually(
            lambda: all(a.hume().get("state") == "rate_limited" for a in agents),
            START_TIMEOUT_S,
            what="every agent's status says rate_limited",
        )
        hog_from = time.monotonic()
        assert set(fleet_states(mosquitto.port).values()) == {"rate_limited"}
        refused_before = [a.video().get("rate_limited", 0) for a in agents]
        await asyncio.sleep(HOG_S)  # scenario: the organisation stays at its limit this long
        assert all(a.hume().get("state") == "rate_limited" for a in agents)
        hog_s = time.monotonic() - hog_from
        for agent, before in zip(agents, refused_before):
            tries = agent.video().get("rate_limited", 0) - before
            assert 1 <= tries <= hog_s / RATE_LIMIT_FLOOR_S / 2, (agent.device, tries)
        stop_hog.set()
        released = time.monotonic()
        await eventually(
            lambda: all(a.video().get("replies", 0) > 0 for a in agents),
            MEASURE_TIMEOUT_S,
            what="every agent measured once the budget allowed",
        )
        print(f"all three measured {time.monotonic() - released:.1f} s after the organisation's budget freed")
        assert all(a.proc.poll() is None for a in agents), "an agent exited"
        org = stats(emulator)
        opens = [at for at, _, admitted in org["events"] if admitted]
        print(
            f"opens {org['admitted']}, refused {org['refused']}, most in one window {most_in_a_window(opens)}"
        )
        assert most_in_a_window(opens) <= LIMIT + 1
    finally:
        stop_hog.set()
        await hogging
        for agent in agents:
            agent.stop()
    for agent in agents:
        assert agent.proc.returncode == 0, agent.tail()
