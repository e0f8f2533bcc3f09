"""The outbox's SQLite file: schema, pragmas, and what happens when the file is damaged.

Chosen for an SD card, which wears by the byte. ``scripts/bench/flash.py`` (a kiosk's flushes of 1-4
summaries, each sent and acknowledged) measured bytes written per delivered message at
``synchronous = full``: 16.3 KB before these choices (4 KB pages, ``AUTOINCREMENT``, an in-flight column
and index, a transaction each for put, mark and acknowledgement), 20.1 KB for a naive queue, 2.0 KB now:

* in-flight marks in memory and acknowledged rows deleted with the next put (``agent.mqtt.outbox``): one
  transaction per summary flush instead of three;
* no ``meta`` row rewritten by a put: the newest row carries the ``seq`` counter (``agent.mqtt.seq_counter``;
  3.3 KB a message before);
* new files use small pages (each changed page goes to the WAL whole: 4 KB pages wrote 4.9 KB a message
  where 2 KB pages wrote 3.3 KB) and no ``AUTOINCREMENT`` (it rewrites the ``sqlite_sequence`` page on every
  insert: 4.1 KB a message with it); a row's id is its ``seq`` (unique and increasing, from the ``seq``
  counter), so ids are never reused without it. Files made by earlier versions keep their schema and page
  size and work the same (their old rows have small ids, so they still come first);
* payloads are stored zlib-compressed when that is shorter (:func:`pack`: a summary's ~540 bytes of JSON
  take ~300), and new files use :data:`PAGE_BYTES` pages: a put of a window's summaries then changes one
  page of the ``messages`` table, one WAL frame of ~1 KB (2.5 KB a message before);
* new files make ``state`` a ``WITHOUT ROWID`` table: a session checkpoint's rewrite changes one b-tree
  page, not the table's and its key index's (the whole agent's WAL frames in 120 s: 54 -> 46);
* WAL checkpoints every :data:`WAL_CHECKPOINT_PAGES` pages (a checkpoint copies each changed page into the
  main file once); 256 pages measured ~1 % more, so SQLite's default stays. The WAL file is truncated back
  to :data:`WAL_LIMIT_BYTES` after a checkpoint, so disk stays near the row bounds.

A database that cannot be opened or fails ``PRAGMA quick_check`` is moved aside as
``<name>.corrupt-<UTC timestamp>`` with one loud log line, and a fresh one is started: a kiosk must not
crash-loop on a file a power cut damaged. Names are unique; only the newest three are kept.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import sqlite3
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

_LOGGER = logging.getLogger("agent.mqtt.outbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
WAL_CHECKPOINT_PAGES = 1000
"""SQLite's default (1 MB of 1 KB pages)."""
PAGE_BYTES = 1024
"""Page size of new files (an existing file keeps its own: WAL mode cannot change it). Each changed page goes
to the WAL whole, and each commit re-dirties the 4 KB page of the WAL file the previous one ended in, so a
commit costs about 4 KB plus its frames. The whole agent (``scripts/bench/flash.py``, 120 s, 46 messages)
dirtied 41 WAL pages with 2 KB pages and compressed payloads, 51 with 1 KB pages and plain JSON (a window's
summaries no longer fit one page), 34 with both."""
ZLIB_MAGIC = b"x"
"""The first byte of a zlib stream (deflate, 32 KB window); a JSON object starts with ``{``."""
WAL_LIMIT_BYTES = 1024 * 1024
SYNC_FULL = 2
"""``PRAGMA synchronous`` level FULL (0 OFF, 1 NORMAL, 3 EXTRA)."""
KEEP_QUARANTINED = 3
"""Quarantined (corrupt) outbox files kept for a post-mortem; older ones are deleted."""


def pack(data: bytes) -> bytes:
    """A message's JSON as stored in the ``payload`` column: zlib-compressed when that is shorter."""
    packed = zlib.compress(data)
    return packed if len(packed) < len(data) else data


def unpack(stored: bytes) -> bytes:
    """A ``payload`` column's message as published: rows of earlier versions and short messages are plain
    JSON. A compressed payload damaged on the card (yet passing ``quick_check``) goes out as it is, as
    damaged JSON did before: the consumer rejects it, and the queue behind it is not stuck."""
    if stored[:1] != ZLIB_MAGIC:
        return stored
    try:
        return zlib.decompress(stored)
    except zlib.error:
        return stored


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, *, durable: bool = False) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` .. ``COMMIT`` (``ROLLBACK`` on any error).

    ``durable``: the commit is fsynced whatever ``synchronous`` says (SQLite refuses to change it inside a
    transaction, so it is raised around it); in WAL mode that also makes every earlier commit durable.
    """
    level = int(db.execute("PRAGMA synchronous").fetchone()[0]) if durable else SYNC_FULL
    if level < SYNC_FULL:
        db.execute(f"PRAGMA synchronous={SYNC_FULL}")
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        if level < SYNC_FULL:
            db.execute(f"PRAGMA synchronous={level}")


def open_db(
    path: Path, synchronous: str, start: Callable[[sqlite3.Connection], Any], drop_reasons: Sequence[str]
) -> sqlite3.Connection:
    """Open (or create) the outbox at ``path``; raises ``sqlite3.DatabaseError`` for a damaged file.

    ``start`` runs inside the opening transaction (the ``seq`` counter: ``agent.mqtt.seq_counter``).
    """
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA page_size={PAGE_BYTES}")  # a no-op on an existing file
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        db.executescript(SCHEMA)
        with transaction(db):
            start(db)
            for reason in drop_reasons:
                db.execute("INSERT OR IGNORE INTO meta VALUES (?, 0)", (f"dropped_{reason}",))
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def quarantine(path: Path, exc: Exception) -> Path:
    """Move a damaged outbox (and its WAL and shared memory) aside; say so once, loudly."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():  # two quarantines in the same microsecond (a clock stepped back) keep both
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    path.replace(target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.replace(target.with_name(target.name + suffix))
    removed = _prune_quarantined(path, keep=target)
    _LOGGER.error(
        "outbox %s is corrupt (%s): moved it aside to %s and started an empty outbox; "
        "messages queued in it were not sent%s",
        path,
        exc,
        target,
        f" (removed {removed} older quarantined file(s): at most {KEEP_QUARANTINED} are kept)"
        if removed
        else "",
    )
    return target


def _prune_quarantined(path: Path, keep: Path) -> int:
    """Delete all but the newest :data:`KEEP_QUARANTINED` quarantined files, so a card that keeps
    corrupting the database cannot fill the disk with copies of it."""
    olds = sorted(
        (p for p in path.parent.glob(f"{path.name}.corrupt-*") if not p.name.endswith(("-wal", "-shm"))),
        key=lambda p: p.stat().st_mtime_ns,
    )
    removed = 0
    for old in olds[: max(0, len(olds) - KEEP_QUARANTINED)]:
        if old == keep:
            continue
        for doomed in (old, old.with_name(old.name + "-wal"), old.with_name(old.name + "-shm")):
            with contextlib.suppress(FileNotFoundError):
                doomed.unlink()
        removed += 1
    return removed
