"""Summary math under random inputs: order, ties, bounds, empty windows, smoothing."""

from __future__ import annotations

from typing import Dict, List

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import SummaryConfig
from agent.hume.types import Measurement, Observation, Score
from agent.hume.v0.protocol import EXPRESSIONS
from agent.visit.session import START, SessionEvent
from agent.visit.stats import DECIMALS, sentiment_summary, top_k
from agent.visit.summary import Summarizer

T0 = 1_790_000_000.0
EPS = 0.5 * 10**-DECIMALS + 1e-12  # rounding to DECIMALS moves a value by at most this

unit = st.floats(0.0, 1.0)
names = st.sampled_from([e.lower() for e in EXPRESSIONS[:12]])  # few names: ties and repeats are common
score_maps = st.dictionaries(names, st.one_of(unit, st.sampled_from([0.0, 0.25, 0.5, 1.0])), min_size=1)
windows = st.lists(st.lists(score_maps, min_size=1, max_size=6), min_size=1, max_size=6)


def key(item: Dict[str, object]) -> tuple:  # type: ignore[type-arg]
    return (-item["score"], item["name"])  # type: ignore[operator]


@given(means=st.dictionaries(st.text(min_size=1, max_size=4), unit), k=st.integers(1, 53))
def test_top_k_orders_by_score_then_name_within_bounds(means: Dict[str, float], k: int) -> None:
    top = top_k(means, k)
    assert len(top) == min(k, len({name.lower() for name in means}))
    assert all(0.0 <= item["score"] <= 1.0 for item in top)
    assert [key(i) for i in top] == sorted(key(i) for i in top)
    assert len({i["name"] for i in top}) == len(top)
    for item in top:  # one label case on every backend; Hume's own beside it where it differs
        assert item["name"] == str(item["name"]).lower()
        assert means[str(item.get("hume_name", item["name"]))] >= 0.0
    if top:
        last = key(top[-1])
        listed = {i["name"] for i in top}
        for name, score in means.items():
            if name.lower() not in listed:
                assert (-round(score, DECIMALS), name.lower()) > last, (
                    "an omitted score outranks a listed one"
                )


def summarize(cfg: SummaryConfig, window_list: List[List[Dict[str, float]]]) -> List[List[Dict[str, object]]]:
    """Feed each window's measurements, flush it, return the published ``top`` of every window."""
    summ = Summarizer(cfg, "kiosk-1")
    summ.session_started(SessionEvent(START, "s1", 0.0, "presence"), T0)
    tops = []
    for i, window in enumerate(window_list):
        for m in window:
            emotions = tuple(Score(n, s) for n, s in m.items())
            summ.add(Observation("prosody", T0 + i * 10 + 1, (Measurement(emotions),), session_id="s1"))
        [msg] = summ.flush(T0 + (i + 1) * 10)
        tops.append(msg.payload["top"])
    return tops


@given(window_list=windows, k=st.integers(1, 12))
def test_window_top_is_the_top_of_per_emotion_means(
    window_list: List[List[Dict[str, float]]], k: int
) -> None:
    for window, top in zip(window_list, summarize(SummaryConfig(top_k=k), window_list)):
        names_seen = {n for m in window for n in m}
        means = {
            n: sum(m[n] for m in window if n in m) / sum(1 for m in window if n in m) for n in names_seen
        }
        expected = top_k(means, k)
        assert [i["name"] for i in top] == [i["name"] for i in expected]
        for got, want in zip(top, expected):
            assert abs(got["score"] - want["score"]) <= 2 * EPS  # type: ignore[operator]


@settings(deadline=None)
@given(window_list=windows, alpha=st.floats(0.0, 0.99))
def test_smoothing_stays_within_the_range_of_the_window_means(
    window_list: List[List[Dict[str, float]]], alpha: float
) -> None:
    tops = summarize(SummaryConfig(top_k=12, smoothing=alpha), window_list)
    seen: Dict[str, List[float]] = {}
    for window, top in zip(window_list, tops):
        for n in {n for m in window for n in m}:
            values = [m[n] for m in window if n in m]
            seen.setdefault(n, []).append(sum(values) / len(values))
        for item in top:
            history = seen[item["name"]]  # type: ignore[index]
            assert min(history) - EPS <= item["score"] <= max(history) + EPS  # type: ignore[operator]
            assert 0.0 <= item["score"] <= 1.0  # type: ignore[operator]


@settings(deadline=None)
@given(flush_at=st.lists(st.floats(0, 1000), max_size=20), warnings=st.integers(0, 5))
def test_windows_without_measurements_publish_nothing(flush_at: List[float], warnings: int) -> None:
    """Before any reading there is nothing to end: empty windows publish nothing (no idle either)."""
    summ = Summarizer(SummaryConfig(), "kiosk-1")
    summ.session_started(SessionEvent(START, "s1", 0.0, "presence"), T0)
    for _ in range(warnings):
        summ.add(Observation("face", T0, (), warning_code="W0103", session_id="s1"))
    for t in sorted(flush_at):
        assert summ.flush(T0 + t) == []


@given(dist=st.dictionaries(st.sampled_from([str(i) for i in range(1, 10)]), unit))
def test_expected_sentiment_is_a_level(dist: Dict[str, float]) -> None:
    result = sentiment_summary(dist)
    if sum(dist.values()) <= 0:
        assert result is None
    else:
        assert result is not None
        assert 1.0 <= result["expected"] <= 9.0
        assert set(result["distribution"]) == set(dist)
