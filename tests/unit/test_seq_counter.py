"""The ``seq`` counter's reservation (agent/mqtt/seq_counter.py), on a real SQLite file (no broker).

What a power cut does to it is tested on a filesystem that drops unsynced writes
(tests/faults/test_power_loss.py); here: which commits are fsynced, and where a restart continues.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import List

from agent.config import OutboxConfig
from agent.mqtt.outbox import Outbox
from agent.mqtt.seq_counter import RESERVE_BLOCK, boot_id, boot_number

NORMAL = OutboxConfig(synchronous="normal")
BOOT_A = "2f1b7c4e-1111-4a4a-9c9c-000000000001"
BOOT_B = "2f1b7c4e-2222-4a4a-9c9c-000000000002"


def meta(path: Path, key: str) -> int:
    with contextlib.closing(sqlite3.connect(str(path))) as db:
        return int(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])


def synced_commits(box: Outbox) -> List[str]:
    """Records the statements the outbox runs: a fsynced commit raises ``synchronous`` to 2 around it."""
    trace: List[str] = []
    box._db.set_trace_callback(trace.append)
    return trace


def test_same_boot_continues_without_a_gap_and_a_new_boot_jumps_past_every_reserved_number(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, NORMAL, boot=lambda: BOOT_A)
    stamped = [box.put("t", {}) for _ in range(5)]
    box.close()
    again = Outbox(path, NORMAL, boot=lambda: BOOT_A)  # a SIGKILL or restart: the page cache lost nothing
    assert again.put("t", {}) == stamped[-1] + 1
    reserved = meta(path, "seq_reserved")
    assert reserved > stamped[-1] + 1
    again.close()
    rebooted = Outbox(path, NORMAL, boot=lambda: BOOT_B)  # maybe a power cut: only the reservation is sure
    assert rebooted.put("t", {}) == reserved
    rebooted.close()


def test_a_reservation_and_a_session_marker_are_fsynced_in_normal_mode_and_nothing_else(
    tmp_path: Path,
) -> None:
    box = Outbox(tmp_path / "o.sqlite", NORMAL, boot=lambda: BOOT_A)
    trace = synced_commits(box)
    fsynced = []
    for i in range(2 * RESERVE_BLOCK + 10):
        trace.clear()
        seq = box.put_many([("t", {"i": i}, False)])[0]
        if "PRAGMA synchronous=2" in trace:
            fsynced.append(seq)
    first = fsynced[0]
    assert fsynced == [first, first + RESERVE_BLOCK, first + 2 * RESERVE_BLOCK]
    for state, synced in (
        ({"session/a": "{}"}, True),
        ({"session/a": "{1}"}, False),
        ({"session/a": None}, True),
    ):
        trace.clear()
        box.put_many([("session", {}, True)], state=state)
        assert ("PRAGMA synchronous=2" in trace) == synced, state
    assert box.cfg.synchronous == "normal"
    assert int(box._db.execute("PRAGMA synchronous").fetchone()[0]) == 1, "the mode is restored"
    box.close()


def test_a_clock_behind_after_a_quarantine_still_starts_above_the_old_file(tmp_path: Path) -> None:
    """A kiosk without RTC may boot with an old clock; a fresh file must not start below the old one."""
    path = tmp_path / "o.sqlite"
    box = Outbox(path, NORMAL, clock=lambda: 1_800_000_000.0, boot=lambda: BOOT_A)
    last = box.put_many([("t", {"pad": "z" * 1000}, False)] * 50)[-1]
    box.close()
    data = bytearray(path.read_bytes())
    data[4096:12288] = b"\xff" * 8192  # message pages; the meta table (page 2) survives
    path.write_bytes(bytes(data))
    fresh = Outbox(path, NORMAL, clock=lambda: 1_000_000_000.0, boot=lambda: BOOT_A)
    assert fresh.quarantined is not None
    assert fresh.put("t", {}) > last
    fresh.close()


def test_an_old_file_without_a_reservation_starts_at_the_clock_if_that_is_ahead(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    Outbox(path, NORMAL, clock=lambda: 1_800_000_000.0, boot=lambda: BOOT_A).close()
    with contextlib.closing(sqlite3.connect(str(path))) as db:
        db.execute("DELETE FROM meta WHERE key IN ('seq_reserved', 'seq_boot')")
        db.commit()
    box = Outbox(path, NORMAL, clock=lambda: 1_800_000_100.0, boot=lambda: BOOT_B)
    assert box.put("t", {}) == 1_800_000_100_000
    box.close()


def test_an_unreadable_boot_id_counts_as_a_new_boot(tmp_path: Path) -> None:
    assert boot_id(tmp_path / "missing") == ""
    assert boot_number("") == 0
    assert boot_number(BOOT_A) != boot_number(BOOT_B)
    path = tmp_path / "o.sqlite"
    box = Outbox(path, NORMAL, boot=lambda: "")
    first = box.put("t", {})
    box.close()
    box = Outbox(path, NORMAL, boot=lambda: "")
    assert box.put("t", {}) == first + RESERVE_BLOCK
    box.close()


def test_a_put_writes_no_meta_row_its_rows_carry_the_counter(tmp_path: Path) -> None:
    """Rewriting ``next_seq`` in each put's commit added the ``meta`` page to its WAL frames (25 % of the
    outbox's bytes written, scripts/bench/flash.py); only a reservation may write ``meta`` in a put."""
    box = Outbox(tmp_path / "o.sqlite", OutboxConfig(), boot=lambda: BOOT_A)
    box.put("t", {})
    trace = synced_commits(box)
    for i in range(20):
        box.put_many([("t", {"i": i}, False), ("u", {"i": i}, False)])
    assert [sql for sql in trace if "meta" in sql] == []
    box.close()


def test_a_restart_in_the_same_boot_continues_after_the_newest_row_even_once_every_row_was_deleted(
    tmp_path: Path,
) -> None:
    """No ``close()``: the first outbox is abandoned as a SIGKILL leaves it (the page cache keeps every
    commit). The counter is the newest row's seq + 1, or ``meta`` once the newest row was deleted."""
    path = tmp_path / "o.sqlite"
    box = Outbox(path, OutboxConfig(), boot=lambda: BOOT_A)
    last = box.put_many([("t", {"i": i}, False) for i in range(3)])[-1]
    box.settle([], [(row.id, n) for n, row in enumerate(box.ready(10))])
    box.settle(range(3), [])
    box.flush_acks()  # on their own, not with a put
    assert box.depth == 0
    again = Outbox(path, OutboxConfig(), boot=lambda: BOOT_A)
    assert again.next_seq() == last + 1, "every row was deleted: meta carries the counter"
    newest = box.put_many([("t", {}, False), ("t", {}, False)])[-1]
    third = Outbox(path, OutboxConfig(), boot=lambda: BOOT_A)
    assert third.next_seq() == newest + 1, "the newest row carries the counter"
    for outbox in (third, again, box):
        outbox.close()
