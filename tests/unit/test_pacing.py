"""The token bucket behind both the emulator's rate check and the client's pacer."""

from __future__ import annotations

from typing import List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.hume.v1.pacing import TokenBucket


@given(st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=200))
def test_takes_never_exceed_rate_times_elapsed_plus_capacity(gaps: List[float]) -> None:
    bucket = TokenBucket(rate=1000.0, capacity=100.0, now=0.0, initial=100.0)
    now, taken = 0.0, 0.0
    for gap in gaps:
        now += gap
        if bucket.try_take(100.0, now):
            taken += 100.0
        assert taken <= 1000.0 * now + 100.0 + 1e-6


def test_wait_says_when_a_take_succeeds() -> None:
    bucket = TokenBucket(rate=3.0, capacity=1.0, now=0.0, initial=1.0)
    assert bucket.try_take(1.0, 0.0)
    assert not bucket.try_take(1.0, 0.1)
    wait = bucket.wait_s(1.0, 0.1)
    assert wait == pytest.approx(1 / 3 - 0.1)
    assert bucket.try_take(1.0, 0.1 + wait)


def test_oversized_item_taken_when_full_then_paid_back() -> None:
    bucket = TokenBucket(rate=1000.0, capacity=2000.0, now=0.0, initial=2000.0)
    assert bucket.try_take(10_000.0, 0.0)  # a 10 s frame: allowed once the bucket is full
    assert not bucket.try_take(100.0, 7.0)  # its debt is not yet paid
    assert bucket.try_take(100.0, 8.2)


def test_penalty_delays_the_next_take() -> None:
    bucket = TokenBucket(rate=3.0, capacity=1.0, now=0.0, initial=1.0)
    bucket.penalize(1.0, 0.0)
    assert not bucket.try_take(1.0, 0.2)
    assert bucket.try_take(1.0, 0.34)


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="rate=0"):
        TokenBucket(rate=0.0, capacity=1.0, now=0.0)
