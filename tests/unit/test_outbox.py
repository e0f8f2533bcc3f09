"""The outbox's guarantees, on a real SQLite file in tmp_path (no broker)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import OutboxConfig
from agent.mqtt.outbox import Outbox, utc_iso
from agent.mqtt.outbox_file import KEEP_QUARANTINED

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def payloads(box: Outbox, limit: int = 1000) -> List[Dict[str, object]]:
    return [json.loads(r.payload) for r in box.ready(limit)]


def test_put_stamps_seq_and_ts_and_keeps_a_given_ts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxConfig())
    a = box.put("summary/face", {"x": 1})
    b = box.put("session", {"ts": "2026-01-01T00:00:00.000Z"}, retain=True)
    assert b == a + 1
    first, second = payloads(box)
    assert first["seq"] == a
    assert ISO_MS.match(str(first["ts"]))
    assert second["ts"] == "2026-01-01T00:00:00.000Z"
    assert [r.retain for r in box.ready(10)] == [False, True]


def test_state_rows_commit_with_their_messages_and_survive_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxConfig())
    box.put_many([("session", {"event": "start"}, True)], state={"session/a": "{}", "session/b": "[1]"})
    (end,) = box.put_many([("session", {"event": "end"}, True)], state={"session/a": None, "other": "x"})
    with pytest.raises(TypeError):  # a failing transaction writes neither the message nor the state
        box.put_many([("summary/face", {"bad": object()}, False)], state={"session/c": "{}"})
    box.close()
    box = Outbox(tmp_path / "o.sqlite", OutboxConfig())
    assert box.state_items("session/") == {"session/b": "[1]"}
    # retained/<topic>: the newest seq queued retained there (Outbox.superseded)
    assert box.state_items("") == {"other": "x", "session/b": "[1]", "retained/session": str(end)}
    assert box.state_items("session_") == {}, "the prefix is literal, not a LIKE pattern"
    assert [p["event"] for p in payloads(box)] == ["start", "end"]


def test_seq_survives_reopen_and_a_new_database_starts_above_epoch_millis(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.sqlite", OutboxConfig(), clock=clock)
    first = box.put("t", {})
    assert first == int(clock.now * 1000)
    box.close()
    again = Outbox(tmp_path / "o.sqlite", OutboxConfig(), clock=clock)
    assert again.put("t", {}) == first + 1


def test_rows_leave_only_on_ack_and_in_flight_ones_come_back_at_start(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxConfig())
    seqs = box.put_many([("a", {"n": i}, False) for i in range(5)])
    rows = box.ready(3)
    assert [r.seq for r in rows] == seqs[:3]
    box.settle([], [(r.id, 100 + i) for i, r in enumerate(rows)])
    assert [r.seq for r in box.ready(10)] == seqs[3:]  # in flight rows are not handed out twice
    assert box.settle([100, 999], []) == 1  # an unknown mid deletes nothing
    assert box.stats()["depth"] == 4
    assert box.stats()["inflight"] == 2
    box.close()
    box = Outbox(tmp_path / "o.sqlite", OutboxConfig())
    assert [r.seq for r in box.ready(10)] == seqs[1:]
    assert box.stats()["inflight"] == 0


def test_row_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxConfig(max_rows=10))
    seqs = [box.put("t", {"n": i}) for i in range(25)]
    assert [r.seq for r in box.ready(100)] == seqs[-10:]
    stats = box.stats()
    assert stats["depth"] == 10
    assert stats["dropped"]["rows"] == 15
    assert stats["dropped_total"] == 15
    box.close()
    assert Outbox(tmp_path / "o.sqlite", OutboxConfig(max_rows=10)).dropped()["rows"] == 15


def test_byte_bound_drops_oldest(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxConfig(max_bytes=10_000))
    for i in range(100):
        box.put("t", {"n": i, "pad": "x" * 500})
    stats = box.stats()
    assert stats["bytes"] <= 10_000 < stats["bytes"] + 600
    assert stats["dropped"]["bytes"] == 100 - stats["depth"]
    assert json.loads(box.ready(1)[0].payload)["n"] == 100 - stats["depth"]


def test_age_bound_drops_on_put_and_on_drain(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.sqlite", OutboxConfig(max_age_s=60), clock=clock)
    box.put("t", {"n": 0})
    clock.now += 30
    box.put("t", {"n": 1})
    clock.now += 40
    assert [p["n"] for p in payloads(box)] == [1]
    clock.now += 100
    assert box.ready(10) == []
    assert box.dropped()["age"] == 2


def test_disk_stays_bounded_under_churn(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, OutboxConfig(max_rows=200, max_bytes=50_000))
    for _ in range(50):
        box.put_many([("summary/face", {"pad": "y" * 300}, False)] * 100)
    on_disk = sum(p.stat().st_size for p in tmp_path.iterdir() if p.name.startswith("o.sqlite"))
    assert box.stats()["depth"] <= 200
    assert on_disk < 5 * 2**20  # WAL capped by journal_size_limit, pages reused


def test_corrupt_file_is_quarantined_with_one_loud_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite"
    path.write_bytes(b"this is not a database, a power cut wrote it" * 100)
    with caplog.at_level(logging.ERROR, logger="agent.mqtt.outbox"):
        box = Outbox(path, OutboxConfig())
    moved = list(tmp_path.glob("outbox.sqlite.corrupt-*"))
    assert len(moved) == 1
    assert box.quarantined == moved[0]
    assert len(caplog.records) == 1
    assert "corrupt" in caplog.text
    assert str(moved[0]) in caplog.text
    assert box.put("t", {}) > 0
    assert box.stats()["quarantined"] == str(moved[0])


def test_damaged_pages_are_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, OutboxConfig())
    box.put_many([("t", {"pad": "z" * 1000}, False)] * 50)
    box.close()
    data = bytearray(path.read_bytes())
    data[4096:12288] = b"\xff" * 8192  # the first pages after the header
    path.write_bytes(bytes(data))
    box = Outbox(path, OutboxConfig())
    assert box.quarantined is not None
    assert box.stats()["depth"] == 0


def test_quarantined_files_get_unique_names_and_a_bounded_count(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    for _ in range(KEEP_QUARANTINED + 3):  # faster than the clock's second: names must not collide
        path.write_bytes(b"garbage" * 100)
        Outbox(path, OutboxConfig()).close()
    moved = sorted(p.name for p in tmp_path.glob("outbox.sqlite.corrupt-*") if "-wal" not in p.name)
    assert len(moved) == KEEP_QUARANTINED
    assert len(set(moved)) == KEEP_QUARANTINED


def test_utc_iso_format() -> None:
    assert utc_iso(0.1234) == "1970-01-01T00:00:00.123Z"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["put", "send", "ack", "requeue", "reopen"]), max_size=60))
def test_nothing_is_lost_whatever_the_interleaving(
    tmp_path_factory: pytest.TempPathFactory, ops: List[str]
) -> None:
    """Without bounds, every put seq is acked or still queued, and a ready batch is in seq order."""
    path = tmp_path_factory.mktemp("prop") / "o.sqlite"
    box = Outbox(path, OutboxConfig())
    put: List[int] = []
    acked: List[int] = []
    inflight: Dict[int, int] = {}
    mid = 0
    for op in ops:
        if op == "put":
            put.append(box.put("t", {}))
        elif op == "send":
            rows = box.ready(3)
            assert [r.seq for r in rows] == sorted(r.seq for r in rows)
            sent = []
            for r in rows:
                mid += 1
                inflight[mid] = r.seq
                sent.append((r.id, mid))
            box.settle([], sent)
        elif op == "ack" and inflight:
            m = min(inflight)
            box.settle([m], [])
            acked.append(inflight.pop(m))
        elif op in ("requeue", "reopen"):
            if op == "reopen":
                box.close()
                box = Outbox(path, OutboxConfig())
            else:
                box.requeue_inflight()
            inflight.clear()
    remaining = [r.seq for r in box.ready(10_000)] + list(inflight.values())
    assert sorted(acked + remaining) == put
    box.close()


def test_an_older_retained_row_is_superseded_by_the_newest_on_its_topic_across_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, OutboxConfig())
    older = box.put("notice", {"active": False}, retain=True)
    newer = box.put("notice", {"active": True}, retain=True)
    plain = box.put("summary/face", {"i": 1})
    for _ in range(2):  # before and after a restart (the newest seq per topic is durable)
        rows = {r.seq: r for r in box.ready(10)}
        assert box.superseded(rows[older])
        assert not box.superseded(rows[newer])
        assert not box.superseded(rows[plain])
        box.close()
        box = Outbox(path, OutboxConfig())
    box.close()


def summary(model: str, n: int) -> Dict[str, object]:
    """A window's summary as the agent queues it (~540 bytes of JSON)."""
    names = ["joy", "amusement", "interest", "calmness", "concentration"]
    return {
        "schema": "hume-edge/summary/1",
        "device": "kiosk-lobby-01",
        "session": "3f7578a3d5c4462299edc30b51a72f54",
        "model": model,
        "window": {"start": "2026-12-08T03:09:27.286Z", "end": "2026-12-08T03:09:32.317Z"},
        "captured": {"first": "2026-12-08T03:09:22.321Z", "last": "2026-12-08T03:09:28.317Z"},
        "measurements": 13,
        "warnings": 0,
        "faces": [
            {
                "face_id": "face_0@b50e5b",
                "measurements": 13,
                "top": [
                    {"name": names[(n + k) % 5], "score": round(0.7605 - k * 0.0731, 4)} for k in range(3)
                ],
            }
        ],
        "faces_omitted": 0,
    }


def test_a_windows_summaries_are_stored_compressed_and_published_as_queued(tmp_path: Path) -> None:
    """Compressed rows (and 1 KB pages) make a window's put one WAL frame of ~1 KB: a 2 KB frame before
    (agent.mqtt.outbox_file). Rows an earlier version stored as plain JSON go out unchanged."""
    path = tmp_path / "o.sqlite"
    box = Outbox(path, OutboxConfig())
    box.put("t", {})
    wal = path.with_name("o.sqlite-wal")
    before = wal.stat().st_size
    seqs = box.put_many(
        [("summary/face", summary("face", 0), False), ("summary/prosody", summary("p", 1), False)]
    )
    assert wal.stat().st_size - before <= 1100, "one frame of a 1 KB page"
    stored = dict(box._db.execute("SELECT seq, payload FROM messages").fetchall())
    assert all(bytes(stored[s])[:1] == b"x" for s in seqs), "zlib streams"
    box._db.execute(
        "INSERT INTO messages VALUES (?, ?, 'old', ?, 0, 0, 9)", (seqs[-1] + 5, seqs[-1] + 5, b'{"old":1}')
    )
    rows = box.ready(10)
    published = [json.loads(r.payload) for r in rows[1:3]]
    assert [p.pop("seq") for p in published] == seqs
    assert [p.pop("ts") for p in published] == [utc_iso(rows[1].created)] * 2
    assert published == [summary("face", 0), summary("p", 1)]
    assert rows[-1].payload == b'{"old":1}'
    box.close()


def test_a_damaged_compressed_payload_goes_out_as_stored_and_the_queue_moves_on(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxConfig())
    first, second = box.put_many([("t", summary("face", 0), False), ("t", summary("face", 1), False)])
    box._db.execute("UPDATE messages SET payload = ? WHERE seq = ?", (b"x\x9c not deflate", first))
    rows = box.ready(10)
    assert [r.payload for r in rows[:1]] == [b"x\x9c not deflate"]
    assert json.loads(rows[1].payload)["seq"] == second
    box.close()
