"""Outside input: bounded size, bounded nesting, clipped text."""

from __future__ import annotations

import json

import pytest

from agent.hume.v0.accounting import LinkStats
from agent.untrusted import MAX_DISTINCT_KEYS, MAX_SHOWN_CHARS, UntrustedInputError, clip, code_key, loads


def test_loads_accepts_ordinary_json() -> None:
    assert loads(b'{"a": [1, 2]}', max_bytes=100, what="x") == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (b"{" * 10, "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b" " * 101, "at most 100 allowed"),
    ],
)
def test_loads_refuses_hostile_input_with_a_clear_error(data: bytes, says: str) -> None:
    with pytest.raises(UntrustedInputError, match=says):
        loads(data, max_bytes=100 if says.startswith("at most") else 10**6, what="reply")


def test_clip_bounds_and_flattens_text() -> None:
    assert clip("E0101") == "E0101"
    long = clip("x" * 10_000)
    assert len(long) < MAX_SHOWN_CHARS + 30
    assert long.endswith("(+9800 chars)")
    assert clip("a\nb\x1b[31m") == "a?b?[31m"


def test_codes_of_the_documented_shape_are_kept_and_others_are_one_name() -> None:
    assert code_key("E0300") == "E0300"
    assert code_key("W0103") == "W0103"
    assert code_key("E" + "9" * 2**19) == "malformed"
    assert code_key("e0300") == "malformed"
    assert code_key(None, missing="unknown") == "unknown"


def test_a_thousand_distinct_codes_make_a_bounded_health_entry() -> None:
    stats = LinkStats()
    for i in range(1000):
        stats.errors.add(code_key(f"E{i:04d}"))
    assert sum(stats.errors.values()) == 1000
    assert len(stats.errors) == MAX_DISTINCT_KEYS + 1  # + "other"
    status = stats.to_status("open", None, {})
    assert len(json.dumps(status.to_json())) < 4096
