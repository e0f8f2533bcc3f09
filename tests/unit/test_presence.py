"""The on-device presence check: a face Hume could measure means somebody is there; an empty wall does not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from agent.capture.synthetic import SceneStep, SyntheticCamera
from agent.media.frames import Frame
from agent.visit.presence import FULL_EVERY, IDLE_REFRESH, PresenceDetector

SCENE = [SceneStep(1.0, None), SceneStep(1.0, "a"), SceneStep(1.0, None), SceneStep(1.0, "b")]


def _frame(t: float, size: tuple = (640, 480)) -> Frame:
    return Frame(SyntheticCamera(*size, scene=SCENE).render(t), "bgr", t)


@pytest.mark.parametrize(("t", "expected"), [(0.5, False), (1.5, True), (2.5, False), (3.5, True)])
def test_faces_a_and_b_are_present_an_empty_wall_is_not(t: float, expected: bool) -> None:
    assert PresenceDetector(every_n=1).present(_frame(t)) is expected


def test_the_y_plane_of_a_yuv420_frame_is_enough() -> None:
    bgr = _frame(1.5).image
    yuv = Frame(np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)), "yuv420", 0.0)
    assert PresenceDetector(every_n=1).present(yuv)


def test_a_face_too_small_for_hume_does_not_count() -> None:
    """At 160x120 the synthetic face is ~30 px: below the API's 60 px minimum at 640 px (30 px at 320)."""
    small = _frame(1.5, (160, 120))
    assert not PresenceDetector(every_n=1).present(small)
    assert PresenceDetector(every_n=1).present(_frame(1.5, (1280, 960)))


def test_while_somebody_is_there_every_nth_frame_is_examined_and_the_answer_held_between() -> None:
    detector = PresenceDetector(every_n=3)
    face, empty = _frame(1.5), _frame(0.5)
    answers = [detector.present(f) for f in (face, empty, empty, empty, empty, empty, face)]
    assert answers == [True, True, True, False, False, False, True]
    assert detector.checks == 3  # the face, its 3rd frame, then every changed frame of the empty scene
    assert detector.unchanged == 2  # the empty scene's repeats


def test_while_nobody_is_there_every_frame_is_examined() -> None:
    """A visitor's debounce starts at the first frame that shows them, not up to every_n - 1 frames later."""
    detector = PresenceDetector(every_n=2)
    face, empty = _frame(1.5), _frame(0.5)
    answers = [detector.present(f) for f in (empty, empty, empty, face)]
    assert answers == [False, False, False, True]
    assert (detector.checks, detector.unchanged) == (2, 2)  # the repeats of the empty wall are not checked


def test_an_unchanged_empty_scene_is_checked_only_every_idle_refresh_frames_and_noise_is_unchanged() -> None:
    """Sensor noise (sigma 3 grey levels) does not count as a change; a visitor stepping in does."""
    detector = PresenceDetector(every_n=2)
    rng = np.random.default_rng(0)
    empty = _frame(0.5).image.astype(np.float64)

    def noisy() -> Frame:
        return Frame(np.clip(empty + rng.normal(0, 3, empty.shape), 0, 255).astype(np.uint8), "bgr", 0.0)

    answers = [detector.present(noisy()) for _ in range(2 * IDLE_REFRESH)]
    assert not any(answers)
    assert detector.checks == 2  # the first frame, then the refresh after IDLE_REFRESH - 1 reused
    assert detector.present(_frame(1.5))  # a visitor steps in: changed, examined, found
    assert detector.checks == 3


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="every_n=0"):
        PresenceDetector(every_n=0)


def _both(t: float) -> Frame:
    """Visitors a and b together (b painted over a's wall)."""
    a = SyntheticCamera(640, 480, scene=[SceneStep(9.0, "a")]).render(t)
    b = SyntheticCamera(640, 480, scene=[SceneStep(9.0, "b")]).render(t)
    wall = SyntheticCamera(640, 480, scene=[SceneStep(9.0, None)]).render(t)
    mask = (b != wall).any(axis=2)
    a[mask] = b[mask]
    return Frame(a, "bgr", t)


def test_a_known_face_is_looked_for_only_around_itself_and_a_second_one_is_found_by_a_full_check() -> None:
    """Tracking checks (2-3 ms here against 6.5-10 ms over the whole thumbnail) answer while a face stays
    near where it was; every FULL_EVERY-th check looks everywhere, so a visitor joining is found."""
    detector = PresenceDetector(every_n=1)
    alone = [_frame(1.0 + 0.1 * k, (640, 480)) for k in range(FULL_EVERY)]  # face a, swaying
    assert all(detector.present(f) for f in alone)
    assert detector.tracked == FULL_EVERY - 1  # the first check had nothing to track
    counts = [
        len(detector.last_faces)
        for f in (_both(1.5 + 0.1 * k) for k in range(FULL_EVERY))
        if detector.present(f)
    ]
    assert counts[-1] == 2, f"the second visitor was not found within {FULL_EVERY} checks: {counts}"
    moved = PresenceDetector(every_n=1)
    assert moved.present(_frame(1.5))  # face a, on the left
    assert moved.present(_frame(3.5))  # face b, on the right: not near a, found by the full check
    assert moved.tracked == 0
    assert moved.last_faces[0].x > 320
