"""The picamera2 adapter against a stand-in ``picamera2`` module: what it asks the ISP for, what it yields.

The stand-in behaves like the library on a Pi where it matters here: ``capture_array("lores")`` of a YUV420
stream returns (H*3/2) x stride bytes with padded rows, each chroma plane packed at half the stride, and
``Picamera2()`` raises when no camera is connected. The on-device check (scripts/pi-check) covers the rest.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import sys
import types
from typing import Any, Dict, List

import cv2
import numpy as np
import pytest

from agent.capture.camera import Picamera2Camera
from agent.capture.factory import open_camera
from agent.capture.synthetic import SyntheticCamera
from agent.config import CameraConfig
from agent.media.frames import Frame
from agent.media.video import FramePipeline
from agent.visit.presence import PresenceDetector
from tests.support.waits import eventually

W, H, STRIDE = 640, 480, 704


def full_range_i420(bgr: np.ndarray) -> np.ndarray:
    y, cr, cb = cv2.split(cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb))
    u, v = (cv2.resize(p, (W // 2, H // 2), interpolation=cv2.INTER_AREA) for p in (cb, cr))
    return np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(H * 3 // 2, W)


def padded(tight: np.ndarray) -> np.ndarray:
    """The tight picture laid out as picamera2 returns it: rows of STRIDE bytes, padding full of junk."""
    out = np.full((H * 3 // 2, STRIDE), 0xAA, np.uint8)
    flat = out.reshape(-1)
    out[:H, :W] = tight[:H]
    chroma = (H // 2) * (STRIDE // 2)
    for k, plane in enumerate((tight[H : H + H // 4], tight[H + H // 4 :])):
        start = H * STRIDE + k * chroma
        flat[start : start + chroma].reshape(H // 2, STRIDE // 2)[:, : W // 2] = plane.reshape(H // 2, W // 2)
    return out


class StandIn:
    """State shared by the stand-in module's cameras, for the test to script and inspect."""

    def __init__(self, picture: np.ndarray) -> None:
        self.picture = picture
        self.cameras: List[Any] = []
        self.absent = 0
        self.fail_capture_at = 0
        self.captures = 0


def install(monkeypatch: pytest.MonkeyPatch, state: StandIn) -> None:
    class Picamera2:
        def __init__(self) -> None:
            if state.absent > 0:
                state.absent -= 1
                raise IndexError("list index out of range")  # what picamera2 raises with no camera
            self.requested: Dict[str, Any] = {}
            self.configured: Any = None
            self.running = self.closed = False
            state.cameras.append(self)

        def create_video_configuration(self, **kw: Any) -> Dict[str, Any]:
            self.requested = kw
            return {"use_case": "video", **kw}

        def configure(self, config: Any) -> None:
            self.configured = config

        def start(self) -> None:
            assert self.configured is not None, "start() before configure()"
            self.running = True

        def capture_array(self, name: str = "main") -> np.ndarray:
            assert self.running
            assert name == "lores"
            state.captures += 1
            if state.captures == state.fail_capture_at:
                raise RuntimeError("Camera frontend has timed out!")
            return padded(state.picture)

        def stop(self) -> None:
            self.running = False

        def close(self) -> None:
            self.closed = True

    class ColorSpace:
        @staticmethod
        def Sycc() -> str:  # libcamera's name
            return "sYCC"

    monkeypatch.setitem(sys.modules, "picamera2", _module("picamera2", Picamera2=Picamera2))
    monkeypatch.setitem(sys.modules, "libcamera", _module("libcamera", ColorSpace=ColorSpace))


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attrs)
    return module


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandIn:
    bgr = SyntheticCamera(W, H).render(1.0)
    state = StandIn(full_range_i420(bgr))
    state.bgr = bgr  # type: ignore[attr-defined]
    install(monkeypatch, state)
    return state


async def _take(cam: Picamera2Camera, n: int, state: StandIn) -> List[Frame]:
    frames = cam.frames()
    try:
        return [await asyncio.wait_for(frames.__anext__(), timeout=10) for _ in range(n)]
    finally:
        await frames.aclose()
        # The close runs on the camera's own thread.
        assert await eventually(lambda: all(c.closed for c in state.cameras), 10)


async def test_asks_the_isp_for_lores_yuv420_at_our_size_and_yields_tight_planes(stand_in: StandIn) -> None:
    cam = open_camera(CameraConfig(source="picamera2", width=W, height=H, fps=2.0))
    assert isinstance(cam, Picamera2Camera)
    cam.fps = 50.0  # keep the test short; the configured rate is checked through the request below
    frames = await _take(cam, 3, stand_in)

    (device,) = stand_in.cameras
    req = device.requested
    assert req["lores"] == {"size": (W, H), "format": "YUV420"}
    assert req["main"]["size"] == (W, H)  # nothing larger than what we send is ever produced
    assert req["colour_space"] == "sYCC"  # full range, as JPEG wants it
    assert req["display"] is None
    assert req["encode"] is None
    assert req["controls"]["FrameRate"] >= 10.0
    assert device.closed
    assert not device.running

    for f in frames:
        assert f.fmt == "yuv420"
        assert f.image.shape == (H * 3 // 2, W)
        assert np.array_equal(f.image, stand_in.picture)  # the stride padding is gone, the planes intact
    encoded = FramePipeline(CameraConfig(), max_fps=3.0).process(frames[0])
    assert encoded is not None
    decoded = cv2.imdecode(np.frombuffer(encoded.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(decoded.astype(int) - stand_in.bgr.astype(int)).mean() < 4  # type: ignore[attr-defined]
    assert PresenceDetector(every_n=1).present(frames[0])


async def test_no_camera_at_start_and_a_frontend_timeout_are_recovered(stand_in: StandIn) -> None:
    stand_in.absent = 2
    stand_in.fail_capture_at = 3
    cam = Picamera2Camera(W, H, fps=50.0, retry_initial_s=0.05, retry_max_s=0.1)
    frames = await _take(cam, 6, stand_in)
    assert len(frames) == 6
    assert cam.recovery.outages == 2
    assert cam.recovery.failures == 3
    assert len(stand_in.cameras) == 2  # reopened after the timeout
    assert all(c.closed for c in stand_in.cameras)
