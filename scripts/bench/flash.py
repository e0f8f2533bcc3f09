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
* the whole agent: ``hume-edge run`` as its own process at the defaults (v1, presence sessions, 5 s
  summary windows, all default models) with the synthetic face and voice, against the emulator and a
  private mosquitto, its outbox on disk and its runtime directory (``status.json``) on tmpfs as systemd's
  ``/run/hume-edge`` is on a kiosk: every byte the process wrote (outbox, session checkpoints, anything
  else) per sequenced message a subscriber received, from the first summary on.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
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


def run_naive(directory: Path, flushes: int) -> int:
    db = sqlite3.connect(str(directory / "naive.sqlite"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE q (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT, payload BLOB)")
    data = json.dumps(PAYLOAD).encode()
    before, n = _common.write_bytes(), 0
    for f in range(flushes):
        ids = [db.execute("INSERT INTO q (topic, payload) VALUES (?, ?)", ("summary/face", data)).lastrowid]
        ids += [
            db.execute("INSERT INTO q (topic, payload) VALUES (?, ?)", ("summary/face", data)).lastrowid
            for _ in range(BATCHES[f % len(BATCHES)] - 1)
        ]  # autocommit: one transaction (one fsync) per statement
        for row_id in ids:
            db.execute("DELETE FROM q WHERE id = ?", (row_id,))
        n += len(ids)
    written = _common.write_bytes() - before
    db.close()
    return written // n


def run_ours(directory: Path, flushes: int, synchronous: str) -> int:
    now = [1_800_000_000.0]
    outbox = Outbox(directory / "outbox.sqlite", OutboxConfig(synchronous=synchronous), clock=lambda: now[0])
    before, n, mid = _common.write_bytes(), 0, 0
    for f in range(flushes):
        outbox.put_many([("summary/face", PAYLOAD, False)] * BATCHES[f % len(BATCHES)])
        rows = outbox.ready(100)
        sent = [(row.id, mid + i) for i, row in enumerate(rows)]
        mid += len(rows)
        outbox.settle([], sent)  # the drain step that publishes
        outbox.settle([m for _, m in sent], [])  # the next one, when the PUBACKs are in
        n += len(rows)
        now[0] += FLUSH_EVERY_S
    written = _common.write_bytes() - before
    assert outbox.stats()["depth"] == 0
    outbox.close()
    return written // n


def whole_agent(seconds: float) -> Dict[str, float]:
    """Bytes the whole agent process wrote per delivered message over ``seconds`` of a visit."""
    import _mqtt  # noqa: PLC0415 - only this measurement needs a broker and a subscriber

    from agent.dev.localbroker import LocalBroker  # noqa: PLC0415
    from tests.support.toml_text import toml_text  # noqa: PLC0415

    device = "bench-flash"
    with (
        tempfile.TemporaryDirectory(prefix="hume-edge-flash-", dir=_common.REPO) as tmp,
        tempfile.TemporaryDirectory(prefix="hume-edge-flash-run-", dir="/dev/shm") as run_dir,
        _common.EmulatorHost() as emu,
        LocalBroker(Path(tmp) / "broker") as broker,
    ):
        work = Path(tmp)
        cfg = {
            "device_id": device,
            "hume": {"api_key": _common.API_KEY, "v0": {"url": emu.url}, "v1": {"url": emu.base_url}},
            "mqtt": {"host": broker.host, "port": broker.port},
            "outbox": {"path": str(work / "outbox.sqlite")},
            "camera": {"source": "synthetic"},
            "microphone": {"source": "speech"},
        }
        (work / "agent.toml").write_text(toml_text(cfg), encoding="utf-8")
        env = dict(os.environ, RUNTIME_DIRECTORY=run_dir)
        env.pop("HUME_API_KEY", None)
        exe = Path(sys.executable).with_name("hume-edge")
        sub = _mqtt.SeqSubscriber(broker.host, broker.port, device)
        with open(work / "agent.log", "wb") as log:
            agent = subprocess.Popen(
                [str(exe), "run", "--config", str(work / "agent.toml")], env=env, stderr=log
            )
            try:
                _common.wait_until(lambda: sub.count() > 0, 90, "the first summary", 0.1)
                before, first = _common.write_bytes(agent.pid), sub.count()
                time.sleep(seconds)  # the visit goes on: what it costs in writes is the measurement
                written, delivered = _common.write_bytes(agent.pid) - before, sub.count() - first
            finally:
                agent.terminate()
                agent.wait(30)
                sub.close()
    return {"bytes_per_message": written / max(1, delivered), "messages": delivered, "seconds": seconds}


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
    agent = whole_agent(5.0 if args.quick else 120.0)
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
    details += (
        f"\n\nThe whole agent: {agent['bytes_per_message']:,.0f} bytes written per delivered message "
        f"({agent['messages']:.0f} messages in {agent['seconds']:g} s of a visit at the defaults)."
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
        _common.row(
            "7 flash", "bytes written per message, the whole agent (default)",
            (f"{agent['bytes_per_message'] / 1024:.1f} KB", "", ""),
            "<= 5 KB", agent["bytes_per_message"] <= GOAL_BYTES,
        ),
    ]  # fmt: skip
    _common.finish(args, "Benchmark 7: flash writes per delivered message", details, rows)


if __name__ == "__main__":
    main()
