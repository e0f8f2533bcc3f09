import random

import pytest

from agent.backoff import (
    RATE_LIMIT_FIRST_CEILING_S,
    RATE_LIMIT_FLOOR_S,
    RATE_LIMIT_MAX_S,
    RETRY_AFTER_MAX_S,
    Backoff,
    rate_limit_backoff,
    rate_limited_delay,
    retry_after_s,
)


def test_delays_grow_within_cap_and_reset() -> None:
    b = Backoff(1.0, 10.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(20)]
    assert all(1.0 <= d <= 10.0 for d in delays)
    assert max(delays[:2]) <= 2.0  # first attempts stay near the initial delay
    assert max(delays[5:]) > 2.0  # later ones spread up to the cap
    b.reset()
    assert b.next_delay() == 1.0  # uniform(1, 1)


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="bad backoff"):
        Backoff(5.0, 1.0)


def test_rate_limit_backoff_is_full_jitter_within_its_bounds() -> None:
    b = rate_limit_backoff(random.Random(3))
    runs = [[b.next_delay() for _ in range(8)] for _ in range(200) if b.reset() is None]
    firsts = [run[0] for run in runs]
    assert all(RATE_LIMIT_FLOOR_S <= d <= RATE_LIMIT_FIRST_CEILING_S for d in firsts)
    assert min(firsts) < 2.0  # spread over the whole first range, not clumped
    assert max(firsts) > 7.0
    later = [d for run in runs for d in run]
    assert all(RATE_LIMIT_FLOOR_S <= d <= RATE_LIMIT_MAX_S for d in later)
    assert max(run[-1] for run in runs) > 45.0  # the ceiling has doubled up to the window


def test_retry_after_is_read_and_clamped() -> None:
    assert retry_after_s(None) is None
    assert retry_after_s("7") == 7.0
    assert retry_after_s(" 2.5 ") == 2.5
    assert retry_after_s("-3") == 0.0
    assert retry_after_s("1e9") == RETRY_AFTER_MAX_S  # a hostile server cannot park a kiosk for years
    assert retry_after_s("nan") is None
    assert retry_after_s("Wed, 21 Oct 2026 07:28:00 GMT") is None
    b = rate_limit_backoff(random.Random(1))
    assert 5.0 + RATE_LIMIT_FLOOR_S <= rate_limited_delay(b, 5.0) <= 5.0 + RATE_LIMIT_FIRST_CEILING_S


def test_floor_below_initial_gives_full_jitter_and_a_floor_above_is_refused() -> None:
    b = Backoff(4.0, 8.0, rng=random.Random(2), floor_s=0.5)
    assert min(b.next_delay() for _ in range(100) if b.reset() is None) < 1.0
    with pytest.raises(ValueError, match="floor_s"):
        Backoff(1.0, 8.0, floor_s=2.0)
