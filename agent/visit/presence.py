"""Is somebody at the kiosk? A cheap on-device face check that decides when a visit starts and ends.

Choice: OpenCV's bundled Haar frontal-face cascade on a 320 px wide grey thumbnail (never enlarged),
equalized, looking only for faces the API would measure (``hume.min_face_size`` = 60 px in the 640 px
frame sent = 30 px here), run on every frame while nobody is there and on every 2nd frame with the
answer held in between while somebody is; while a face is known, a check looks only around it, at its
size (see below). Hume ignores what it
cannot see as a face anyway, so "a face Hume could measure" is the presence that matters; motion alone
would start paid streaming for a passing shadow.

Cost measured on this machine (x86-64, one core, OpenCV 4.14, scaleFactor 1.2, minNeighbors 4; the
detector alone, on the synthetic scene's 125 px face):

    640x480, faces >= 60 px          12.4 ms per check
    320x240, faces >= 30 px           5.4 ms   <- chosen: same faces found, 2.3x cheaper
    320x240, faces >= 24 px           8.4 ms   (smaller faces than the API measures: wasted work)
    160x120, faces >= 24 px           2.0 ms   but misses a 125 px visitor's face (30 px there)

The whole check as built (grey, thumbnail, equalize, detect): 7.5 ms with a face in view, 1.1 ms on an
empty wall (the cascade rejects a plain scene in its first stages); the same from a YUV420 frame, whose
grey image is simply its Y plane. Estimate for a Pi 4 (Cortex-A72, roughly 5-8x slower per core on this
workload): 40-60 ms per check, so at the default 2 fps with every 2nd frame checked, 4-6 % of one core
while a visitor is there, and with every frame of an empty kiosk checked (6-9 ms each) 1-2 %; a Pi Zero 2
(A53) about twice that.

Tracking (:data:`TRACK_MARGIN`): once a face is known, the next check searches only the region around it
for faces of about its size, and the whole thumbnail only when that finds none or every
:data:`FULL_EVERY`-th check. Measured on 60 s of the synthetic scenes (one visitor, empty, the other, a
second joining; their heads swaying as in benchmark 8) at 2 fps, every frame checked: 7.4 -> 4.4 ms a
frame at 1280x720, 10.5 -> 5.7 ms at 640x480, presence the same on all 120 frames, the faces found the
same but on 2 frames (a second visitor found at the next full check). Benchmark 1 with this and
``cv2.setNumThreads(1)``: 0.0185 -> 0.0140 CPU s per media-second (0.162x -> 0.124x the baseline), a
face found in all 37 cropped frames sent.

An empty scene (:data:`IDLE_UNCHANGED`): a frame unchanged since the last examined one reuses its answer.
On an empty wall with sensor noise (sigma 3 grey levels), per frame: 2.25 -> 0.29 ms from 640x480 YUV420
(the Pi's path), 2.51 -> 0.78 ms from 1280x720 BGR; one frame in 20 examined. OpenCV
releases the GIL inside the detector, so callers may run :meth:`PresenceDetector.present` in a thread.
"""

from __future__ import annotations

import os
from typing import Any, Sequence, Tuple

import numpy as np

from agent.media.frames import Box, Frame, frame_size
from agent.media.video import grey, most_changed, static_thumb

DISTRO_CASCADES = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")
"""Where Debian's and Raspberry Pi OS's OpenCV keep the cascades (package opencv-data): their cv2 has no
``cv2.data``, which only the PyPI wheels add."""


TRACK_MARGIN = 0.5
"""While a face is known, the next check looks only within this share of its side around it (the crop's
margin, ``agent.media.frames.CROP_MARGIN``: it covers a visitor's movement between checks) ..."""
TRACK_SCALES = (0.7, 1.5)
"""... and only for faces from 0.7 to 1.5 times its size (the detector's box jitters by a scale step of 1.2;
a visitor stepping closer grows slower than that in the second between checks)."""
IDLE_UNCHANGED = 2.0
"""While nobody is there, a frame whose most changed cell moved less than this (grey levels, the camera's
default ``static_threshold``) since the last examined frame gets that frame's answer: sensor noise of
sigma 3 (8) grey levels moves it 0.25 (0.56), a visitor stepping into view far more than 2 (the moving
face alone 4-21 between frames 0.4 s apart, ``agent.media.video``). The reference is the last *examined*
frame, so a slow change adds up until it is examined."""
IDLE_REFRESH = 20
"""... and every 20th frame of an unchanged scene is examined anyway (10 s at the defaults)."""
FULL_EVERY = 4
"""While tracking, every 4th check still searches the whole frame: a second visitor joining is found
within 4 checks (4 s at the defaults) and is in the crop from then on."""


def haar_cascade(cv2: Any, name: str) -> str:
    """The path of one of OpenCV's bundled cascades: the wheel's own, else the distribution's."""
    wheel_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
    for folder in ([wheel_dir] if wheel_dir else []) + list(DISTRO_CASCADES):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return os.path.join(wheel_dir or DISTRO_CASCADES[0], name)  # CascadeClassifier then says it is empty


class PresenceDetector:
    """Answers "is a measurable face in view?" for a stream of frames, cheaply."""

    def __init__(
        self, every_n: int = 2, width: int = 320, min_face_px: int = 60, sent_width: int = 640
    ) -> None:
        """Check every ``every_n``-th frame on a thumbnail at most ``width`` wide, counting only faces of at
        least ``min_face_px`` (hume.min_face_size) in the frame as sent, at most ``sent_width`` wide."""
        if every_n < 1 or width < 64 or min_face_px < 1 or sent_width < 64:
            raise ValueError(
                f"presence: every_n={every_n} (>= 1), width={width} (>= 64), "
                f"min_face_px={min_face_px} (>= 1), sent_width={sent_width} (>= 64)"
            )
        self.every_n = every_n
        self.width = width
        self.min_face_px = min_face_px
        self.sent_width = sent_width
        self._cascade: Any = None
        self._held = 0
        """Frames since the last examined one that reused its answer."""
        self._last = False
        self.checks = 0
        """Frames actually examined (the rest reused the previous answer)."""
        self.last_faces: Tuple[Box, ...] = ()
        """The faces of the last examined frame, in that frame's pixels (``camera.crop`` sends only them)."""
        self.tracked = 0
        """Checks answered by looking only around the last faces (see :data:`TRACK_MARGIN`)."""
        self._near: Tuple[Box, ...] = ()
        """The last faces in thumbnail pixels: where a tracking check looks."""
        self._since_full = 0
        self._idle_ref: Any = None
        """The static thumbnail of the last frame examined while nobody was there."""
        self._idle_reused = 0
        self.unchanged = 0
        """Frames of an empty scene answered without a check: unchanged since the last examined one."""

    def _detector(self) -> Any:
        if self._cascade is None:
            import cv2  # noqa: PLC0415 - the "vision" extra, loaded only when used

            path = haar_cascade(cv2, "haarcascade_frontalface_default.xml")
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise RuntimeError(
                    f"cannot load OpenCV's face cascade {path} (OpenCV 5 ships none: use 4.x; Debian's "
                    "python3-opencv keeps them in the opencv-data package)"
                )
            # OpenCV's worker threads cost more CPU than they save on a 320 px image: 8.2 -> 7.3 ms a check
            # (process CPU, this machine); the pipeline's resizes are as small. One process-wide setting.
            cv2.setNumThreads(1)
            self._cascade = cascade
        return self._cascade

    def faces(self, frame: Frame, near: Sequence[Box] = ()) -> np.ndarray:
        """Face boxes (x, y, w, h) in thumbnail pixels: the check itself, every time it is called.

        ``near``: faces (thumbnail pixels) of an earlier check: look only around them, at their size, and
        over the whole thumbnail only if none is found there."""
        return self._faces_in(grey(frame), near)

    def _faces_in(self, luma: np.ndarray, near: Sequence[Box]) -> np.ndarray:
        import cv2  # noqa: PLC0415 - the "vision" extra, loaded only when used

        h, w = luma.shape
        thumb_w = min(self.width, w)  # never enlarged: that would invent faces the API cannot measure
        thumb = cv2.equalizeHist(
            cv2.resize(luma, (thumb_w, max(1, round(h * thumb_w / w))), interpolation=cv2.INTER_AREA)
        )
        smallest = max(1, round(self.min_face_px * thumb_w / min(w, self.sent_width)))
        self.checks += 1
        found = [self._around(thumb, box, smallest) for box in near]
        if any(len(f) for f in found):
            self.tracked += 1
            return np.concatenate([f for f in found if len(f)])
        boxes: np.ndarray = np.asarray(
            self._detector().detectMultiScale(
                thumb, scaleFactor=1.2, minNeighbors=4, minSize=(smallest,) * 2
            ),
            dtype=np.int32,
        ).reshape(-1, 4)
        return boxes

    def _around(self, thumb: np.ndarray, box: Box, smallest: int) -> np.ndarray:
        """Faces near ``box`` and of about its size, in thumbnail pixels (measured on the synthetic
        visitor at 1280x720: 1.9-2.1 ms against 6.5 ms for the whole thumbnail, the face found in 40 of
        40 frames over 15 s of its sway)."""
        x, y, w, h = box
        m = round(TRACK_MARGIN * max(w, h))
        x0, y0 = max(0, x - m), max(0, y - m)
        region = thumb[y0 : y + h + m, x0 : x + w + m]
        lo = max(smallest, int(TRACK_SCALES[0] * w))
        hi = min(region.shape[0], region.shape[1], int(TRACK_SCALES[1] * w) + 1)
        if hi < lo:
            return np.zeros((0, 4), np.int32)
        found = np.asarray(
            self._detector().detectMultiScale(
                region, scaleFactor=1.2, minNeighbors=4, minSize=(lo, lo), maxSize=(hi, hi)
            ),
            dtype=np.int32,
        ).reshape(-1, 4)
        found[:, :2] += (x0, y0)
        return found

    def present(self, frame: Frame) -> bool:
        """Whether a face is in view. While nobody is (the last answer was no) every frame that changed
        since the last examined one is examined (:data:`IDLE_UNCHANGED`): a visit's debounce starts one
        frame sooner (0.5 s at the default 2 fps, time the visit is not measured), and an empty scene is
        the cheap case (1.1 ms a check here against 7.5 ms with a face; 0.1 ms unchanged). While somebody
        is, every ``every_n``-th frame, the answer held in between."""
        if not self._last or self._held >= self.every_n - 1:
            self._held = 0
            luma = grey(frame)
            if not self._last and self._unchanged(luma):
                self.unchanged += 1
                return False
            track = bool(self._near) and self._since_full < FULL_EVERY - 1
            tracked_before = self.tracked
            boxes = self._faces_in(luma, self._near if track else ())
            self._since_full = self._since_full + 1 if self.tracked > tracked_before else 0
            self._near = tuple(Box(*(int(v) for v in box)) for box in boxes)
            width = frame_size(frame)[0]
            scale = width / min(self.width, width)  # thumbnail pixels -> frame pixels
            self.last_faces = tuple(Box(*(round(float(v) * scale) for v in box)) for box in boxes)
            self._last = bool(self.last_faces)
            if self._last:
                self._idle_ref = None
            elif self._idle_ref is None:  # the visitor just left: this empty frame is the reference
                self._idle_ref, self._idle_reused = static_thumb(luma), 0
        else:
            self._held += 1
        return self._last

    def _unchanged(self, luma: np.ndarray) -> bool:
        """An empty scene's frame that differs from the last examined one by less than
        :data:`IDLE_UNCHANGED`, within :data:`IDLE_REFRESH` frames of it; otherwise it becomes the
        reference."""
        thumb = static_thumb(luma)
        ref = self._idle_ref
        if (
            ref is not None
            and self._idle_reused < IDLE_REFRESH - 1
            and most_changed(thumb, ref) < IDLE_UNCHANGED
        ):
            self._idle_reused += 1
            return True
        self._idle_ref, self._idle_reused = thumb, 0
        return False
