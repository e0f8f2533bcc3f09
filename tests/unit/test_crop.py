"""``camera.crop = "faces"``: only the region around the faces leaves the kiosk, at the scale the whole frame
would have had, and the face model still finds the face in it."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from agent import config as config_mod
from agent.capture.synthetic import SceneStep, SyntheticCamera
from agent.media.frames import Box, Frame, crop_region
from agent.media.video import FramePipeline
from agent.visit.presence import PresenceDetector
from hume_emulator.detectors import detect_faces

CFG = config_mod.from_dict({}, environ={})
CAMERA = dataclasses.replace(CFG.camera, static_threshold=0.0)  # every frame is sent: the crop is the subject


def test_no_face_means_the_whole_frame() -> None:
    assert crop_region(1280, 720, ()) is None


def test_one_face_gets_half_a_side_of_margin_all_round() -> None:
    assert crop_region(1280, 720, [Box(400, 200, 100, 120)]) == Box(350, 140, 200, 240)


def test_several_faces_are_all_kept_in_one_region() -> None:
    region = crop_region(1280, 720, [Box(100, 100, 80, 80), Box(900, 300, 120, 120)])
    assert region is not None
    assert (region.x, region.y) == (60, 60)
    assert region.x + region.w >= 1080 - 3
    assert region.y + region.h >= 480 - 3


def test_a_face_at_the_edge_is_clipped_to_the_frame_with_even_corners_and_sides_of_4() -> None:
    region = crop_region(641, 479, [Box(-10, 401, 91, 77)])
    assert region is not None
    assert region.x == 0
    assert region.y % 2 == 0
    assert region.w % 4 == 0
    assert region.h % 4 == 0
    assert region.x + region.w <= 641
    assert region.y + region.h <= 479


def test_a_box_outside_the_frame_sends_the_whole_frame() -> None:
    assert crop_region(640, 480, [Box(700, 500, 60, 60)]) is None


def _scene_frames(fmt: str, seconds: int = 12) -> list:
    """Every 2 s of the synthetic scene (face on the left, a pause with nobody, face on the right)."""
    scene = [SceneStep(4.0, "a"), SceneStep(2.0, None), SceneStep(6.0, "b")]
    camera = SyntheticCamera(1280, 720, scene=scene)
    frames = []
    for k in range(0, 2 * seconds, 3):
        bgr = camera.render(k / 2)
        image = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)) if fmt == "yuv420" else bgr
        frames.append(Frame(image, fmt, k / 2))
    return frames


def _decoded(jpeg: bytes) -> np.ndarray:
    image: np.ndarray = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return image


@pytest.mark.parametrize("fmt", ["bgr", "yuv420"])
def test_crops_keep_the_face_findable_at_the_same_scale_and_cost_fewer_bytes(fmt: str) -> None:
    detector = PresenceDetector(every_n=1, min_face_px=CFG.hume.min_face_size, sent_width=CAMERA.width)
    crop = FramePipeline(CAMERA, max_fps=2.0)
    whole = FramePipeline(dataclasses.replace(CAMERA, crop="frame"), max_fps=2.0)
    crop_bytes = whole_bytes = with_face = 0
    for frame in _scene_frames(fmt):
        detector.present(frame)
        cropped, full = crop.process(frame, detector.last_faces), whole.process(frame, detector.last_faces)
        assert cropped is not None
        assert full is not None
        assert (full.width, full.height) == (640, 360)  # crop = "frame" ignores the faces
        if not detector.last_faces:  # nobody there: the whole frame, as before
            assert (cropped.width, cropped.height) == (640, 360)
            continue
        with_face += 1
        assert cropped.width < full.width
        assert cropped.height < full.height
        faces = detect_faces(_decoded(cropped.jpeg), CFG.hume.min_face_size)
        assert faces, f"no face in the crop of t={frame.captured_at}"
        in_full = detect_faces(_decoded(full.jpeg), CFG.hume.min_face_size)
        assert abs(faces[0].w - in_full[0].w) <= 0.15 * in_full[0].w  # same scale: the face keeps its pixels
        crop_bytes, whole_bytes = crop_bytes + len(cropped.jpeg), whole_bytes + len(full.jpeg)
    assert with_face >= 5
    assert crop.counters["cropped"] == with_face
    assert crop_bytes < 0.8 * whole_bytes


def test_the_detector_reports_faces_in_frame_pixels() -> None:
    detector = PresenceDetector(every_n=1)
    frame = _scene_frames("bgr")[0]
    assert detector.present(frame)
    (box,) = detector.last_faces
    truth = detect_faces(frame.image, 60)
    assert truth
    assert abs(box.x - truth[0].x) < 0.2 * truth[0].w
    assert abs(box.w - truth[0].w) < 0.3 * truth[0].w
