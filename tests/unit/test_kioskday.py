"""Benchmark 8's dollars-per-day formula (scripts/bench/_day.py) and its missed seconds, on numbers worked by
hand."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "bench"))

import _day
import kioskday

from agent.hume import pricing

NOTHING = {"audio_s": 0.0, "video_s": 0.0, "images": 0.0}


def test_prices_per_api_version() -> None:
    minute = {"audio_s": 60.0, "video_s": 60.0, "images": 100.0}
    assert _day.usd(minute, v1=True) == pytest.approx(
        pricing.AUDIO_USD_PER_MIN + pricing.V1_VIDEO_USD_PER_MIN
    )
    assert _day.usd(minute, v1=False) == pytest.approx(pricing.AUDIO_USD_PER_MIN + 100 * pricing.IMAGE_USD)


def test_a_day_is_units_of_visits_and_the_rest_empty() -> None:
    """12 h at 10 %: 4,320 visitor-seconds; a 300 s unit with 60 visitor-seconds is played 72 times
    (21,600 s), and the other 21,600 s are empty, billed at the lead-in's rate."""
    unit = {"audio_s": 30.0, "video_s": 20.0, "images": 0.0}
    empty = {"audio_s": 0.0, "video_s": 0.5, "images": 0.0}
    d = _day.day(unit, empty, 1000.0, 10.0, occupancy=0.10, day_s=43_200, unit_s=300, visitor_s=60, v1=True)
    assert d["bill"] == {"audio_s": 72 * 30.0, "video_s": 72 * 20.0 + 21_600 * 0.5, "images": 0.0}
    assert d["bytes"] == 72 * 1000.0 + 21_600 * 10.0
    assert d["usd"] == pytest.approx(_day.usd(d["bill"], v1=True))


def test_an_agent_that_sends_nothing_to_an_empty_kiosk_pays_only_for_visits() -> None:
    unit = {"audio_s": 0.0, "video_s": 0.0, "images": 40.0}
    d = _day.day(unit, NOTHING, 0.0, 0.0, occupancy=0.05, day_s=43_200, unit_s=300, visitor_s=60, v1=False)
    assert d["bill"]["images"] == 36 * 40.0  # 2,160 visitor-seconds / 60
    assert d["usd"] == pytest.approx(36 * 40 * pricing.IMAGE_USD)


def test_units_that_overfill_the_day_leave_no_negative_empty_time() -> None:
    empty = {"audio_s": 1.0, "video_s": 0.0, "images": 0.0}
    d = _day.day(NOTHING, empty, 0.0, 1.0, occupancy=1.0, day_s=3600, unit_s=300, visitor_s=60, v1=True)
    assert d["bill"]["audio_s"] == 0.0
    assert d["bytes"] == 0.0


def test_a_pause_in_the_speech_track_is_not_speaking_a_short_one_is() -> None:
    """Benchmark 8 counts a visitor's silence (the track's pauses of 250 ms or more) as nothing to miss."""
    rate = 16000
    tone = (8000 * np.sin(np.arange(rate) * 2 * np.pi * 220 / rate)).astype(np.int16)
    track = np.concatenate(
        [tone[: rate // 2], np.zeros(rate // 2, np.int16), tone[: rate // 2], np.zeros(rate // 10, np.int16),
         tone[: 4 * rate // 10]]
    )  # fmt: skip
    episode = kioskday.Episode("visit", 0.0, 2.0, (), ((0.0, 2.0),))
    script = kioskday.Script(0.0, (episode,), 2.0)
    speaking = kioskday.speaking_in(script, track)
    assert [speaking(t) for t in (0.25, 0.75, 1.25, 1.55, 1.8)] == [True, False, True, True, True]
    as_scripted = kioskday.missed(script, [], [], [], 2.0)
    as_voiced = kioskday.missed(script, [], [], [], 2.0, speaking=speaking)
    assert (as_scripted[0]["missed_s"], as_voiced[0]["missed_s"]) == (2.0, 1.5)
