"""A visit's first frame is read when the visit's media may leave, not at the camera's next slot.

The real agent (presence mode, v0 emulator, a real mosquitto) watches a synthetic camera at 0.5 fps: an
empty wall, then a visitor. Frames captured before the visit's notice was out may not be sent, so before
this change the first frame sent was the camera's next one after the start: 0.5 to 2 s of the visit
measured by nothing at this rate (0.5 s at the default 2 fps, benchmark 8). Now the session starts when
its debounce ends (the tick wakes for it) and the camera is asked for a frame once the notice is out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, List, Optional

import pytest

from agent import config as config_mod
from agent import service
from agent.capture.synthetic import SceneStep, SyntheticCamera
from agent.config import Config
from agent.hume.backend import Backend
from agent.media.frames import Frame
from hume_emulator.emulator import Emulator
from tests.support.emulator import TEST_KEY
from tests.support.mosquitto import Broker
from tests.support.recorder import Recorder
from tests.support.waits import eventually

pytestmark = pytest.mark.timeout(90)

FPS = 0.5
DEBOUNCE_S = 0.1


class Timeline(Recorder):
    """The real backend, with the wall time of each boundary and the capture time of each frame sent."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.boundaries: List[float] = []
        self.frames: List[float] = []

    def mark_boundary(self) -> None:
        self.boundaries.append(time.time())
        super().mark_boundary()

    def send_frame(self, jpeg: bytes, captured_at: float, session_id: Optional[str]) -> None:
        self.frames.append(captured_at)
        super().send_frame(jpeg, captured_at, session_id)


class SteppedClock(SyntheticCamera):
    """Stamps frames an hour back from its 4th frame on: the wall clock stepped back (a Pi's NTP sync)."""

    def _read(self) -> Frame:
        frame = super()._read()
        return Frame(frame.image, frame.fmt, frame.captured_at - (3600.0 if self.frames_read >= 3 else 0.0))


async def run_visit(
    camera: SyntheticCamera, fps: float, frames: int, *, emulator: Emulator, mosquitto: Broker, tmp_path: Any
) -> Timeline:
    """The agent watching ``camera`` until ``frames`` frames were sent."""
    cfg: Config = config_mod.from_dict(
        {
            "device_id": "first-frame-kiosk",
            "hume": {"api_key": TEST_KEY, "models": ["face"], "backend": "v0", "v0": {"url": emulator.url}},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            "session": {"debounce_s": DEBOUNCE_S},
            "camera": {"fps": fps, "static_threshold": 0},
        },
        environ={},
    )
    made: List[Timeline] = []

    def recording(c: Config) -> Backend:
        made.append(Timeline(service.make_backend(c)))
        return made[0]

    stop = asyncio.Event()
    task = asyncio.ensure_future(service.run_agent(cfg, stop, sources=(camera, None), make_backend=recording))
    try:
        await eventually(
            lambda: bool(made) and len(made[0].frames) >= frames, 60.0, what=f"{frames} frames sent"
        )
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    return made[0]


async def test_the_first_frame_of_a_visit_is_read_once_its_notice_is_out(
    emulator: Emulator, mosquitto: Broker, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    camera = SyntheticCamera(640, 480, FPS, scene=[SceneStep(1.0, None), SceneStep(3600.0, "a")])
    timeline = await run_visit(camera, FPS, 1, emulator=emulator, mosquitto=mosquitto, tmp_path=tmp_path)
    start = timeline.boundaries[0]
    first = timeline.frames[0]
    assert first >= start, "a frame captured before the visit started (before its notice) was sent"
    # The camera's next slot was up to 1 / FPS = 2 s after the start: now read within a fraction of it.
    assert first - start < 0.5, f"the visit's first frame was captured {first - start:.2f} s after its start"


async def test_a_clock_stepped_back_during_a_visit_does_not_hold_its_frames(
    emulator: Emulator, mosquitto: Broker, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which frames came before the notice is decided by their order, not their wall-clock stamps."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    camera = SteppedClock(640, 480, 4.0)
    timeline = await run_visit(camera, 4.0, 6, emulator=emulator, mosquitto=mosquitto, tmp_path=tmp_path)
    assert min(timeline.frames) < timeline.boundaries[0] - 1800  # frames stamped after the step were sent
