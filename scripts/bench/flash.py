#!/usr/bin/env python3
"""Benchmark 7: bytes written to storage per delivered message, the outbox vs. a naive SQLite queue.

SD cards wear by the byte, and on a Pi the outbox wrote 20.4 KB per message (1.47 MB of ``write_bytes`` for
71 messages in 120 s). Each side runs in its own child process on a fresh database on disk (not tmpfs) and
reports its ``/proc/<pid>/io`` ``write_bytes`` (bytes the process caused to be sent to storage, counted as
pages are dirtied) over the same workload, a kiosk's: a summary flush every 4 s (simulated clock) of 1, 2, 3
or 4 messages of ~500 bytes (0.6 messages/s, like the Pi run), each flush published and acknowledged before
the next, as the publisher's drain does (one step sends, the next settles the PUBACKs).

* naive: one transaction per put and one per acknowledgement (``DELETE``), WAL, ``synchronous=FULL``, SQLite
  defaults otherwise (4 KB pages, checkpoint every 1,000 pages);
* ours: :class:`agent.mqtt.outbox.Outbox` at the default (``synchronous = "full"``) and with
  ``synchronous = "normal"`` (may lose the last commits on a power cut; a SIGKILL loses nothing either way).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import _common

_common.ensure_venv()

from agent.config import OutboxConfig  # noqa: E402
from agent.mqtt.outbox import Outbox  # noqa: E402

FLUSH_EVERY_S = 4.0
BATCHES = (1, 2, 3, 4)
PAYLOAD = {"schema": "hume-edge/summary/1", "model": "face", "top": [{"name": "Joy", "score": 0.5}] * 12}
GOAL_BYTES = 5 * 1024


def write_bytes() -> int:
    with open("/proc/self/io", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


def run_naive(directory: Path, flushes: int) -> int:
    db = sqlite3.connect(str(directory / "naive.sqlite"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE q (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT, payload BLOB)")
    data = json.dumps(PAYLOAD).encode()
    before, n = write_bytes(), 0
    for f in range(flushes):
        ids = [db.execute("INSERT INTO q (topic, payload) VALUES (?, ?)", ("summary/face", data)).lastrowid]
        ids += [
            db.execute("INSERT INTO q (topic, payload) VALUES (?, ?)", ("summary/face", data)).lastrowid
            for _ in range(BATCHES[f % len(BATCHES)] - 1)
        ]  # autocommit: one transaction (one fsync) per statement
        for row_id in ids:
            db.execute("DELETE FROM q WHERE id = ?", (row_id,))
        n += len(ids)
    written = write_bytes() - before
    db.close()
    return written // n


def run_ours(directory: Path, flushes: int, synchronous: str) -> int:
    now = [1_800_000_000.0]
    outbox = Outbox(directory / "outbox.sqlite", OutboxConfig(synchronous=synchronous), clock=lambda: now[0])
    before, n, mid = write_bytes(), 0, 0
    for f in range(flushes):
        outbox.put_many([("summary/face", PAYLOAD, False)] * BATCHES[f % len(BATCHES)])
        rows = outbox.ready(100)
        sent = [(row.id, mid + i) for i, row in enumerate(rows)]
        mid += len(rows)
        outbox.settle([], sent)  # the drain step that publishes
        outbox.settle([m for _, m in sent], [])  # the next one, when the PUBACKs are in
        n += len(rows)
        now[0] += FLUSH_EVERY_S
    written = write_bytes() - before
    assert outbox.stats()["depth"] == 0
    outbox.close()
    return written // n


def child(variant: str, flushes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="hume-edge-flash-", dir=_common.REPO) as tmp:
        directory = Path(tmp)
        per_message = (
            run_naive(directory, flushes) if variant == "naive" else run_ours(directory, flushes, variant)
        )
    print(json.dumps({"variant": variant, "bytes_per_message": per_message}))


def measure(variant: str, flushes: int) -> int:
    done = subprocess.run(
        [sys.executable, __file__, "--child", variant, str(flushes)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return int(json.loads(done.stdout.strip().splitlines()[-1])["bytes_per_message"])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]))
        return
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    flushes = 40 if args.quick else 2000
    results: Dict[str, int] = {
        "naive (put and ack: a transaction each)": measure("naive", flushes),
        "ours, synchronous = full (default)": measure("full", flushes),
        "ours, synchronous = normal": measure("normal", flushes),
    }
    naive = results["naive (put and ack: a transaction each)"]
    table = _common.markdown(
        ["side", "bytes written per delivered message", "vs naive"],
        [[name, f"{b:,}", f"{b / naive:.2f}x"] for name, b in results.items()],
    )
    messages = sum(BATCHES[f % len(BATCHES)] for f in range(flushes))
    details = (
        f"{table}\n\n{messages:,} messages in {flushes:,} flushes of 1-4 (one every {FLUSH_EVERY_S:g} s, "
        "simulated), ~500-byte payloads; `write_bytes` of /proc/<pid>/io, each side in its own process on a "
        "fresh database on disk. A Pi's SD card sees the same bytes (they are counted before the device)."
    )
    full = results["ours, synchronous = full (default)"]
    normal = results["ours, synchronous = normal"]
    rows: List[Dict[str, str]] = [
        _common.row(
            "7 flash", "bytes written per message, default (full)",
            (f"{full / 1024:.1f} KB", f"{naive / 1024:.1f} KB", f"{full / naive:.2f}x"),
            "<= 5 KB", full <= GOAL_BYTES,
        ),
        _common.row(
            "7 flash", "bytes written per message, synchronous = normal",
            (f"{normal / 1024:.1f} KB", f"{naive / 1024:.1f} KB", f"{normal / naive:.2f}x"),
            "", None,
        ),
    ]  # fmt: skip
    _common.finish(args, "Benchmark 7: flash writes per delivered message", details, rows)


if __name__ == "__main__":
    main()
