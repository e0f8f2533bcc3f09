"""A visit's first frame is read when the visit's media may leave, not at the camera's next slot.

The real agent (presence mode, v0 emulator, a real mosquitto) watches a synthetic camera at 0.5 fps: an
empty wall, then a visitor. Frames captured before the visit's notice was out may not be sent, so before
this change the first frame sent was the camera's next one after the start: 0.5 to 2 s of the visit
measured by nothing at this rate (0.5 s at the default 2 fps, benchmark 8). Now the session starts when
its debounce ends (the tick wakes for it) and the camera is asked for a frame once the notice is out.

And the visit is announced from the debounce's first frame: the frames captured once that notice is out
are held (in memory) while the debounce runs and sent when it qualifies the visit, so the first frame
sent is the one after the frame that showed the visitor, not one after the whole debounce; a glance
shorter than the debounce raises and withdraws a notice and sends nothing.
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
from agent.hub import Agent
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


class Acks:
    """Wall times at which the broker acknowledged the visit's notice (the desk's gate turned published)."""

    def __init__(self) -> None:
        self.at: List[float] = []
        self.agent: Optional[Agent] = None

    def watch(self, agent: Agent) -> None:
        self.agent = agent
        delivered = agent.desk.delivered

        def recording(seq: int) -> None:
            was = agent.desk.notice.state().published
            delivered(seq)
            state = agent.desk.notice.state()
            if state.active and state.published and not was:
                self.at.append(time.time())

        agent.desk.delivered = recording  # type: ignore[method-assign]


async def run_visit(
    camera: SyntheticCamera,
    fps: float,
    frames: int,
    *,
    emulator: Emulator,
    mosquitto: Broker,
    tmp_path: Any,
    debounce_s: float = DEBOUNCE_S,
    acks: Optional[Acks] = None,
    until: Any = None,
) -> Timeline:
    """The agent watching ``camera`` until ``frames`` frames were sent (or ``until()`` holds)."""
    cfg: Config = config_mod.from_dict(
        {
            "device_id": "first-frame-kiosk",
            "hume": {"api_key": TEST_KEY, "models": ["face"], "backend": "v0", "v0": {"url": emulator.url}},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            "session": {"debounce_s": debounce_s},
            "camera": {"fps": fps, "static_threshold": 0},
        },
        environ={},
    )
    made: List[Timeline] = []

    def recording(c: Config) -> Backend:
        made.append(Timeline(service.make_backend(c)))
        return made[0]

    stop = asyncio.Event()
    task = asyncio.ensure_future(
        service.run_agent(
            cfg,
            stop,
            sources=(camera, None),
            make_backend=recording,
            on_agent=None if acks is None else acks.watch,
        )
    )
    try:
        await eventually(
            (lambda: bool(made) and len(made[0].frames) >= frames) if until is None else until,
            60.0,
            what=f"{frames} frames sent" if until is None else "the scene played",
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
    acks = Acks()
    timeline = await run_visit(
        camera, FPS, 1, emulator=emulator, mosquitto=mosquitto, tmp_path=tmp_path, acks=acks
    )
    out = acks.at[0]
    first = timeline.frames[0]
    assert first >= out, "a frame captured before the visit's notice was acknowledged was sent"
    # The camera's next slot was up to 1 / FPS = 2 s after the notice: now read within a fraction of it.
    assert first - out < 0.5, f"the visit's first frame was captured {first - out:.2f} s after its notice"


async def test_a_clock_stepped_back_during_a_visit_does_not_hold_its_frames(
    emulator: Emulator, mosquitto: Broker, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which frames came before the notice is decided by their order, not their wall-clock stamps."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    camera = SteppedClock(640, 480, 4.0)
    timeline = await run_visit(camera, 4.0, 6, emulator=emulator, mosquitto=mosquitto, tmp_path=tmp_path)
    assert min(timeline.frames) < timeline.boundaries[0] - 1800  # frames stamped after the step were sent


def _wall_at(camera: SyntheticCamera, scene_s: float) -> float:
    """The wall time ``scene_s`` seconds into the camera's scene."""
    return time.time() - (time.monotonic() - camera._started) + scene_s


async def test_a_visits_first_frames_are_held_through_its_debounce_and_sent_after_the_notice(
    emulator: Emulator, mosquitto: Broker, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 2 fps with a 2 s debounce the first frame sent used to be captured >= 2 s after the visitor came;
    now within the camera's phase (< 0.5 s) plus the notice's acknowledgement, and never before it."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    camera = SyntheticCamera(640, 480, 2.0, scene=[SceneStep(1.0, None), SceneStep(3600.0, "a")])
    acks = Acks()
    timeline = await run_visit(
        camera, 2.0, 6, emulator=emulator, mosquitto=mosquitto, tmp_path=tmp_path, debounce_s=2.0, acks=acks
    )
    arrived = _wall_at(camera, 1.0)
    first = min(timeline.frames)
    assert acks.at, "the visit's notice was never acknowledged"
    assert first >= acks.at[0], "a frame captured before the visit's notice was acknowledged was sent"
    # The debounce (2 s) no longer counts: a frame period (0.5 s), the ack and the read, on a loaded machine.
    assert first - arrived < 1.2, f"the visit's first frame sent was captured {first - arrived:.2f} s in"
    assert timeline.frames == sorted(timeline.frames), "the held frames went out after later ones"
    assert first < timeline.boundaries[0] <= max(timeline.frames)  # held through the debounce, then sent


async def test_a_glance_shorter_than_the_debounce_raises_and_withdraws_a_notice_and_sends_nothing(
    emulator: Emulator, mosquitto: Broker, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    camera = SyntheticCamera(
        640, 480, 2.0, scene=[SceneStep(1.0, None), SceneStep(1.5, "a"), SceneStep(3600.0, None)]
    )
    acks = Acks()

    def withdrawn() -> bool:
        agent = acks.agent
        return agent is not None and bool(acks.at) and not agent.desk.notice.active

    timeline = await run_visit(
        camera, 2.0, 0, emulator=emulator, mosquitto=mosquitto, tmp_path=tmp_path, debounce_s=3.0,
        acks=acks, until=withdrawn,
    )  # fmt: skip
    assert acks.agent is not None
    assert acks.agent.desk.notice.notices == 1
    assert timeline.frames == []
    assert timeline.boundaries == []
    assert not acks.agent.held.frames  # the glance's frames were dropped from memory
