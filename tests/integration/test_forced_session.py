"""A forged ``cmd/session start`` on an open broker cannot stream for ``max_session_s`` with nobody present.

Before: one ``start`` held its session until ``end`` or ``max_session_s`` (900 s, 120 paid payloads a minute)
whatever the camera saw. Now a commanded session ends once nobody has been present for ``session.grace_s``
(reason ``absence``), in presence and in command mode; ``session.hold_commanded = true`` keeps the old hold.
(#31.) The kiosk here is empty: a synthetic camera with no face, a microphone hearing silence.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, List

import pytest

from agent import config as config_mod
from agent.capture.synthetic import SceneStep, SyntheticCamera
from agent.service import run_agent
from hume_emulator.emulator import Emulator
from tests.support.kiosk import PREFIX, SceneVoice, agent_config, speech
from tests.support.mosquitto import Broker, Subscriber

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

GRACE_S = 2.0


def events(sub: Subscriber) -> List[Any]:
    msgs = [m.json() for m in sub.on("session") if m.topic == PREFIX + "session" and m.payload]
    return [(p["event"], p.get("reason")) for p in msgs]


@pytest.fixture(params=["presence", "command"])
def mode(request: Any) -> str:
    return str(request.param)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path``, also the runtime directory (the status snapshot stays out of the checkout)."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    return tmp_path


async def test_a_forced_start_with_nobody_present_ends_after_grace(
    mode: str, emulator: Emulator, mosquitto: Broker, subscriber: Any, workdir: Path
) -> None:
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    assert sub.connected.wait(10)
    camera = SyntheticCamera(640, 480, 2.0, scene=[SceneStep(3600.0, None)])
    data = agent_config(emulator, mosquitto, workdir, session={"mode": mode, "grace_s": GRACE_S})
    stop = asyncio.Event()
    sources = (camera, SceneVoice(camera, speech()))
    task = asyncio.ensure_future(run_agent(config_mod.from_dict(data, environ={}), stop, sources=sources))
    try:
        assert await sub.until(
            lambda ms: any(m.topic == PREFIX + "status" and m.payload == b"online" for m in ms), 30
        )
        sub.publish(PREFIX + "cmd/session", b"start")
        assert await sub.until(lambda ms: ("start", "command") in events(sub), 20)
        ended = await sub.until(lambda ms: ("end", "absence") in events(sub), 20)
        assert ended, f"a commanded session with nobody present was not ended: {events(sub)}"
    finally:
        stop.set()
        assert await asyncio.wait_for(task, timeout=30) == 0
    assert events(sub)[:2] == [("start", "command"), ("end", "absence")]
