"""Pictures as plain values: what a camera captures (:class:`Frame`) and what leaves for the face model
(:class:`EncodedFrame`), with the size arithmetic both sides share.

The bottom of the agent's media layer: capture adapters, the pipeline, presence and the Hume clients all
take these from here, and this module imports nothing of the agent's.
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

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
