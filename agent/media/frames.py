"""Pictures as plain values: what a camera captures (:class:`Frame`) and what leaves for the face model
(:class:`EncodedFrame`), with the size arithmetic both sides share.

The bottom of the agent's media layer: capture adapters, the pipeline, presence and the Hume clients all
take these from here, and this module imports nothing of the agent's.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class Frame:
    """One captured picture.

    ``fmt`` is "bgr" (H x W x 3 uint8) or "yuv420" (tight I420: (H*3//2) x W uint8, Y then U then V, full
    range as JPEG wants it, i.e. sYCC: what the picamera2 adapter asks the ISP for).
    ``captured_at`` is wall clock (``time.time()``).
    """

    image: np.ndarray
    fmt: str
    captured_at: float


@dataclasses.dataclass(frozen=True)
class EncodedFrame:
    """A frame ready for the face model."""

    jpeg: bytes
    width: int
    height: int
    captured_at: float


def fit_size(width: int, height: int, max_width: int, max_height: int) -> Tuple[int, int]:
    """The largest even size inside ``max_width`` x ``max_height`` with the input's aspect; never enlarges.

    Even sides keep YUV 4:2:0 chroma planes whole.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size {width}x{height}: both sides must be positive")
    scale = min(1.0, max_width / width, max_height / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def frame_size(frame: Frame) -> Tuple[int, int]:
    """(width, height) of the picture a frame holds."""
    if frame.fmt == "yuv420":
        return frame.image.shape[1], frame.image.shape[0] * 2 // 3
    return frame.image.shape[1], frame.image.shape[0]


class Box(NamedTuple):
    """A rectangle in a frame's pixels: left, top, width, height (a detected face, or a crop)."""

    x: int
    y: int
    w: int
    h: int


CROP_MARGIN = 0.5
"""Margin added on every side of a face box, as a share of the box's side: OpenCV's Haar box runs from
the brows to the mouth, so half a side more keeps forehead, chin and ears (the model looks at the whole
head), and covers the movement of a visitor between two presence checks (0.5-1 s apart at the default
2 fps; measured on the synthetic scene's swaying face at 1280x720: at most 0.10 of a side between two
checks). The emulator's face detector found the face in 240 of 240 such crops (2 minutes of that scene
at 2 fps); tests/unit/test_crop.py checks a sample of them."""


def crop_region(width: int, height: int, faces: Sequence[Box], margin: float = CROP_MARGIN) -> Optional[Box]:
    """The part of a ``width`` x ``height`` frame to send when it holds ``faces``: every face with its
    margin, as one box (the union: several visitors are all measured), clipped to the frame, with even
    corners and sides a multiple of 4 (whole 4:2:0 chroma rows in a tight I420 crop); None when there is
    no face (the whole frame goes)."""
    if not faces:
        return None
    left = min(f.x - margin * f.w for f in faces)
    top = min(f.y - margin * f.h for f in faces)
    right = max(f.x + (1 + margin) * f.w for f in faces)
    bottom = max(f.y + (1 + margin) * f.h for f in faces)
    x0, y0 = max(0, int(left)) // 2 * 2, max(0, int(top)) // 2 * 2
    w = (min(width, int(right + 1)) - x0) // 4 * 4
    h = (min(height, int(bottom + 1)) - y0) // 4 * 4
    if w < 4 or h < 4:
        return None  # a box outside the frame (a stale detection of another size): send the frame
    return Box(x0, y0, w, h)
