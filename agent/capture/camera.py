"""Frame sources: picamera2 on a Pi, OpenCV for a USB webcam or a looped video file, and a synthetic face.

Every source paces itself at the configured fps, runs its blocking calls on one daemon thread of its own
(libcamera and V4L2 handles stay on the thread that opened them, and a hung driver can never keep the
process from exiting), and survives losing its device: logged once, retried with backoff, logged once when
it is back. Only :class:`asyncio.CancelledError` leaves :meth:`FrameSource.frames`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import importlib.util
import logging
import math
import os
import queue
import threading
import time
from typing import Any, AsyncGenerator, Callable, Dict, Optional, Sequence, Tuple, TypeVar

import numpy as np

from agent.capture.device import Recovery
from agent.config import CameraConfig
from agent.errors import AgentError
from agent.media.frames import Frame

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


_Job = Tuple[Callable[[], Any], Optional["asyncio.Future[Any]"]]


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

    def _release(self) -> None:
        """Close, whatever the device thinks of it: a close that fails must not stop the recovery."""
        try:
            self._close()
        except Exception as exc:
            _LOGGER.debug("%s: close failed: %s", self.describe(), exc)

    async def frames(self) -> AsyncGenerator[Frame, None]:
        """Frames at most at ``fps``, forever; a lost device is reopened by itself."""
        period = 1.0 / self.fps
        due = time.monotonic()
        opened = False
        try:
            while True:
                try:
                    if not opened:
                        await self._worker.call(self._open)
                        opened = True
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
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
    """A V4L2 camera by index, or a video file (looped, played at its own speed)."""

    def __init__(self, device: str, width: int, height: int, fps: float, **retry: float) -> None:
        self.device = device
        self.is_file = not device.isdigit()
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
        cap = cv2.VideoCapture(self.device if self.is_file else int(self.device))
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


# --------------------------------------------------------------------------------------------------
# Synthetic


EXPRESSIONS = ("smile", "neutral", "eyes closed")
"""What the synthetic face can show: the astronaut's own smile, a closed neutral mouth painted over it,
and that neutral face with its eyes closed (see :func:`painted_expression`)."""


@dataclasses.dataclass(frozen=True)
class SceneStep:
    """``duration_s`` of the scene showing ``face``: None (empty), "a" (left) or "b" (right, mirrored),
    with one of :data:`EXPRESSIONS`."""

    duration_s: float
    face: Optional[str]
    expression: str = "smile"


EXPRESSION_SCENE = (
    SceneStep(15.0, "a", "smile"),
    SceneStep(15.0, "a", "neutral"),
    SceneStep(10.0, "a", "eyes closed"),
)
"""The synthetic source's default loop (``camera.source = "synthetic"``): one visitor who smiles, then
looks on neutrally, then closes her eyes, so the demo's face summaries visibly change every 10-15 s."""

_MOUTH = (47, 77)
_EYES = ((27, 33), (70, 35))
"""Centres of the mouth and the eyes in astronaut() relative to the Haar face box's top left (177, 67)."""


def painted_expression(image: np.ndarray, face_xy: Tuple[int, int], expression: str) -> np.ndarray:
    """``image`` (the astronaut, BGR) with ``expression`` painted on the face whose box starts at
    ``face_xy``: a copy; "smile" leaves it as it is.

    "neutral": the smile (teeth, raised lip corners) inpainted away and closed lips drawn in; "eyes
    closed": additionally the eyes inpainted, shaded as lids, with a lash line. Checked with OpenCV's
    cascades at 320x240 to 1280x960 and after JPEG q80: the smile cascade's best neighbour count drops
    from 129-173 to 28-51, the eye cascade finds no eye in 142 of 144 closed-eye frames, and the face
    cascade still finds the face in every frame.
    """
    import cv2  # noqa: PLC0415 - the "vision" extra, loaded only when used

    out: np.ndarray = image.copy()
    if expression == "smile":
        return out
    fx, fy = face_xy
    mask: np.ndarray = np.zeros(image.shape[:2], np.uint8)
    mouth = (fx + _MOUTH[0], fy + _MOUTH[1])
    cv2.ellipse(mask, (mouth[0], mouth[1] + 1), (25, 10), 0, 0, 360, 255, -1)
    eyes = [(fx + ex, fy + ey) for ex, ey in _EYES]
    if expression == "eyes closed":
        for eye in eyes:
            cv2.ellipse(mask, eye, (12, 7), 0, 0, 360, 255, -1)
    out = np.asarray(cv2.inpaint(out, mask, 5, cv2.INPAINT_TELEA))
    cv2.ellipse(out, (mouth[0], mouth[1] - 1), (17, 3), 0, 0, 360, (95, 105, 165), -1, cv2.LINE_AA)
    cv2.line(out, (mouth[0] - 16, mouth[1]), (mouth[0] + 16, mouth[1]), (70, 70, 120), 1, cv2.LINE_AA)
    if expression == "eyes closed":
        lids: np.ndarray = np.zeros(image.shape[:2], np.float32)
        for eye in eyes:
            cv2.ellipse(lids, eye, (11, 6), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
        lids = np.asarray(cv2.GaussianBlur(lids, (0, 0), 2.0))
        out = (out.astype(np.float32) * (1.0 - 0.15 * lids[..., None])).astype(np.uint8)
        for ex, ey in eyes:
            cv2.ellipse(out, (ex, ey + 2), (11, 3), 0, 0, 180, (45, 50, 70), 2, cv2.LINE_AA)
    return out


def astronaut_png() -> str:
    """Path of ``skimage.data.astronaut()``'s picture (public domain, NASA), found without importing skimage.

    Importing ``skimage.data`` costs about 30 MB of resident memory (SciPy and friends) for one picture
    that OpenCV reads directly from the wheel's data folder.
    """
    spec = importlib.util.find_spec("skimage")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = os.path.join(folder, "data", "astronaut.png")
        if os.path.isfile(path):
            return path
    raise AgentError(
        "camera.source = 'synthetic' needs scikit-image's sample picture: "
        "pip install 'hume-edge-agent[vision]'"
    )


class SyntheticCamera(FrameSource):
    """A real face (``skimage.data.astronaut()``) on a plain wall, moving a little, driven by a scene script.

    With no scene, face "a" is always there, smiling. A scene such as ``[SceneStep(5, None), SceneStep(10,
    "a"), SceneStep(5, None), SceneStep(10, "b", "neutral")]`` plays a visit, an empty kiosk and a second
    visitor; after its last step it holds that step, or starts over with ``loop=True``. Face "b" is the
    astronaut mirrored, tinted and standing elsewhere: face trackers that assign ids by position see a
    different person. Faces are about a quarter of the frame height (~125 px at 480), a visitor at kiosk
    distance. Each (face, expression) picture is painted once, at open or first use (a few ms).
    """

    _FACE_BOX = (177, 66, 95, 95)
    """Where Haar finds the face in astronaut() (x, y, w, h); the crop is framed around it."""

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        fps: float = 2.0,
        scene: Sequence[SceneStep] = (),
        loop: bool = False,
        **retry: float,
    ) -> None:
        for step in scene:
            if (
                step.face not in (None, "a", "b")
                or step.duration_s <= 0
                or step.expression not in EXPRESSIONS
            ):
                raise ValueError(
                    f"scene step {step}: face must be None, 'a' or 'b', duration_s > 0 and expression "
                    f"one of {', '.join(EXPRESSIONS)}"
                )
        self.size = (width, height)
        self.scene = tuple(scene)
        self.loop = loop
        self._heads: Dict[Tuple[str, str], np.ndarray] = {}
        self._background = self._wall(width, height)
        self._started = 0.0
        super().__init__(fps, **retry)

    def describe(self) -> str:
        return f"synthetic face {self.size[0]}x{self.size[1]}"

    @staticmethod
    def _wall(width: int, height: int) -> np.ndarray:
        shade = np.linspace(170, 120, height, dtype=np.float32)[:, None, None]
        tint = np.array([1.0, 0.97, 0.92], np.float32)
        wall: np.ndarray = np.empty((height, width, 3), np.uint8)
        wall[:] = shade * tint
        return wall

    def _head(self, face: str, expression: str) -> np.ndarray:
        """Face "a" or "b" showing ``expression``, scaled for the frame (painted on first use)."""
        cached = self._heads.get((face, expression))
        if cached is not None:
            return cached
        import cv2  # noqa: PLC0415 - the "vision" extra, loaded only when used

        x, y, w, h = self._FACE_BOX
        path = astronaut_png()
        original = cv2.imread(path)
        if original is None:
            raise AgentError(f"cannot read the synthetic camera's picture {path}")
        painted = painted_expression(np.asarray(original), (x, y + 1), expression)
        crop = painted[max(0, y - 50) : y + h + 95, max(0, x - 50) : x + w + 55]
        scale = 0.26 * self.size[1] / h
        size = (int(crop.shape[1] * scale), int(crop.shape[0] * scale))
        head: np.ndarray = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
        if face == "b":
            tint = np.array([0.85, 0.95, 1.15], np.float32)  # warmer (BGR), so "b" does not look like "a"
            head = np.clip(head[:, ::-1].astype(np.float32) * tint, 0, 255).astype(np.uint8)
        self._heads[(face, expression)] = head
        return head

    def step_at(self, t: float) -> SceneStep:
        """The scene step shown ``t`` seconds after the source started."""
        if not self.scene:
            return SceneStep(math.inf, "a")
        total = sum(s.duration_s for s in self.scene)
        if self.loop:
            t %= total
        for step in self.scene:
            if t < step.duration_s:
                return step
            t -= step.duration_s
        return self.scene[-1]

    def face_at(self, t: float) -> Optional[str]:
        """Which face the scene shows ``t`` seconds after the source started."""
        return self.step_at(t).face

    def render(self, t: float) -> np.ndarray:
        """The BGR picture at ``t`` seconds: deterministic, so tests can ask for any moment."""
        image: np.ndarray = self._background.copy()
        step = self.step_at(t)
        if step.face is None:
            return image
        head = self._head(step.face, step.expression)
        hh, hw = head.shape[:2]
        width, height = self.size
        centre = 0.35 if step.face == "a" else 0.65
        x = int(centre * width - hw / 2 + 12 * math.sin(t * 1.3))
        y = int((height - hh) / 2 + 6 * math.sin(t * 0.9))
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(width, x + hw), min(height, y + hh)
        image[y0:y1, x0:x1] = head[y0 - y : y1 - y, x0 - x : x1 - x]
        return image

    def _open(self) -> None:
        for step in self.scene or (SceneStep(1.0, "a"),):
            if step.face is not None:
                self._head(step.face, step.expression)
        if not self._started:
            self._started = time.monotonic()

    def _read(self) -> Frame:
        return Frame(self.render(time.monotonic() - self._started), "bgr", time.time())

    def _close(self) -> None:
        """Nothing to release."""


# --------------------------------------------------------------------------------------------------


def open_camera(cfg: CameraConfig) -> Optional[FrameSource]:
    """The frame source ``cfg`` asks for, or None for ``source = "none"``.

    Raises :class:`AgentError` when the source's library is not installed: that is an installation
    problem a retry loop would only hide.
    """
    if cfg.source == "none":
        return None
    needed = {"picamera2": "picamera2", "opencv": "cv2", "synthetic": "skimage"}.get(cfg.source)
    if needed and importlib.util.find_spec(needed) is None:
        hint = (
            "on Raspberry Pi OS: sudo apt install python3-picamera2, and create the venv with "
            "--system-site-packages"
            if cfg.source == "picamera2"
            else "install the agent with its 'vision' extra: pip install 'hume-edge-agent[vision]'"
        )
        raise AgentError(f"camera.source = {cfg.source!r} needs the Python module {needed!r}: {hint}")
    if cfg.source == "picamera2":
        return Picamera2Camera(cfg.width, cfg.height, cfg.fps)
    if cfg.source == "opencv":
        return OpenCVCamera(cfg.device, cfg.width, cfg.height, cfg.fps)
    if cfg.source == "synthetic":
        return SyntheticCamera(cfg.width, cfg.height, cfg.fps, scene=EXPRESSION_SCENE, loop=True)
    raise ValueError(f"camera.source = {cfg.source!r}: must be synthetic, opencv, picamera2 or none")
