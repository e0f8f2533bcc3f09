"""A durable at-least-once queue of outgoing MQTT messages in SQLite (WAL).

paho-mqtt keeps unacknowledged publishes in memory only, so a pulled plug or a broker outage would lose
them; this queue is the durable part. The life of a row::

    put() ──► ready ──settle(sent=[(id, mid)])──► in flight ──settle(acked=[mid]) on PUBACK──► deleted
                ▲                                    │
                └──────── requeue_inflight() ◄───────┘   (at start-up and on every reconnect)

* A message is committed before :meth:`Outbox.put` returns, and its ``seq`` is taken from a counter in the
  same database and the same transaction, so ``seq`` is monotonic per device across restarts and crashes.
  A brand-new database (first start, or after a corrupt one was quarantined) seeds the counter with the
  wall clock in epoch milliseconds, so ``seq`` keeps growing for consumers even then.
* ``ts`` is the capture time in UTC ISO-8601 with milliseconds (``2026-11-24T21:40:52.123Z``). A payload
  that already carries ``ts`` keeps it; otherwise the time of :meth:`put` is stamped.
* Rows are only ever deleted on PUBACK (:meth:`settle`) or by the bounds below, never when handed to paho.
  Marking a row in flight and deleting acknowledged rows need no durability of their own: after a crash an
  in-flight row is simply ready again and goes out once more with the same ``seq`` (a visible duplicate,
  which at-least-once allows), so both are batched into one transaction per drain step.
* Bounds: ``max_rows``, ``max_bytes`` (topic + payload) and ``max_age_s``; on disk that is the rows plus
  SQLite's page overhead plus a WAL checkpointed every ~1 MB. Past a bound the oldest rows are
  dropped first (a dashboard wants the recent picture most), counted per reason in the database and
  reported by :meth:`stats`, which the publisher puts into the retained ``health`` message.
* ``state`` is a small key -> text table written in the same transaction as the messages it goes with
  (``put_many(..., state=...)``): the service keeps each open session's checkpoint there, so "this session
  is open, and this much of it was published" is durable exactly when its messages are.
* A database that cannot be opened or fails ``PRAGMA quick_check`` is moved aside as
  ``<name>.corrupt-<UTC timestamp>`` with one loud log line, and a fresh one is started: a kiosk must not
  crash-loop on a file a power cut damaged. Names are unique; only the newest three are kept.

fsync policy, measured here (Debian 12 VM on a fast virtual disk, SQLite 3.40, WAL, 200-byte payloads,
``put()`` = one insert + counter update per transaction; drain = mark 100 in flight + ack 100, two
transactions; numbers in ``SYNCHRONOUS_COST``): ``synchronous=FULL`` costs one fsync of the WAL per commit,
which makes a single ``put`` ~2.6x slower (0.22 vs 0.08 ms) while batched work (``put_many``, the drain) is
within ~15 % because the fsync is shared by 100 rows. FULL is the default because a summary must
survive a power cut once ``put`` returned; the agent commits a few messages per second, far below what even
an SD card sustains (~1,200 random 4 KB writes/s on a Pi 4 A2 card). ``normal`` is for worn or very slow
cards where that matters more than the last second of summaries before a power cut.

Threading: one connection, used from the event loop thread only (the publisher hands paho's callbacks over
to the loop first). A lock guards it anyway so ``stats()`` from another thread is safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from agent.config import OutboxConfig
from agent.health import OutboxHealth
from agent.messages import utc_iso

_LOGGER = logging.getLogger(__name__)

SYNCHRONOUS_COST: Mapping[str, str] = {
    "full": "~4,500 put()/s (0.22 ms each); 100 per put_many() ~44k rows/s; drain ~55k rows/s",
    "normal": "~12,000 put()/s (0.08 ms each); 100 per put_many() ~48k rows/s; drain ~63k rows/s",
}
"""Measured on the project's machine (see the module docstring); a Pi SD card is one to two orders slower."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL,
    size INTEGER NOT NULL,
    mid INTEGER
);
CREATE INDEX IF NOT EXISTS messages_mid ON messages (mid) WHERE mid IS NOT NULL;
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

DROP_REASONS = ("rows", "bytes", "age", "oversize")
"""Why rows left the outbox unsent: its bounds, or bigger than the broker accepts (the drain says so)."""
_WAL_CHECKPOINT_PAGES = 256
"""Checkpoint the WAL about every 1 MB (SQLite's default is 4 MB), so disk stays near the row bounds."""
_WAL_LIMIT_BYTES = 1024 * 1024
_SQL_VARS = 500
"""Bound parameters per statement: old SQLite builds (Pi OS Bullseye) allow 999 at most."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One queued message, as the publisher sends it."""

    id: int
    seq: int
    topic: str
    payload: bytes
    retain: bool
    created: float


KEEP_QUARANTINED = 3
"""Quarantined (corrupt) outbox files kept for a post-mortem; older ones are deleted."""


class Outbox:
    """The SQLite queue; see the module docstring for its guarantees."""

    def __init__(self, path: Path, cfg: OutboxConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.cfg = cfg
        self._clock = clock
        self._lock = threading.Lock()
        self.quarantined: Optional[Path] = None
        self._warned: Set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            self.quarantined = self._quarantine(exc)
            self._db = self._open()
        self._count, self._bytes = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM messages"
        ).fetchone()
        self.requeue_inflight()

    # ----------------------------------------------------------------------------------------------
    # Opening

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.cfg.synchronous.upper()}")
            db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT_BYTES}")
            db.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            db.executescript(_SCHEMA)
            with self._transaction(db):
                db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', ?)", (int(self._clock() * 1000),))
                for reason in DROP_REASONS:
                    db.execute("INSERT OR IGNORE INTO meta VALUES (?, 0)", (f"dropped_{reason}",))
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _quarantine(self, exc: Exception) -> Path:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():  # two quarantines in the same microsecond (a clock stepped back) keep both
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        self.path.replace(target)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.replace(target.with_name(target.name + suffix))
        removed = self._prune_quarantined(keep=target)
        _LOGGER.error(
            "outbox %s is corrupt (%s): moved it aside to %s and started an empty outbox; "
            "messages queued in it were not sent%s",
            self.path,
            exc,
            target,
            f" (removed {removed} older quarantined file(s): at most {KEEP_QUARANTINED} are kept)"
            if removed
            else "",
        )
        return target

    def _prune_quarantined(self, keep: Path) -> int:
        """Delete all but the newest :data:`KEEP_QUARANTINED` quarantined files, so a card that keeps
        corrupting the database cannot fill the disk with copies of it."""
        olds = sorted(
            (
                p
                for p in self.path.parent.glob(f"{self.path.name}.corrupt-*")
                if not p.name.endswith(("-wal", "-shm"))
            ),
            key=lambda p: p.stat().st_mtime_ns,
        )
        removed = 0
        for old in olds[: max(0, len(olds) - KEEP_QUARANTINED)]:
            if old == keep:
                continue
            for path in (old, old.with_name(old.name + "-wal"), old.with_name(old.name + "-shm")):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            removed += 1
        return removed

    @staticmethod
    @contextlib.contextmanager
    def _transaction(db: sqlite3.Connection) -> Iterator[None]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ----------------------------------------------------------------------------------------------
    # Writing

    def put(self, topic: str, payload: Mapping[str, Any], retain: bool = False) -> int:
        """Queue one message durably; return its ``seq``."""
        return self.put_many([(topic, payload, retain)])[0]

    def put_many(
        self,
        items: Sequence[Tuple[str, Mapping[str, Any], bool]],
        *,
        state: Optional[Mapping[str, Optional[str]]] = None,
    ) -> List[int]:
        """Queue several messages in one transaction (one fsync); return their ``seq`` values.

        ``state``: keys to set (a text value) or delete (None) in the ``state`` table, in the same
        transaction, so they are durable exactly when these messages are.
        """
        now = self._clock()
        seqs: List[int] = []
        with self._lock, self._transaction(self._db):
            for key, value in (state or {}).items():
                if value is None:
                    self._db.execute("DELETE FROM state WHERE key = ?", (key,))
                else:
                    self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, value))
            seq = int(self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
            for topic, payload, retain in items:
                body = dict(payload)
                body["seq"] = seq
                body.setdefault("ts", utc_iso(now))
                data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
                size = len(data) + len(topic.encode())
                self._db.execute(
                    "INSERT INTO messages (seq, topic, payload, retain, created, size) VALUES (?,?,?,?,?,?)",
                    (seq, topic, data, int(retain), now, size),
                )
                self._count += 1
                self._bytes += size
                seqs.append(seq)
                seq += 1
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq,))
            self._enforce_bounds(now)
        return seqs

    def _enforce_bounds(self, now: float) -> None:
        """Drop oldest-first past the age, row and byte bounds; the caller holds the transaction."""
        cutoff = now - self.cfg.max_age_s
        if self._oldest_before(cutoff):
            old_rows, old_bytes = self._db.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE created < ?", (cutoff,)
            ).fetchone()
            self._db.execute("DELETE FROM messages WHERE created < ?", (cutoff,))
            self._count_drop("age", old_rows, old_bytes)
        excess = self._count - self.cfg.max_rows
        if excess > 0:
            self._drop_oldest(
                "rows",
                self._db.execute("SELECT id, size FROM messages ORDER BY id LIMIT ?", (excess,)).fetchall(),
            )
        if self._bytes > self.cfg.max_bytes:
            doomed: List[Tuple[int, int]] = []
            surplus = self._bytes - self.cfg.max_bytes
            for row_id, size in self._db.execute("SELECT id, size FROM messages ORDER BY id"):
                doomed.append((row_id, size))
                surplus -= size
                if surplus <= 0:
                    break
            self._drop_oldest("bytes", doomed)

    def _oldest_before(self, cutoff: float) -> bool:
        """Whether the oldest row is older than ``cutoff``: O(1), where a scan for any old row is O(n).

        Rows are created in id order, so the oldest id is the oldest row (a clock stepped back can only
        delay an age drop until the rows before it are gone).
        """
        row = self._db.execute("SELECT created FROM messages ORDER BY id LIMIT 1").fetchone()
        return row is not None and float(row[0]) < cutoff

    def _drop_oldest(self, reason: str, rows: List[Tuple[int, int]]) -> None:
        if rows:
            self._db.execute("DELETE FROM messages WHERE id <= ?", (rows[-1][0],))
            self._count_drop(reason, len(rows), sum(size for _, size in rows))

    def _count_drop(self, reason: str, rows: int, size: int, *, say: bool = True) -> None:
        self._count -= rows
        self._bytes -= size
        self._db.execute("UPDATE meta SET value = value + ? WHERE key = ?", (rows, f"dropped_{reason}"))
        if not say:  # the caller says why, in its own words
            return
        level = logging.DEBUG if reason in self._warned else logging.WARNING
        self._warned.add(reason)
        _LOGGER.log(
            level,
            "outbox past its %s bound: dropped the %d oldest message(s) (counted in health)",
            reason,
            rows,
        )

    # ----------------------------------------------------------------------------------------------
    # Draining

    def ready(self, limit: int, after_id: int = 0, upto_id: Optional[int] = None) -> List[Row]:
        """Up to ``limit`` rows not in flight, oldest first (the order they must be published in).

        ``after_id`` / ``upto_id`` select the rows queued after / up to a :meth:`last_id` (live data and
        backlog: the drain's live-first order).
        """
        now = self._clock()
        upto = (1 << 62) if upto_id is None else upto_id
        with self._lock:
            if self._oldest_before(now - self.cfg.max_age_s):
                with self._transaction(self._db):
                    self._enforce_bounds(now)
            rows = self._db.execute(
                "SELECT id, seq, topic, payload, retain, created FROM messages "
                "WHERE mid IS NULL AND id > ? AND id <= ? ORDER BY id LIMIT ?",
                (after_id, upto, limit),
            ).fetchall()
        return [Row(i, s, t, bytes(p), bool(r), c) for i, s, t, p, r, c in rows]

    @property
    def depth(self) -> int:
        """Rows queued, in flight included."""
        return int(self._count)

    def last_id(self) -> int:
        """The id of the newest row queued so far (0 when none ever was): a mark between backlog and live."""
        with self._lock:
            row = self._db.execute("SELECT max(id) FROM messages").fetchone()
        return int(row[0] or 0)

    def discard(self, rows: Sequence[Row], reason: str) -> None:
        """Delete ``rows`` unsent, counted under ``reason`` (one of :data:`DROP_REASONS`)."""
        if not rows:
            return
        with self._lock, self._transaction(self._db):
            ids = [r.id for r in rows]
            size = self._db.execute(
                f"SELECT coalesce(sum(size), 0) FROM messages WHERE id IN ({','.join('?' * len(ids))})", ids
            ).fetchone()[0]
            self._db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids])
            self._count_drop(reason, len(ids), int(size), say=False)

    def settle(self, acked_mids: Iterable[int], sent: Iterable[Tuple[int, int]]) -> int:
        """Delete rows whose PUBACK came and mark ``(row id, mid)`` pairs in flight, in one transaction.

        Returns the number of rows deleted.
        """
        acked = list(acked_mids)
        marks = [(mid, row_id) for row_id, mid in sent]
        if not acked and not marks:
            return 0
        with self._lock, self._transaction(self._db):
            deleted = 0
            for start in range(0, len(acked), _SQL_VARS):
                chunk = acked[start : start + _SQL_VARS]
                where = f"mid IN ({','.join('?' * len(chunk))})"
                rows, size = self._db.execute(
                    f"SELECT count(*), coalesce(sum(size), 0) FROM messages WHERE {where}", chunk
                ).fetchone()
                self._db.execute(f"DELETE FROM messages WHERE {where}", chunk)
                self._count -= rows
                self._bytes -= size
                deleted += rows
            if marks:
                self._db.executemany("UPDATE messages SET mid = ? WHERE id = ?", marks)
        return deleted

    def state_items(self, prefix: str) -> Dict[str, str]:
        """The ``state`` rows whose key starts with ``prefix`` (see :meth:`put_many`)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM state WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
            ).fetchall()
        return {str(k): str(v) for k, v in rows}

    def requeue_inflight(self) -> int:
        """Every in-flight row becomes ready again (its PUBACK can no longer come); returns how many."""
        with self._lock:
            return self._db.execute("UPDATE messages SET mid = NULL WHERE mid IS NOT NULL").rowcount

    # ----------------------------------------------------------------------------------------------
    # Reporting

    def dropped(self) -> Dict[str, int]:
        """Messages dropped so far by each bound (persisted: survives restarts)."""
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'dropped_%'").fetchall()
        return {key[len("dropped_") :]: int(value) for key, value in rows}

    def health(self) -> OutboxHealth:
        """Depth, bytes, in flight, drops and where the file is, for the health message."""
        dropped = self.dropped()
        with self._lock:
            inflight = self._db.execute("SELECT count(*) FROM messages WHERE mid IS NOT NULL").fetchone()[0]
        return OutboxHealth(
            depth=self._count,
            bytes=self._bytes,
            inflight=int(inflight),
            dropped=dropped,
            dropped_total=sum(dropped.values()),
            synchronous=self.cfg.synchronous,
            path=str(self.path),
            quarantined=str(self.quarantined) if self.quarantined else None,
        )

    def stats(self) -> Dict[str, Any]:
        """:meth:`health` as JSON-ready data."""
        return dataclasses.asdict(self.health())

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close."""
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()
