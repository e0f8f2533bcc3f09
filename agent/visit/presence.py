"""Is somebody at the kiosk? A cheap on-device face check that decides when a visit starts and ends.

Choice: OpenCV's bundled Haar frontal-face cascade on a 320 px wide grey thumbnail (never enlarged),
equalized, looking only for faces the API would measure (``hume.min_face_size`` = 60 px in the 640 px
frame sent = 30 px here), run on every frame while nobody is there and on every 2nd frame with the
answer held in between while somebody is. Hume ignores what it
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
(A53) about twice that. OpenCV
releases the GIL inside the detector, so callers may run :meth:`PresenceDetector.present` in a thread.
"""

from __future__ import annotations

import os
from typing import Any, Tuple

import numpy as np

from agent.media.frames import Box, Frame, frame_size
from agent.media.video import grey

DISTRO_CASCADES = ("/usr/share/opencv4/haarcascades", "/usr/share/opencv/haarcascades")
"""Where Debian's and Raspberry Pi OS's OpenCV keep the cascades (package opencv-data): their cv2 has no
``cv2.data``, which only the PyPI wheels add."""


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
            self._cascade = cascade
        return self._cascade

    def faces(self, frame: Frame) -> np.ndarray:
        """Face boxes (x, y, w, h) in thumbnail pixels: the check itself, every time it is called."""
        import cv2  # noqa: PLC0415 - the "vision" extra, loaded only when used

        luma = grey(frame)
        h, w = luma.shape
        thumb_w = min(self.width, w)  # never enlarged: that would invent faces the API cannot measure
        thumb = cv2.equalizeHist(
            cv2.resize(luma, (thumb_w, max(1, round(h * thumb_w / w))), interpolation=cv2.INTER_AREA)
        )
        smallest = max(1, round(self.min_face_px * thumb_w / min(w, self.sent_width)))
        found = self._detector().detectMultiScale(
            thumb, scaleFactor=1.2, minNeighbors=4, minSize=(smallest, smallest)
        )
        self.checks += 1
        boxes: np.ndarray = np.asarray(found, dtype=np.int32).reshape(-1, 4)
        return boxes

    def present(self, frame: Frame) -> bool:
        """Whether a face is in view. While nobody is (the last answer was no) every frame is examined: a
        visit's debounce starts one frame sooner (0.5 s at the default 2 fps, time the visit is not
        measured), and an empty scene is the cheap case (1.1 ms a check here against 7.5 ms with a face).
        While somebody is, every ``every_n``-th frame, the answer held in between."""
        if not self._last or self._held >= self.every_n - 1:
            self._held = 0
            boxes = self.faces(frame)
            width = frame_size(frame)[0]
            scale = width / min(self.width, width)  # thumbnail pixels -> frame pixels
            self.last_faces = tuple(Box(*(round(float(v) * scale) for v in box)) for box in boxes)
            self._last = bool(self.last_faces)
        else:
            self._held += 1
        return self._last
