"""Outside input: bounded size, bounded nesting, clipped text."""

from __future__ import annotations

import pytest

from agent.untrusted import MAX_SHOWN_CHARS, UntrustedInputError, clip, loads


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
