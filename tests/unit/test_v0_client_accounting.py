"""The in-flight table, the per-socket counters, and the backend's synchronous side (no sockets)."""

from __future__ import annotations

import json

import pytest

from agent.config import HumeConfig
from agent.hume.v0.accounting import InFlight, LinkStats
from agent.hume.v0.client import V0Backend
from agent.hume.v0.payloads import FRAME_BACKLOG


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
    assert stats.to_status("idle", None, {}).latency_p50_s is None
    for s in (0.1, 0.2, 0.9):
        stats.latency(s)
    stats.warnings["W0103"] += 2
    link = stats.to_status("open", None, {"dropped_frames": 1})
    assert (link.latency_p50_s, link.latency_max_s) == (0.2, 0.9)
    d = link.to_json()
    assert (d["warning_W0103"], d["dropped_frames"]) == (2, 1)
    json.dumps(d)


def test_backend_send_never_needs_a_loop_and_status_is_json() -> None:
    """send_* only touch memory: callable before run(), without an event loop, and bounded."""
    backend = V0Backend(HumeConfig(api_key="sekrit-key-123", models=("face", "prosody"), queue_seconds=2))
    for i in range(10):
        backend.send_frame(b"jpeg", float(i), "s1")
        backend.send_audio(b"\x00\x00" * 16000, float(i), "s1")
    backend.send_text("not configured: ignored", 0.0, "s1")
    typed = backend.status()
    assert (typed.backend, typed.state, typed.ok, typed.last_error) == ("v0", "idle", True, None)
    status = typed.to_json()
    json.dumps(status)
    assert set(status["links"]) == {"video", "audio"}  # type: ignore[arg-type]
    links = status["links"]
    assert isinstance(links, dict)
    # The frame slot keeps the newest FRAME_BACKLOG frames (a visit's debounce burst, a706122): the rest drop.
    assert links["video"]["dropped_frames"] == 10 - FRAME_BACKLOG  # type: ignore[index,call-overload]
    assert links["audio"]["dropped_audio_s"] == 8.0  # type: ignore[index,call-overload]
    assert links["audio"]["queued_audio_s"] == 2.0  # type: ignore[index,call-overload]
    assert "sekrit-key-123" not in repr(backend)
    assert "sekrit-key-123" not in json.dumps(status)
