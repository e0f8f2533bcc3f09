"""The emulator's organisation request limit: a sliding window shared by an organisation's keys."""

from __future__ import annotations

from typing import Any, Dict, Sequence

import pytest

from hume_emulator.orglimit import OrgLimit, OrgLimitSettings, parse_org_mapping


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


clock = Clock()


def limit(requests: int = 3, window_s: float = 10.0, orgs: Sequence[str] = ()) -> OrgLimit:
    settings = OrgLimitSettings(requests, window_s, parse_org_mapping(list(orgs)))
    return OrgLimit(settings, clock)


def test_at_most_the_limit_in_any_window_and_refusals_cost_nothing() -> None:
    clock.now = 100.0
    org = limit()
    assert [org.admit("k") for _ in range(3)] == [None, None, None]
    clock.now = 104.0
    assert org.admit("k") == pytest.approx(6.0)  # the first open leaves the window at 110
    for _ in range(50):  # a retry storm: refused, and not counted against the budget
        assert org.admit("k") is not None
    clock.now = 110.0
    assert org.admit("k") is None  # the budget renews as the oldest opens leave the window
    assert org.stats()["admitted"] == {"default": 4}
    assert org.stats()["refused"] == {"default": 51}
    assert OrgLimit.retry_after_header(0.2) == {"Retry-After": "1"}  # never "0" while refusing


def test_keys_of_one_organisation_share_its_budget_and_other_organisations_have_their_own() -> None:
    clock.now = 0.0
    org = limit(2, 60.0, ["a1=acme", "a2=acme", "b1=beta"])
    assert org.admit("a1") is None
    assert org.admit("a2") is None
    assert org.admit("a1") is not None
    assert org.admit("a2") is not None
    assert org.admit("b1") is None  # another organisation
    assert org.admit("unmapped") is None  # the default organisation
    assert "acme" in org.refusal_text("a2")


def test_zero_is_unlimited() -> None:
    org = limit(0)
    assert all(org.admit("k") is None for _ in range(1000))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"requests": -1}, "integer >= 0"),
        ({"window_s": 0.0}, "window must be > 0"),
        ({"answer": "silence"}, "handshake, error"),
        ({"orgs": (("", "acme"),)}, "KEY=ORG"),
    ],
)
def test_bad_settings_are_refused_naming_what_is_allowed(kwargs: Dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OrgLimitSettings(**kwargs)


def test_org_mapping_needs_key_and_organisation() -> None:
    assert parse_org_mapping(["k=acme", " j = beta "]) == (("k", "acme"), ("j", "beta"))
    with pytest.raises(ValueError, match="KEY=ORGANISATION"):
        parse_org_mapping(["just-a-key"])
