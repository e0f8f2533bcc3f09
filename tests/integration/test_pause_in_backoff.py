"""A pause means nothing more leaves, even media captured before it while Hume was unreachable (issue #31).

The hostile review's case, on both backends: a visitor present, Hume unreachable for about 6 s (the link in
backoff, media of the visit queued), then ``cmd/privacy pause`` through the broker, as an operator or a
dashboard sends it. Hume then comes back (a proxy starts listening on the port the agent was pointed at);
the emulator must receive nothing while the pause lasts: no payload, no v1 session. Before the fix, v1 opened
two sessions and sent 4.8 s of audio and 3 frames captured before the press, v0 the newest frame and the
queued audio. A resume afterwards measures again (the route to Hume works: the zero is not a dead link).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Optional, Tuple, Union

import pytest
import pytest_asyncio

from agent import config as config_mod
from agent.capture.synthetic import SceneStep, SyntheticCamera
from agent.hume.v1.endpoint import MAX_DELAY_S
from agent.service import run_agent
from hume_emulator.emulator import Emulator
from hume_emulator.v1.emulator import EmulatorV1
from tests.support.kiosk import PREFIX, SceneVoice, agent_config, speech
from tests.support.mosquitto import Broker, Subscriber
from tests.support.ports import free_port
from tests.support.proxy import Proxy
from tests.support.waits import eventually

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

OUTAGE_S = 6.0
"""How long Hume is unreachable while the visitor is there (the review's 6 s)."""


def latest(sub: Subscriber, suffix: str) -> Optional[Dict[str, Any]]:
    msgs = [m for m in sub.on(suffix) if m.topic == PREFIX + suffix]
    return json.loads(msgs[-1].payload) if msgs else None


Hume = Tuple[Emulator, Union[Emulator, EmulatorV1]]
"""(the v0 emulator, the one the agent talks to: that one or a v1 emulator)."""


@pytest_asyncio.fixture(params=["v0", "v1"])
async def hume_pair(request: Any, emulator: Emulator) -> AsyncIterator[Hume]:
    if request.param == "v0":
        yield emulator, emulator
    else:
        async with EmulatorV1() as emu:
            yield emulator, emu


def payloads(hume: Union[Emulator, EmulatorV1]) -> int:
    return len(hume.requests)


async def test_a_pause_in_backoff_sends_nothing_captured_before_it(
    hume_pair: Hume,
    mosquitto: Broker,
    subscriber: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator, hume = hume_pair
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    assert sub.connected.wait(10)
    hume_port = free_port()  # nothing listens here yet: Hume is unreachable
    if isinstance(hume, EmulatorV1):
        url = f"http://127.0.0.1:{hume_port}"
        backend: Dict[str, Any] = {"backend": "v1", "v1": {"url": url, "min_session_s": 2.0}}
    else:
        url = hume.url.replace(f":{hume.port}/", f":{hume_port}/")
        backend = {"backend": "v0", "v0": {"url": url, "backoff_initial_s": 0.5, "backoff_max_s": 2.0}}
    data = agent_config(emulator, mosquitto, tmp_path)
    data["hume"].update(backend)
    camera = SyntheticCamera(640, 480, 2.0, scene=[SceneStep(3600.0, "a")])
    stop = asyncio.Event()
    sources = (camera, SceneVoice(camera, speech()))
    task = asyncio.ensure_future(run_agent(config_mod.from_dict(data, environ={}), stop, sources=sources))
    proxy: Optional[Proxy] = None
    try:
        assert await sub.until(lambda ms: (latest(sub, "notice") or {}).get("active") is True, 30)
        await asyncio.sleep(OUTAGE_S)  # scenario: Hume unreachable while the visitor is there
        sub.publish(PREFIX + "cmd/privacy", b"pause")
        assert await sub.until(lambda ms: (latest(sub, "notice") or {}).get("active") is False, 10)
        assert await sub.until(
            lambda ms: any(m.topic == PREFIX + "cmd/result" and m.json()["ok"] for m in ms), 10
        )
        proxy = Proxy(hume.host, hume.port, port=hume_port).start()  # Hume is back
        if isinstance(hume, EmulatorV1):
            # Every endpoint's next attempt comes within its largest backoff delay.
            await asyncio.sleep(MAX_DELAY_S + 2.0)  # scenario: longer than any v1 backoff delay
            assert hume.connections == 0, "a v1 session was opened while paused"
        else:
            # v0 checks the key once it can (a socket, no payload); whatever was queued would follow at once.
            assert await eventually(lambda: proxy is not None and proxy.connections >= 1, 15)
            await asyncio.sleep(3.0)  # scenario: time for queued payloads to follow the connect
        assert payloads(hume) == 0, f"{payloads(hume)} payloads captured before the pause reached Hume"

        sub.publish(PREFIX + "cmd/privacy", b"resume")
        assert await eventually(lambda: payloads(hume) > 0, 45), "measuring did not resume after the pause"
    finally:
        stop.set()
        assert await asyncio.wait_for(task, timeout=30) == 0
        if proxy is not None:
            proxy.stop()
