"""Frame sources on a device: picamera2 on a Pi, OpenCV for a USB webcam or a looped video file.

The synthetic face lives in :mod:`agent.capture.synthetic`; :mod:`agent.capture.factory` picks a source.

Every source paces itself at the configured fps, runs its blocking calls on one daemon thread of its own
(libcamera and V4L2 handles stay on the thread that opened them, and a hung driver can never keep the
process from exiting), and survives losing its device: logged once, retried with backoff, logged once when
it is back. Only :class:`asyncio.CancelledError` leaves :meth:`FrameSource.frames`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import importlib.util
import logging
import os
import queue
import threading
import time
from typing import Any, AsyncGenerator, Callable, Dict, Optional, Tuple, TypeVar

import numpy as np

from agent.aio import OnFirstUse, wait_event
from agent.capture.device import CLOSE_TIMEOUT_S, Recovery, join_thread
from agent.config import is_camera_device
from agent.media.frames import Frame

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


_Job = Tuple[Optional[Callable[[], Any]], Optional["asyncio.Future[Any]"]]
"""A blocking call and the future awaiting its result; no call: the thread ends (:meth:`_Worker.stop`)."""


class _Worker:
    """One daemon thread that runs a device's blocking calls in order and hands results to the loop."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None

    def _put(self, job: _Job) -> None:
        if self._thread is None:  # started on first use: constructing a source costs no thread
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            fn, fut = self._jobs.get()
            if fn is None:
                return
            try:
                outcome: Tuple[Callable[..., None], Any] = (_set_result, fn())
            except BaseException as exc:  # handed to the awaiting coroutine
                outcome = (_set_exception, exc)
            if fut is not None:
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
                    fut.get_loop().call_soon_threadsafe(outcome[0], fut, outcome[1])

    async def call(self, fn: Callable[[], T]) -> T:
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._put((fn, fut))
        return await fut

    def submit(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` after the calls already queued, without waiting (used to close on cancellation)."""
        self._put((fn, None))

    async def stop(self, timeout_s: float) -> bool:
        """End the thread after the calls already queued; False if it is still busy after ``timeout_s``."""
        thread = self._thread
        if thread is None:
            return True
        self._jobs.put((None, None))
        if not await join_thread(thread, timeout_s):
            return False
        self._thread = None  # a later call starts a new one
        return True


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class FrameSource(abc.ABC):
    """A camera. Subclasses implement the blocking ``_open``, ``_read``, ``_close``; this does the rest."""

    def __init__(self, fps: float, *, retry_initial_s: float = 0.5, retry_max_s: float = 10.0) -> None:
        if fps <= 0:
            raise ValueError(f"camera fps {fps}: must be > 0")
        self.fps = fps
        self.recovery = Recovery(_LOGGER, self.describe(), retry_initial_s, retry_max_s)
        self.frames_read = 0
        self._worker = _Worker(f"camera:{self.describe()}")
        self._hurry: OnFirstUse[asyncio.Event] = OnFirstUse(asyncio.Event)

    @abc.abstractmethod
    def describe(self) -> str:
        """The source as a person would name it in a log line."""

    @abc.abstractmethod
    def _open(self) -> None:
        """Open the device (blocking); raise if it is not there."""

    @abc.abstractmethod
    def _read(self) -> Frame:
        """The next frame (blocking); raise if the device failed."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release the device (blocking); safe to call when it is not open."""

    def status(self) -> Dict[str, Any]:
        """Counters for the agent's status file."""
        return {"source": self.describe(), "frames": self.frames_read, **self.recovery.status()}

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Release the device and end its thread; False if the thread is still busy after ``timeout_s``.

        A stopping agent waits for this: a process that exits while the thread is inside native code
        (OpenCV, libcamera) can abort in the C++ runtime ("terminate called without an active exception",
        exit -6) instead of exiting with its own code.
        """
        self._worker.submit(self._release)  # closing twice is harmless (see _close)
        return await self._worker.stop(timeout_s)

    def _release(self) -> None:
        """Close, whatever the device thinks of it: a close that fails must not stop the recovery."""
        try:
            self._close()
        except Exception as exc:
            _LOGGER.debug("%s: close failed: %s", self.describe(), exc)

    def hurry(self) -> None:
        """Read the next frame now instead of at its slot, which it takes (the one after keeps the grid).

        The hub asks when a visit's media may start leaving: the frames before were captured before the
        visit's notice and may not be sent, and waiting for the next slot left up to a frame period (0.5 s
        at 2 fps) of every visit unmeasured (benchmark 8)."""
        self._hurry.get().set()

    async def frames(self) -> AsyncGenerator[Frame, None]:
        """Frames at most at ``fps`` (and one sooner when hurried), forever; a lost device is reopened by
        itself."""
        period = 1.0 / self.fps
        due = time.monotonic()
        hurry = self._hurry.get()
        opened = False
        try:
            while True:
                try:
                    if not opened:
                        await self._worker.call(self._open)
                        opened = True
                    await wait_event(hurry, max(0.0, due - time.monotonic()))
                    hurry.clear()
                    frame = await self._worker.call(self._read)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # any device failure: close, wait, reopen
                    if opened:
                        opened = False
                        await self._worker.call(self._release)
                    await asyncio.sleep(self.recovery.failed(exc))
                    due = time.monotonic()
                    continue
                self.recovery.ok()
                self.frames_read += 1
                now = time.monotonic()
                due = max(due + period, now)
                yield frame
        finally:
            # Also when cancelled during _open: the close queues behind it on the device's thread.
            self._worker.submit(self._release)


# --------------------------------------------------------------------------------------------------
# picamera2


def _tight_i420(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """picamera2's lores YUV420 array, (H*3//2) x stride, repacked as a tight (H*3//2) x W I420 image.

    Each chroma plane is (H/2) x (stride/2) laid out contiguously, so it spans H/4 rows of the array.
    """
    stride = array.shape[1]
    if stride == width:
        return array
    flat = array.reshape(-1)
    y_end = height * stride
    chroma = (height // 2) * (stride // 2)
    y = array[:height, :width]
    u = flat[y_end : y_end + chroma].reshape(height // 2, stride // 2)[:, : width // 2]
    v = flat[y_end + chroma : y_end + 2 * chroma].reshape(height // 2, stride // 2)[:, : width // 2]
    tight: np.ndarray = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)])
    return tight.reshape(height * 3 // 2, width)


class Picamera2Camera(FrameSource):
    """A Raspberry Pi camera through picamera2, reading the ISP-scaled lores stream as YUV420.

    The ISP scales the sensor image to the size we send, so the CPU never touches a full-size frame, and
    YUV420 planes go to the JPEG encoder without a colour conversion. The sensor runs at no less than
    10 fps so auto-exposure keeps adapting between our (slower) captures.
    """

    def __init__(self, width: int, height: int, fps: float, **retry: float) -> None:
        self.size = (width // 2 * 2, height // 2 * 2)
        self._cam: Any = None
        super().__init__(fps, **retry)

    def describe(self) -> str:
        return f"picamera2 lores {self.size[0]}x{self.size[1]}"

    def configuration(self, cam: Any) -> Any:
        """The picamera2 configuration we ask for: lores YUV420 at our size (main no larger), sYCC."""
        # libcamera's bindings come with picamera2 on Raspberry Pi OS only (and ship no type information).
        colour_space = importlib.import_module("libcamera").ColorSpace

        stream = {"size": self.size, "format": "YUV420"}
        return cam.create_video_configuration(
            main=dict(stream),
            lores=dict(stream),
            buffer_count=4,
            colour_space=colour_space.Sycc(),  # full-range YUV: the planes go into the JPEG as they are
            controls={"FrameRate": max(10.0, self.fps)},
            display=None,
            encode=None,
        )

    def _open(self) -> None:
        from picamera2 import Picamera2  # noqa: PLC0415 - Raspberry Pi OS only: imported where needed

        cam = Picamera2()
        try:
            cam.configure(self.configuration(cam))
            cam.start()
        except Exception:
            cam.close()
            raise
        self._cam = cam

    def _read(self) -> Frame:
        array = self._cam.capture_array("lores")
        image = _tight_i420(np.asarray(array), *self.size)
        return Frame(image, "yuv420", time.time())

    def _close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()


# --------------------------------------------------------------------------------------------------
# OpenCV


class OpenCVCamera(FrameSource):
    """A V4L2 camera by index or device node (``/dev/video0``), or a video file (looped, at its own speed)."""

    def __init__(self, device: str, width: int, height: int, fps: float, **retry: float) -> None:
        self.device = device
        self.is_file = not is_camera_device(device)
        self.size = (width, height)
        self._cap: Any = None
        self._skip = 0
        super().__init__(fps, **retry)

    def describe(self) -> str:
        return f"video file {self.device}" if self.is_file else f"camera {self.device}"

    def _open(self) -> None:
        import cv2  # noqa: PLC0415 - the "vision" extra, loaded only when used

        if self.is_file and not os.path.isfile(self.device):
            raise FileNotFoundError(f"no such video file: {self.device}")
        cap = cv2.VideoCapture(int(self.device) if self.device.strip().isdigit() else self.device.strip())
        if not cap.isOpened():
            cap.release()
            raise OSError(f"OpenCV cannot open {self.describe()}")
        if self.is_file:
            # Keep the file's timeline real: skip the frames between two of ours.
            self._skip = max(0, round((cap.get(cv2.CAP_PROP_FPS) or self.fps) / self.fps) - 1)
        else:
            # Ask the driver for our size and for the newest frame, not one queued seconds ago.
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def _grab_frame(self) -> Optional[np.ndarray]:
        for _ in range(self._skip):
            if not self._cap.grab():
                break
        ok, image = self._cap.read()
        return image if ok else None

    def _read(self) -> Frame:
        import cv2  # noqa: PLC0415 - the "vision" extra, loaded only when used

        image = self._grab_frame()
        if image is None and self.is_file:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            image = self._grab_frame()
        if image is None:
            raise OSError(f"{self.describe()} delivered no frame")
        return Frame(image, "bgr", time.time())

    def _close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
