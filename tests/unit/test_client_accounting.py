"""The in-flight table, the per-socket counters, and the backend's synchronous side (no sockets)."""

from __future__ import annotations

import json

import pytest

from agent.config import HumeConfig
from agent.hume.accounting import InFlight, LinkStats
from agent.hume.client import V0Backend


def test_reply_matched_by_payload_id_with_latency() -> None:
    table: InFlight[str] = InFlight()
    table.add("a", "first", sent_at=10.0)
    table.add("b", "second", sent_at=11.0)
    assert table.match("b", now=11.5) == ("second", 0.5)
    assert table.match("b", now=12.0) is None  # answered once only
    assert table.match("zzz", now=12.0) is None
    assert len(table) == 1


def test_reply_without_id_matches_only_a_lone_payload() -> None:
    table: InFlight[str] = InFlight()
    table.add("a", "x", 0.0)
    table.add("b", "y", 0.0)
    assert table.match(None, 1.0) is None
    table.match("a", 1.0)
    assert table.match(None, 2.0) == ("y", 2.0)


def test_overdue_payloads_expire_and_clear() -> None:
    table: InFlight[str] = InFlight()
    assert table.deadline(5.0) is None
    table.add("a", "old", 0.0)
    table.add("b", "new", 3.0)
    assert table.deadline(5.0) == 5.0
    assert table.expire(now=4.0, timeout_s=5.0) == []
    assert table.expire(now=5.0, timeout_s=5.0) == ["old"]
    assert table.clear() == ["new"]
    assert len(table) == 0


def test_duplicate_payload_id_is_a_bug() -> None:
    table: InFlight[int] = InFlight()
    table.add("a", 1, 0.0)
    with pytest.raises(ValueError, match="already in flight"):
        table.add("a", 2, 0.0)


def test_stats_report_p50_and_max_latency() -> None:
    stats = LinkStats()
    assert stats.as_dict()["latency_p50_s"] is None
    for s in (0.1, 0.2, 0.9):
        stats.latency(s)
    stats.warnings["W0103"] += 2
    d = stats.as_dict()
    assert (d["latency_p50_s"], d["latency_max_s"]) == (0.2, 0.9)
    assert d["warnings"] == {"W0103": 2}
    json.dumps(d)


def test_backend_send_never_needs_a_loop_and_status_is_json() -> None:
    """send_* only touch memory: callable before run(), without an event loop, and bounded."""
    backend = V0Backend(HumeConfig(api_key="sekrit-key-123", models=("face", "prosody"), queue_seconds=2))
    for i in range(10):
        backend.send_frame(b"jpeg", float(i), "s1")
        backend.send_audio(b"\x00\x00" * 16000, float(i), "s1")
    backend.send_text("not configured: ignored", 0.0, "s1")
    status = backend.status()
    json.dumps(status)
    assert status["state"] == "idle"
    assert set(status["sockets"]) == {"video", "audio"}
    assert status["sockets"]["video"]["dropped_frames"] == 9
    assert status["sockets"]["audio"]["dropped_audio_s"] == 8.0
    assert status["sockets"]["audio"]["queued_audio_s"] == 2.0
    assert "sekrit-key-123" not in repr(backend)
    assert "sekrit-key-123" not in json.dumps(status)
