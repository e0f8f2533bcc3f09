"""The whole agent on the v1 backend: synthetic camera and espeak-ng voice, the v1 emulator, mosquitto.

Capture, sessions, summaries and MQTT are the same code as with v0 (tests/integration/test_v0_end_to_end.py);
only the backend differs: v1, the default.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

import pytest

from agent import config as config_mod
from agent import service
from agent.hume.v1.client import V1Backend
from hume_emulator.v1.emulator import EmulatorV1
from tests.support.emulator_v1 import TEST_KEY

TIMEOUT_S = 45.0


def v1_config(emu: EmulatorV1, broker: Any, tmp_path: Path) -> config_mod.Config:
    return config_mod.from_dict(
        {
            "device_id": "kiosk-v1",
            "hume": {
                "backend": "v1",
                "api_key": TEST_KEY,
                "v1": {"url": emu.base_url, "min_session_s": 2.0},
            },
            "camera": {"source": "synthetic"},
            "microphone": {"source": "speech"},
            "mqtt": {"host": broker.host, "port": broker.port},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            "summary": {"window_s": 2.0},
            "session": {"debounce_s": 0.5},
        },
        environ={},
    )


async def test_top_emotions_reach_the_broker_over_v1(
    emulator_v1: EmulatorV1,
    mosquitto: Any,
    subscriber: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))  # the status snapshot stays out of the checkout
    cfg = v1_config(emulator_v1, mosquitto, tmp_path)
    assert isinstance(service.make_backend(cfg), V1Backend)
    sub = subscriber(mosquitto, ["hume-edge/kiosk-v1/#"])
    stop = asyncio.Event()
    agent = asyncio.ensure_future(service.run_agent(cfg, stop))
    try:
        got = await sub.until(
            lambda msgs: {"summary/face", "summary/prosody"} <= {m.topic.split("/", 2)[2] for m in msgs},
            TIMEOUT_S,
        )
    finally:
        stop.set()
        await asyncio.wait_for(agent, TIMEOUT_S)
    assert got, f"no face and prosody summaries; topics seen: {sorted({m.topic for m in sub.messages})}"
    assert {s.endpoint for s in emulator_v1.sessions} <= {"audio", "video"}
