import random

import pytest

from agent.backoff import Backoff


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
