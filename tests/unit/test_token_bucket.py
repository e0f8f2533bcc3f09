"""The one token bucket: the v1 pacer and emulator rate check (``try_send``), the MQTT publish cap and
command budgets (``try_take``, ``take``)."""

from __future__ import annotations

from typing import List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.throttle import TokenBucket


@given(st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=200))
def test_takes_never_exceed_rate_times_elapsed_plus_capacity(gaps: List[float]) -> None:
    bucket = TokenBucket(rate_per_s=1000.0, capacity=100.0, now=0.0, initial=100.0)
    now, taken = 0.0, 0.0
    for gap in gaps:
        now += gap
        if bucket.try_send(100.0, now):
            taken += 100.0
        assert taken <= 1000.0 * now + 100.0 + 1e-6


def test_wait_says_when_a_take_succeeds() -> None:
    bucket = TokenBucket(rate_per_s=3.0, capacity=1.0, now=0.0, initial=1.0)
    assert bucket.try_send(1.0, 0.0)
    assert not bucket.try_send(1.0, 0.1)
    wait = bucket.wait_s(1.0, 0.1)
    assert wait == pytest.approx(1 / 3 - 0.1)
    assert bucket.try_send(1.0, 0.1 + wait)


def test_oversized_item_taken_when_full_then_paid_back() -> None:
    bucket = TokenBucket(rate_per_s=1000.0, capacity=2000.0, now=0.0, initial=2000.0)
    assert bucket.try_send(10_000.0, 0.0)  # a 10 s frame: allowed once the bucket is full
    assert not bucket.try_send(100.0, 7.0)  # its debt is not yet paid
    assert bucket.try_send(100.0, 8.2)


def test_penalty_delays_the_next_take() -> None:
    bucket = TokenBucket(rate_per_s=3.0, capacity=1.0, now=0.0, initial=1.0)
    bucket.take(1.0, 0.0)
    assert not bucket.try_send(1.0, 0.2)
    assert bucket.try_send(1.0, 0.34)


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="rate_per_s=-1"):
        TokenBucket(rate_per_s=-1.0, capacity=1.0, now=0.0)


def test_a_budget_never_passes_more_than_it_holds() -> None:
    bucket = TokenBucket(rate_per_s=2.0, capacity=4.0, now=0.0)
    assert bucket.available(0.0) == 4  # starts full
    assert not bucket.try_take(5.0, 1000.0)  # more than the bucket: never, unlike try_send
    assert bucket.try_send(5.0, 1000.0)
    assert bucket.available(1000.0) == 0  # in debt
    assert bucket.wait_s(1.0, 1000.0) == pytest.approx(1.0)


def test_a_zero_budget_allows_nothing() -> None:
    assert not TokenBucket(rate_per_s=0.0, capacity=0.0, now=0.0).try_take(1.0, 1e9)
    spent = TokenBucket(rate_per_s=0.0, capacity=1.0, now=0.0)
    assert spent.try_take(1.0, 0.0)
    assert not spent.try_take(1.0, 1e9)
    assert spent.wait_s(1.0, 1e9) == float("inf")


def test_a_clock_stepping_back_refills_nothing() -> None:
    bucket = TokenBucket(rate_per_s=1.0, capacity=1.0, now=10.0)
    assert bucket.try_take(1.0, 10.0)
    assert not bucket.try_take(1.0, 5.0)
    assert not bucket.try_take(1.0, 10.5)
    assert bucket.try_take(1.0, 11.0)
