"""Wall-clock steps (a Pi's first NTP sync, a manual ``date -s``) must not stall, reorder or drop output.

The agent times everything with the monotonic clock and numbers messages from the outbox's counter; the
one place that reads the wall clock for timing is the summary window, which is stamped in UTC for
dashboards. The process-level proof is the campaign (``test_campaign.py``, libfaketime steps the agent's
wall clock back and forward mid-run and every seq still arrives, in order); this pins the summary window.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from agent.config import SummaryConfig
from agent.hume.types import Measurement, Observation, Score
from agent.visit.session import SessionEvent
from agent.visit.summary import Summarizer

T0 = 1_790_000_000.0
WINDOW_S = 5.0


def _face(at: float, session: str) -> Observation:
    return Observation(
        "face", at, (Measurement((Score("Joy", 0.9), Score("Calmness", 0.1))),), session_id=session
    )


@given(step_s=st.floats(min_value=-30 * 86400, max_value=30 * 86400).filter(lambda s: abs(s) > 1))
@settings(max_examples=50, deadline=None)
def test_a_stepped_wall_clock_delays_a_summary_by_at_most_one_window(step_s: float) -> None:
    summarizer = Summarizer(SummaryConfig(window_s=WINDOW_S), "clock-test")
    summarizer.session_started(SessionEvent("start", "s1", 0.0, "test"), T0)
    summarizer.add(_face(T0 + 1, "s1"))
    assert summarizer.flush(T0 + 2) == []
    wall = T0 + 2 + step_s  # the clock is stepped here; it runs on normally from the new reading
    summarizer.add(_face(wall, "s1"))
    out = summarizer.flush(wall) + summarizer.flush(wall + WINDOW_S)
    summaries = [m for m in out if m.topic == "summary/face"]
    assert summaries, f"no summary within one window after a {step_s:+.0f} s step"
