"""The running agent's backends count protocol drift per link (unknown message types, fields, close codes),
log each kind once, carry the counts in their status (and so in health), and keep measuring."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, List

import pytest
import pytest_asyncio

from agent.aio import cancel_and_wait, spawn
from agent.config import HumeConfig, HumeV0Config, HumeV1Config
from agent.hume.v0.client import V0Backend
from agent.hume.v1.client import V1Backend
from hume_emulator.emulator import Emulator, EmulatorSettings
from hume_emulator.v1.emulator import EmulatorV1, EmulatorV1Settings
from tests.support.emulator import astronaut_bgr, encode_image
from tests.support.emulator_v1 import TEST_KEY
from tests.support.tasks import STOP_TIMEOUT_S
from tests.support.waits import eventually

JPEG = encode_image(astronaut_bgr())
TIMEOUT_S = 20.0


@pytest_asyncio.fixture
async def emulator_v1() -> AsyncIterator[EmulatorV1]:
    async with EmulatorV1(EmulatorV1Settings(api_keys=(TEST_KEY,))) as emu:
        yield emu


async def test_v1_counts_unknown_types_fields_and_close_codes_and_logs_each_once(
    emulator_v1: EmulatorV1, caplog: pytest.LogCaptureFixture
) -> None:
    emulator_v1.faults.drift_field = 1
    emulator_v1.faults.drift_message = 1
    emulator_v1.faults.drift_close_code = 4001
    cfg = HumeConfig(
        backend="v1",
        api_key=TEST_KEY,
        models=("face",),
        v1=HumeV1Config(url=emulator_v1.base_url, min_session_s=0),
    )
    backend = V1Backend(cfg)
    tasks: List[asyncio.Task[None]] = [spawn(backend.run(), "test.v1")]
    try:
        with caplog.at_level(logging.WARNING, logger="agent.hume"):
            for visit in ("a", "b"):
                backend.send_frame(JPEG, time.time(), visit)
                obs = await asyncio.wait_for(backend.receive(), TIMEOUT_S)
                assert obs.session_id == visit  # drift changes nothing about measuring
            backend.mark_boundary()
            await eventually(
                lambda: dict(backend.status().link("video").counters).get("unknown_close_codes", 0) >= 2,
                TIMEOUT_S,
                what="both sessions' close code 4001 counted",
            )
    finally:
        assert not await cancel_and_wait(tasks, timeout_s=STOP_TIMEOUT_S)
    link = backend.status().link("video")
    counters = dict(link.counters)
    unknown = dict(link.unknown)
    assert counters["unknown_types"] == 2  # one emulated.drift per session
    assert counters["unknown_fields"] >= 8  # every message of both sessions
    assert unknown["type:emulated.drift"] == 2
    assert unknown["close_code:4001"] == 2
    assert unknown["field:measurement.result.emulated_drift"] == 2
    assert backend.status().to_json()["links"]["video"]["unknown"]["type:emulated.drift"] == 2  # type: ignore[index]
    drift_lines = [r.getMessage() for r in caplog.records if "protocol drift" in r.getMessage()]
    assert len(drift_lines) == len(unknown)  # each kind logged once, whatever it repeats


async def test_v0_counts_an_unknown_close_code() -> None:
    async with Emulator(EmulatorSettings(api_keys=(TEST_KEY,))) as emu:
        emu.faults.update({"close-after": 1, "close-code": 4002})
        cfg = HumeConfig(backend="v0", api_key=TEST_KEY, models=("face",), v0=HumeV0Config(url=emu.url))
        backend = V0Backend(cfg)
        tasks: List[asyncio.Task[None]] = [spawn(backend.run(), "test.v0")]
        try:
            backend.send_frame(JPEG, time.time(), "visit")
            await asyncio.wait_for(backend.receive(), TIMEOUT_S)
            await eventually(
                lambda: dict(backend.status().link("video").unknown).get("close_code:4002", 0) >= 1,
                TIMEOUT_S,
                what="close code 4002 counted as drift",
            )
        finally:
            assert not await cancel_and_wait(tasks, timeout_s=STOP_TIMEOUT_S)
        assert dict(backend.status().link("video").counters)["unknown_close_codes"] >= 1
