"""LogThrottle: one line per kind per interval, whatever the rate, with the count of those held back."""

from __future__ import annotations

import logging
from typing import List

import pytest

from agent.throttle import LogThrottle


def test_one_line_per_kind_per_interval_and_the_rest_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    now: List[float] = [0.0]
    throttle = LogThrottle(logging.getLogger("agent.test"), every_s=60.0, clock=lambda: now[0])
    said = [throttle.log(logging.INFO, "invalid", "refused %d", i) for i in range(1000)]
    assert said.count(True) == 1
    assert throttle.log(logging.INFO, "budget", "over budget")  # another kind is said at once
    now[0] = 61.0
    assert throttle.log(logging.INFO, "invalid", "refused %d", 1000)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["refused 0", "over budget", "refused 1000 (999 more like this since, not logged)"]
    throttle.clear("invalid")
    assert throttle.log(logging.INFO, "invalid", "again")


def test_kinds_remembered_are_bounded() -> None:
    throttle = LogThrottle(logging.getLogger("agent.test"), max_keys=8, clock=lambda: 0.0)
    for i in range(1000):
        throttle.log(logging.DEBUG, f"kind {i}", "x")
    assert len(throttle._said) == 8


def test_due_decides_like_log_without_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    now: List[float] = [0.0]
    throttle = LogThrottle(logging.getLogger("agent.test"), every_s=60.0, clock=lambda: now[0])
    assert [throttle.due("backoff") for _ in range(3)] == [True, False, False]
    assert not throttle.log(logging.INFO, "backoff", "shared with log()")
    now[0] = 60.0
    assert throttle.due("backoff")
    assert caplog.records == []
