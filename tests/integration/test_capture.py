"""Cameras for real: a video file through OpenCV into the emulator, and cameras that fail and come back."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from pathlib import Path
from typing import AsyncIterator, Callable, List

import aiohttp
import cv2
import numpy as np
import pytest

from agent.capture.camera import FrameSource, OpenCVCamera
from agent.capture.factory import open_camera
from agent.capture.synthetic import SceneStep, SyntheticCamera
from agent.config import CameraConfig, HumeConfig
from agent.errors import AgentError
from agent.hume.types import OutgoingMedia
from agent.hume.v0.payloads import PayloadBuilder
from agent.media.frames import Frame
from agent.media.video import FramePipeline
from hume_emulator.emulator import Emulator
from tests.support.emulator import TEST_KEY
from tests.support.waits import eventually

FAST_RETRY = {"retry_initial_s": 0.05, "retry_max_s": 0.2}
SCENE = [SceneStep(1.0, "a"), SceneStep(1.0, None), SceneStep(1.0, "b")]


def write_clip(path: Path, fps: float = 10.0) -> List[np.ndarray]:
    """A 3 s MJPG clip of the synthetic scene (face a, nobody, face b), as a webcam recording would be."""
    cam = SyntheticCamera(640, 480, scene=SCENE)
    frames = [cam.render(i / fps) for i in range(int(3 * fps))]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    for f in frames:
        writer.write(f)
    writer.release()
    return frames


class Collector:
    """Runs a source's ``frames()`` in a task, keeping what arrives, so a test can act in between."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.frames: List[Frame] = []
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        async for frame in self.source.frames():
            self.frames.append(frame)

    async def until(self, what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        await eventually(predicate, timeout, what=what)  # device state has no event to wait on

    async def stop(self) -> None:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(self._task, 5)


async def _faces_seen_by_emulator(emulator: Emulator, jpegs: List[bytes]) -> List[list]:  # type: ignore[type-arg]
    """Send each JPEG as the v0 client does (its payload builder) and return the face predictions."""
    builder = PayloadBuilder(HumeConfig(models=("face",)), ("face",))
    found = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(emulator.url, headers={"X-Hume-Api-Key": TEST_KEY}) as ws,
    ):
        for i, jpeg in enumerate(jpegs):
            msg = builder.build(OutgoingMedia("frame", jpeg, 0.0, None), f"f{i}", False)
            await ws.send_str(msg.to_json())
            reply = await asyncio.wait_for(ws.receive_json(), timeout=10)
            assert "error" not in reply, reply
            found.append(reply.get("face", {}).get("predictions") or [])
    return found


async def test_video_file_through_opencv_shows_the_emulator_each_face(
    emulator: Emulator, tmp_path: Path
) -> None:
    clip = tmp_path / "visit.avi"
    originals = write_clip(clip)
    camera = OpenCVCamera(str(clip), 640, 480, fps=20.0, **FAST_RETRY)
    pipeline = FramePipeline(CameraConfig(fps=20.0, static_threshold=0.0), max_fps=20.0)
    frames = camera.frames()
    try:
        got = [await asyncio.wait_for(frames.__anext__(), timeout=10) for _ in range(35)]
    finally:
        await frames.aclose()
    assert all(f.fmt == "bgr" and f.image.shape == (480, 640, 3) for f in got)
    # Read back in order (MJPG is lossy), and the file loops: frame 30 is frame 0 again.
    assert np.abs(got[12].image.astype(int) - originals[12].astype(int)).mean() < 3
    assert np.abs(got[30].image.astype(int) - originals[0].astype(int)).mean() < 3

    encoded = [pipeline.process(got[i]) for i in (5, 15, 25)]
    jpegs = [e.jpeg for e in encoded if e is not None]
    assert len(jpegs) == 3
    a, nobody, b = await _faces_seen_by_emulator(emulator, jpegs)
    assert nobody == []
    assert len(a) == len(b) == 1
    centre = [p["bbox"]["x"] + p["bbox"]["w"] / 2 for p in (a[0], b[0])]
    assert centre[0] < 320 < centre[1]  # face a on the left, face b on the right
    assert min(a[0]["bbox"]["w"], b[0]["bbox"]["w"]) >= 60  # above the API's default minimum face size


async def test_video_file_lost_mid_run_is_reopened_when_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clip = tmp_path / "visit.avi"
    write_clip(clip)
    backup = (tmp_path / "visit.avi").read_bytes()
    caplog.set_level(logging.INFO, logger="agent.capture.camera")
    collector = Collector(OpenCVCamera(str(clip), 640, 480, fps=30.0, **FAST_RETRY))
    try:
        await collector.until("first frames", lambda: len(collector.frames) >= 3)
        os.truncate(clip, 0)  # the open file breaks under the reader...
        clip.unlink()  # ...and is gone when it tries to reopen
        await collector.until("the loss", lambda: collector.source.recovery.lost)
        await collector.until("failed reopen attempts", lambda: collector.source.recovery.failures >= 2)
        count = len(collector.frames)
        clip.write_bytes(backup)
        await collector.until("frames again", lambda: len(collector.frames) >= count + 5)
        assert not collector.source.recovery.lost
        assert collector.source.recovery.outages == 1
    finally:
        await collector.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "unavailable" in m]) == 1  # said once, not per retry
    assert len([m for m in lines if "is back after" in m]) == 1


class FlakyCamera(FrameSource):
    """A device that is absent for its first ``absent`` opens and fails its ``fail_at``-th read."""

    def __init__(self, absent: int, fail_at: int) -> None:
        self.absent, self.fail_at = absent, fail_at
        self.opens = self.reads = self.closes = 0
        super().__init__(fps=50.0, **FAST_RETRY)

    def describe(self) -> str:
        return "flaky camera"

    def _open(self) -> None:
        self.opens += 1
        if self.opens <= self.absent:
            raise OSError("no such device")

    def _read(self) -> Frame:
        self.reads += 1
        if self.reads == self.fail_at:
            raise OSError("device unplugged")
        return Frame(np.zeros((4, 4, 3), np.uint8), "bgr", float(self.reads))

    def _close(self) -> None:
        self.closes += 1


async def test_absent_then_failing_device_recovers_and_is_closed_each_time() -> None:
    cam = FlakyCamera(absent=3, fail_at=5)
    collector = Collector(cam)
    try:
        await collector.until("10 frames", lambda: len(collector.frames) >= 10)
    finally:
        await collector.stop()
    # The final close runs on the device thread after cancellation; close() waits for it and the thread.
    assert await cam.close()
    assert "flaky camera" not in device_threads()
    assert cam.opens == 5  # 3 absent, 1 until the failed read, 1 after
    assert cam.recovery.failures == 4
    assert cam.recovery.outages == 2
    assert cam.closes >= 2
    assert [f.captured_at for f in collector.frames[:5]] == [1.0, 2.0, 3.0, 4.0, 6.0]


def device_threads() -> List[str]:
    return [t.name.split(":", 1)[1] for t in threading.enumerate() if t.name.startswith("camera:")]


class StuckCamera(FlakyCamera):
    """A read that blocks until the test lets it go: a driver hanging inside native code."""

    def __init__(self) -> None:
        super().__init__(absent=0, fail_at=0)
        self.reading, self.release = threading.Event(), threading.Event()

    def describe(self) -> str:
        return "stuck camera"

    def _read(self) -> Frame:
        self.reading.set()
        self.release.wait()
        return super()._read()


async def test_close_waits_for_the_device_thread_and_says_when_it_is_stuck() -> None:
    """A stopping agent waits for the camera's thread (a process exiting while it is inside OpenCV or
    libcamera can abort in the C++ runtime), but not forever."""
    cam = StuckCamera()
    collector = Collector(cam)
    assert await asyncio.to_thread(cam.reading.wait, 10)
    await collector.stop()
    assert not await cam.close(timeout_s=0.2)  # still inside _read
    assert "stuck camera" in device_threads()
    cam.release.set()
    assert await cam.close()
    assert "stuck camera" not in device_threads()
    assert cam.closes >= 1


async def test_synthetic_scene_plays_its_script() -> None:
    cam = SyntheticCamera(320, 240, fps=25.0, scene=[SceneStep(0.3, None), SceneStep(60.0, "a")])
    frames: AsyncIterator[Frame] = cam.frames()
    try:
        first = await asyncio.wait_for(frames.__anext__(), timeout=10)
        later = first
        while cam.face_at(0.0) is None and later.captured_at - first.captured_at < 0.5:
            later = await asyncio.wait_for(frames.__anext__(), timeout=10)
    finally:
        await frames.aclose()
    wall = np.asarray(SyntheticCamera(320, 240, scene=[SceneStep(1.0, None)]).render(0.0))
    assert np.array_equal(first.image, wall)  # nobody yet
    assert not np.array_equal(later.image, wall)  # then face a


async def test_a_hurried_camera_reads_now_and_keeps_its_rate() -> None:
    """``hurry`` (a visit's media may leave) reads the next frame at once, in place of the slot it was
    waiting for: the frame after it comes a whole period after that slot, never sooner."""
    cam = SyntheticCamera(320, 240, fps=0.25)  # a frame every 4 s
    frames: AsyncIterator[Frame] = cam.frames()
    try:
        first = await asyncio.wait_for(frames.__anext__(), timeout=10)
        cam.hurry()
        hurried = await asyncio.wait_for(frames.__anext__(), timeout=10)
        after = await asyncio.wait_for(frames.__anext__(), timeout=15)
    finally:
        await frames.aclose()
    assert hurried.captured_at - first.captured_at < 2.0  # not the 4 s slot
    assert after.captured_at - first.captured_at >= 8.0 - 0.1  # the slot after the one it took


def test_open_camera_names_a_missing_library(monkeypatch: pytest.MonkeyPatch) -> None:
    assert open_camera(CameraConfig(source="none")) is None
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(AgentError, match="apt install python3-picamera2"):
        open_camera(CameraConfig(source="picamera2"))
    assert isinstance(open_camera(CameraConfig(source="opencv", device="2")), OpenCVCamera)
