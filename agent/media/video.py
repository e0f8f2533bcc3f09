"""Local downsampling of frames, pure: what leaves the device is small, and nothing is ever written to disk.

Frames: at most ``min(camera.fps, hume.fps_pred)`` per second, resized (aspect kept, never enlarged) to fit
``camera.width`` x ``camera.height``, a frame near-identical to the last one *sent* is skipped (a static,
empty scene costs nothing), and the rest is encoded as JPEG at ``camera.jpeg_quality``.

Static-frame skip: a 32x24 grey thumbnail is compared with the last *sent* one in 48 cells and the most
changed cell counts (0.1 ms per frame here, grey conversion included). Measured on the synthetic scene:
the moving face changes its most changed cell by 4-21 grey levels between frames 0.4 s apart, while
Gaussian sensor noise of sigma 3 (8) grey levels gives 0.25 (0.56), so the default threshold of 2 never
skips a visitor and always skips a still, empty kiosk: a minute of it at 2 fps uploads 12 frames (one per
``static_refresh_s``, the refresh that keeps a visitor who stands still in view) instead of 120, and none
at all with the refresh off.

JPEG encoder, measured on this machine (x86-64, one core, 640x480 astronaut scene, quality 80, 4:2:0):

    cv2.imencode (BGR)                       0.48 ms   48.0 kB
    simplejpeg.encode_jpeg (BGR, 4:2:0)      0.50 ms   48.0 kB   (4:4:4, its default: 0.87 ms, 59.7 kB)
    simplejpeg.encode_jpeg_yuv_planes        0.37 ms   44.4 kB   (picamera2's lores YUV420, no colour step)
    Pillow (RGB, 4:2:0)                      0.65 ms   48.0 kB
    cv2 YUV420 -> BGR, then cv2.imencode     0.53 ms

Choice: simplejpeg (libjpeg-turbo) everywhere, with 4:2:0 subsampling asked for explicitly. Here it ties
with OpenCV on BGR, but on a Pi 3 at 640x480 it measured 13.9 ms against OpenCV's 17.1 ms and Pillow's
19.9 ms (codeTom/jpeg-encoding-performance), and it alone encodes YUV420 planes straight from the ISP,
23 % cheaper than any BGR path here. ``cv2.imencode`` is the fallback when simplejpeg is not installed.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

from agent.config import CameraConfig
from agent.media.frames import Box, EncodedFrame, Frame, crop_region, fit_size, frame_size

_THUMB = (32, 24)
"""Static-frame check thumbnail (width, height): small enough to be free, big enough to see a face move."""
_CELLS = (6, 8)
"""The thumbnail is compared in 6 x 8 cells (each 1/48 of the picture) and the most changed one counts:
a face moving in a corner of a still room must not be averaged away by the unchanged wall."""


def _cv2() -> Any:
    import cv2  # noqa: PLC0415 - the "vision" extra: audio-only installs never need it

    return cv2


def yuv420_planes(image: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a tight I420 image of shape (H*3//2, W)."""
    rows, w = image.shape
    h = rows * 2 // 3
    y = image[:h]
    u = image[h : h + h // 4].reshape(h // 2, w // 2)
    v = image[h + h // 4 : h + h // 2].reshape(h // 2, w // 2)
    return y, u, v


def grey(frame: Frame) -> np.ndarray:
    """The luma of a frame: free for YUV420 (its Y plane), one colour conversion for BGR."""
    if frame.fmt == "yuv420":
        return yuv420_planes(frame.image)[0]
    if frame.fmt == "bgr":
        luma: np.ndarray = _cv2().cvtColor(frame.image, _cv2().COLOR_BGR2GRAY)
        return luma
    raise ValueError(f"frame format {frame.fmt!r}: must be 'bgr' or 'yuv420'")


def static_thumb(luma: np.ndarray) -> np.ndarray:
    """The 32x24 thumbnail the static-frame check compares (int16, so differences do not wrap)."""
    return _resize(luma, _THUMB).astype(np.int16)


def most_changed(thumb: np.ndarray, reference: np.ndarray) -> float:
    """How much the most changed of the 48 cells changed between two :func:`static_thumb` (grey levels)."""
    rows, cols = _CELLS
    th, tw = thumb.shape
    diff = np.abs(thumb - reference).reshape(rows, th // rows, cols, tw // cols)
    return float(diff.mean(axis=(1, 3)).max())


def _resize(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    cv2 = _cv2()
    resized: np.ndarray = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return resized


def _full_range_yuv420_to_bgr(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BGR from full-range (JFIF) planes; OpenCV's I420 conversions assume limited range (16-235)."""
    cv2 = _cv2()
    size = (y.shape[1], y.shape[0])
    cr, cb = (cv2.resize(p, size, interpolation=cv2.INTER_LINEAR) for p in (v, u))
    bgr: np.ndarray = cv2.cvtColor(cv2.merge([y, cr, cb]), cv2.COLOR_YCrCb2BGR)
    return bgr


def _select_encoders() -> Tuple[Callable[[np.ndarray, int], bytes], Optional[Callable[..., bytes]]]:
    """(BGR encoder, YUV420 planes encoder or None): simplejpeg when installed, else OpenCV."""
    try:
        import simplejpeg  # noqa: PLC0415 - optional: OpenCV is the fallback
    except ImportError:
        cv2 = _cv2()

        def cv2_bgr(image: np.ndarray, quality: int) -> bytes:
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise ValueError(f"cv2.imencode refused a {image.shape} image")
            return bytes(buf.tobytes())

        return cv2_bgr, None

    def sj_bgr(image: np.ndarray, quality: int) -> bytes:
        return bytes(
            simplejpeg.encode_jpeg(
                np.ascontiguousarray(image), quality, colorspace="BGR", colorsubsampling="420", fastdct=True
            )
        )

    def sj_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray, quality: int) -> bytes:
        return bytes(simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality, fastdct=True))

    return sj_bgr, sj_planes


def _cropped(frame: Frame, region: Box) -> Frame:
    """The part of ``frame`` inside ``region`` (even corners and sides), in the frame's own format."""
    x, y, w, h = region
    if frame.fmt == "yuv420":
        yp, up, vp = yuv420_planes(frame.image)
        chroma = [p[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] for p in (up, vp)]
        # Tight I420 again, (h * 3 // 2) x w: a chroma plane's rows of w/2 pair up into rows of w.
        image = np.concatenate([p.reshape(-1, w) for p in (yp[y : y + h, x : x + w], *chroma)])
        return Frame(image, "yuv420", frame.captured_at)
    return Frame(frame.image[y : y + h, x : x + w], frame.fmt, frame.captured_at)


class RateLimiter:
    """Lets an event through at most ``max_per_s`` times per second of the given clock, on average.

    Virtual scheduling (GCRA): each pass books the next slot one period after the later of its own slot and
    its time, and an event passes once it is at most half a period before its slot. A source slower than
    the limit is never throttled further; a source paced at the limit passes whole however its timestamps
    jitter (under half a period); a faster one gets exactly the limit in the long run, at most one event
    more in any window. Measured (benchmark 8, 2 fps camera at the 2 fps limit, loaded machine): the old
    rule, "a period minus 5 % since the last pass", dropped every frame stamped 25 ms early after a late
    one (the camera keeps its grid), 21-24 frames of a 4-minute kiosk script, each 0.5 s of a visit in
    which nothing of the visitor was measured.
    """

    def __init__(self, max_per_s: float) -> None:
        if max_per_s <= 0:
            raise ValueError(f"rate limit {max_per_s}: must be > 0 per second")
        self.period_s = 1.0 / max_per_s
        self._last: Optional[float] = None
        self._slot = 0.0

    def allow(self, t: float) -> bool:
        """Whether an event at time ``t`` passes; a passing event books the next slot."""
        if self._last is None or t < self._last:  # (a clock stepped backwards, e.g. a Pi's first NTP sync)
            self._slot = t
        elif t < self._slot - self.period_s / 2:
            return False
        self._last = t
        self._slot = max(self._slot, t) + self.period_s
        return True


class FramePipeline:
    """Rate limit, static skip, resize and JPEG: one camera frame in, at most one payload out."""

    def __init__(
        self, cfg: CameraConfig, max_fps: float, *, on_static: Optional[Callable[[float], None]] = None
    ) -> None:
        """``on_static``: told the capture time of each frame skipped as near-identical to the last one
        sent (its picture was measured; the kiosk-day benchmark counts it so); a public attribute, so
        whoever holds the pipeline (``run_agent``'s ``on_agent``) may set it later."""
        self.cfg = cfg
        self.on_static = on_static
        self.fps = min(cfg.fps, max_fps)
        self._rate = RateLimiter(self.fps)
        self._last_thumb: Optional[np.ndarray] = None
        self._last_sent_at = 0.0
        self._bgr_encoder, self._planes_encoder = _select_encoders()
        self.counters = {"in": 0, "rate_limited": 0, "static": 0, "sent": 0, "cropped": 0}
        """Frames seen, dropped by the rate limit, skipped as static, sent, and of those sent cropped to
        the faces in them (for status and tests)."""

    def process(self, frame: Frame, faces: Sequence[Box] = ()) -> Optional[EncodedFrame]:
        """The JPEG to send for this frame, or None when it is rate-limited or near-identical to the last.

        ``faces``: where the on-device detector last saw faces, in this frame's pixels. With
        ``camera.crop = "faces"`` only the region around them is sent, at the scale the whole frame would
        have been sent at (the face keeps every pixel it would have had; the background is not sent).
        """
        self.counters["in"] += 1
        if not self._rate.allow(frame.captured_at):
            self.counters["rate_limited"] += 1
            return None
        width, height = frame_size(frame)
        size = fit_size(width, height, self.cfg.width, self.cfg.height)
        thumb = static_thumb(grey(frame))
        if self._is_static(thumb, frame.captured_at):
            self.counters["static"] += 1
            if self.on_static is not None:
                self.on_static(frame.captured_at)
            return None
        region = crop_region(width, height, faces) if self.cfg.crop == "faces" else None
        if region is not None:
            scale = size[0] / width
            frame = _cropped(frame, region)
            size = (max(2, int(region.w * scale) // 2 * 2), max(2, int(region.h * scale) // 2 * 2))
            self.counters["cropped"] += 1
        jpeg = self._encode(frame, size)
        self._last_thumb = thumb
        self._last_sent_at = frame.captured_at
        self.counters["sent"] += 1
        return EncodedFrame(jpeg, size[0], size[1], frame.captured_at)

    def _is_static(self, thumb: np.ndarray, t: float) -> bool:
        if self._last_thumb is None or self.cfg.static_threshold <= 0:
            return False
        refresh, elapsed = self.cfg.static_refresh_s, t - self._last_sent_at
        if refresh > 0 and not 0.0 <= elapsed < refresh:  # due, or the clock stepped backwards
            return False
        return most_changed(thumb, self._last_thumb) < self.cfg.static_threshold

    def _encode(self, frame: Frame, size: Tuple[int, int]) -> bytes:
        quality = self.cfg.jpeg_quality
        if frame.fmt == "yuv420":
            y, u, v = yuv420_planes(frame.image)
            if self._planes_encoder is not None:
                half = (size[0] // 2, size[1] // 2)
                return self._planes_encoder(_resize(y, size), _resize(u, half), _resize(v, half), quality)
            return self._bgr_encoder(_resize(_full_range_yuv420_to_bgr(y, u, v), size), quality)
        if frame.fmt == "bgr":
            return self._bgr_encoder(_resize(frame.image, size), quality)
        raise ValueError(f"frame format {frame.fmt!r}: must be 'bgr' or 'yuv420'")
