"""The one 'how long ago' of status and fleet (agent.ops.ago)."""

from __future__ import annotations

from agent.ops.ago import ago, ago_iso


def test_each_range_has_its_unit() -> None:
    assert [ago(s) for s in (-3, 5, 300, 3 * 3600, 3 * 86400)] == [
        "0 s ago",  # a clock stepped back
        "5 s ago",
        "5 min ago",
        "3.0 h ago",
        "3 d ago",
    ]


def test_a_message_timestamp() -> None:
    assert ago_iso(None, 0.0) == "-"
    assert ago_iso("1970-01-01T00:01:00.000Z", 90.0) == "30 s ago"
    assert ago_iso("1970-01-01T00:01:00+00:00", 90.0) == "30 s ago"
