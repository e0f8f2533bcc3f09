"""A durable at-least-once queue of outgoing MQTT messages in SQLite (WAL).

paho-mqtt keeps unacknowledged publishes in memory only, so a pulled plug or a broker outage would lose
them; this queue is the durable part. The life of a row::

    put() ──► ready ──settle(sent=[(id, mid)])──► in flight ──settle(acked=[mid]) on PUBACK──► deleted
                ▲                                    │
                └──────── requeue_inflight() ◄───────┘   (at start-up and on every reconnect)

* A message is committed before :meth:`Outbox.put` returns, and its ``seq`` is taken from a counter in the
  same database (the newest row carries it) and the same transaction, so ``seq`` is strictly increasing per
  device across restarts, crashes and power cuts, in both fsync modes, and never reused
  (``agent.mqtt.seq_counter``: a durable reservation; numbers may skip after a reboot). A brand-new database
  (first start, or after a corrupt one was quarantined) seeds the counter with the wall clock in epoch
  milliseconds, never below what the quarantined one had reserved, so ``seq`` keeps growing for consumers
  even then.
* ``ts`` is the capture time in UTC ISO-8601 with milliseconds (``2026-11-24T21:40:52.123Z``). A payload
  that already carries ``ts`` keeps it; otherwise the time of :meth:`put` is stamped.
* Rows are only ever deleted after their PUBACK (:meth:`settle`) or by the bounds below. In-flight marks
  and acknowledgements need no durability (after a crash such a row just goes out again, same ``seq``: a
  duplicate at-least-once allows), so they live in memory (``agent.mqtt.acks``) and acknowledged rows are
  deleted with the next put, or alone once they waited :data:`ACK_FLUSH_S`: one transaction per summary
  flush instead of three (``agent.mqtt.outbox_file``: bytes written). Every put commits before it returns.
* Bounds: ``max_rows``, ``max_bytes`` (topic + payload JSON, before compression) and ``max_age_s``; on disk
  that is the rows plus SQLite's page overhead plus a WAL of at most ~1 MB (2 MB in files made before 1 KB
  pages). Past a bound the oldest rows are dropped first (a dashboard wants the recent picture most),
  counted per reason in the database and reported by :meth:`stats`, which the publisher puts into the
  retained ``health`` message.
* ``state`` is a small key -> text table written in the same transaction as the messages it goes with
  (``put_many(..., state=...)``): the service keeps each open session's checkpoint there, so "this session
  is open, and this much of it was published" is durable exactly when its messages are. A commit that adds
  or deletes a ``state`` key is fsynced whatever the mode (a key marks something open: a session's start
  and end must not vanish in a power cut, or a consumer who saw the start never sees an end); rewriting an
  existing key rides on the mode.
* A damaged file is moved aside and a fresh one started (``agent.mqtt.outbox_file``).

fsync policy: ``synchronous = "full"`` (the default) fsyncs the WAL at every put's commit, so a summary
survives a power cut once ``put`` returned; the agent commits a few times a second at most, far below what
even an SD card sustains (~1,200 random 4 KB writes/s on a Pi 4 A2 card). ``"normal"`` may lose the last
commits on a power cut (never on a SIGKILL) and writes about a fifth of the bytes (``scripts/bench/flash.py``:
0.4 vs 2.0 KB a message), for worn or very slow cards; even then three kinds of commit are fsynced: a ``seq``
reservation (one per 1,000 messages), and a session's start and end (their ``state`` keys), so no ``seq`` is
reused and every session a consumer saw start gets an end.

Threading: one connection, used from the event loop thread only (the publisher hands paho's callbacks over
to the loop first). A lock guards it anyway so ``stats()`` from another thread is safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from agent.config import OutboxConfig
from agent.messages import encode, utc_iso
from agent.mqtt import outbox_file
from agent.mqtt.acks import Acks
from agent.mqtt.seq_counter import SeqCounter, boot_id, salvage_reserved
from agent.ops.health import OutboxHealth

_LOGGER = logging.getLogger(__name__)

RETAINED_STATE_PREFIX = "retained/"
"""``state`` keys ``retained/<topic>``: the newest ``seq`` queued with the retain flag on that topic."""
DROP_REASONS = ("rows", "bytes", "age", "oversize", "refused")
"""Why rows left the outbox undelivered: its bounds, bigger than the broker accepts (the drain says so), or
refused by the broker (MQTT 5 PUBACK reason >= 0x80, e.g. 0x87 when its ACL denies the topic). Every stamped
``seq`` is either delivered or counted under one of these, so a consumer's gap always shows in health."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One queued message, as the publisher sends it."""

    id: int
    seq: int
    topic: str
    payload: bytes
    retain: bool
    created: float


class Outbox:
    """The SQLite queue; see the module docstring for its guarantees."""

    def __init__(
        self,
        path: Path,
        cfg: OutboxConfig,
        *,
        clock: Callable[[], float] = time.time,
        boot: Callable[[], str] = boot_id,
    ) -> None:
        self.path = Path(path)
        self.cfg = cfg
        self._clock = clock
        self._boot = boot
        self._seqs: SeqCounter
        self._lock = threading.Lock()
        self.quarantined: Optional[Path] = None
        self._warned: Set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            self.quarantined = outbox_file.quarantine(self.path, exc)
            self._db = self._open(floor=salvage_reserved(self.quarantined))
        self._count, self._bytes = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM messages"
        ).fetchone()
        self._acks = Acks()
        self._newest_retained: Dict[str, int] = {}
        """topic -> the newest seq queued retained on it (durable: ``state`` rows, written with the put)."""
        for topic, value in self.state_items(RETAINED_STATE_PREFIX).items():
            with contextlib.suppress(ValueError):
                self._newest_retained[topic[len(RETAINED_STATE_PREFIX) :]] = int(value)

    def _open(self, floor: int = 0) -> sqlite3.Connection:
        def start(db: sqlite3.Connection) -> None:
            self._seqs = SeqCounter(db, seed=max(int(self._clock() * 1000), floor), boot=self._boot())

        return outbox_file.open_db(self.path, self.cfg.synchronous, start, DROP_REASONS)

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
        retained: Dict[str, int] = {}
        with self._lock, outbox_file.transaction(self._db, durable=self._must_sync(len(items), state)):
            self._delete_acked()  # rides on this commit: no transaction of its own
            for key, value in (state or {}).items():
                if value is None:
                    self._db.execute("DELETE FROM state WHERE key = ?", (key,))
                else:
                    self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, value))
            seq = self._seqs.next_seq()
            for topic, payload, retain in items:
                body = dict(payload)
                body["seq"] = seq
                body.setdefault("ts", utc_iso(now))
                data = encode(body)
                size = len(data) + len(topic.encode())
                self._db.execute(
                    # id = seq: ids are never reused, and id order is seq order (the drain relies on it)
                    "INSERT INTO messages (id, seq, topic, payload, retain, created, size) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (seq, seq, topic, outbox_file.pack(data), int(retain), now, size),
                )
                if retain:
                    key = RETAINED_STATE_PREFIX + topic
                    self._db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, str(seq)))
                    retained[topic] = seq
                self._count += 1
                self._bytes += size
                seqs.append(seq)
                seq += 1
            self._seqs.advance(self._db, seq)
            self._enforce_bounds(now)
        self._seqs.committed()
        self._newest_retained.update(retained)
        return seqs

    def superseded(self, row: Row) -> bool:
        """Whether a newer message was queued retained on ``row``'s topic: then ``row`` must not be published
        retained, or the broker would keep it (an older state) over the newer one, whenever that one went
        out: on this connection, an earlier one, or in an earlier life of the agent."""
        return row.seq < self._newest_retained.get(row.topic, row.seq)

    def _must_sync(self, count: int, state: Optional[Mapping[str, Optional[str]]]) -> bool:
        """Whether a put of ``count`` messages with ``state`` must be fsynced whatever the mode: it needs a
        ``seq`` reservation (``agent.mqtt.seq_counter``), or adds or deletes a ``state`` key."""
        if self._seqs.must_reserve(count):
            return True
        for key, value in (state or {}).items():
            found = self._db.execute("SELECT 1 FROM state WHERE key = ?", (key,)).fetchone()
            if (value is None) == (found is not None):
                return True
        return False

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
                with self._deleting():
                    self._enforce_bounds(now)
            busy = self._acks.busy()
            rows = self._db.execute(
                "SELECT id, seq, topic, payload, retain, created FROM messages "
                "WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (after_id, upto, limit + len(busy)),
            ).fetchall()
        ready = [
            Row(i, s, t, outbox_file.unpack(bytes(p)), bool(r), c)
            for i, s, t, p, r, c in rows
            if s not in busy
        ]
        return ready[:limit]

    @property
    def depth(self) -> int:
        """Rows queued and not acknowledged, in flight included."""
        return max(0, int(self._count) - self._acks.waiting)

    @property
    def acks_waiting(self) -> int:
        """Acknowledged rows not deleted yet (see :meth:`settle`)."""
        return self._acks.waiting

    def next_seq(self) -> int:
        """The ``seq`` the next message will get: every row queued so far has a smaller one."""
        with self._lock:
            return self._seqs.next_seq()

    def last_id(self) -> int:
        """The id of the newest row queued so far (0 when none ever was): a mark between backlog and live."""
        with self._lock:
            row = self._db.execute("SELECT max(id) FROM messages").fetchone()
        return int(row[0] or 0)

    def discard(self, rows: Sequence[Row], reason: str) -> None:
        """Delete ``rows`` unsent, counted under ``reason`` (one of :data:`DROP_REASONS`)."""
        if not rows:
            return
        with self._lock, self._deleting():
            count, size = self._delete([(r.id, r.seq) for r in rows])
            self._count_drop(reason, count, size, say=False)

    def settle(
        self, acked_mids: Iterable[int], sent: Iterable[Tuple[int, int]], refused_mids: Iterable[int] = ()
    ) -> int:
        """Note ``(row id, mid)`` pairs as in flight and the rows whose PUBACK came as acknowledged.

        Both live in memory (they need no durability: after a crash such a row is simply sent again, same
        ``seq``); acknowledged rows are deleted with the next put's transaction, or on their own once the
        oldest has waited :data:`ACK_FLUSH_S` (:meth:`flush_acks`). Returns how many were acknowledged.

        ``refused_mids``: the broker answered with a failure reason; resending cannot help, so those rows are
        deleted now and counted as dropped (``refused``), like the bounds' drops: a seq never vanishes
        uncounted.
        """
        now = self._clock()
        with self._lock:
            for row_id, mid in sent:
                found = self._db.execute("SELECT seq FROM messages WHERE id = ?", (row_id,)).fetchone()
                self._acks.sent(mid, row_id, int(found[0]) if found else -1)
            acked = self._acks.acked(acked_mids, now)
            refused = self._acks.take_inflight(refused_mids)
            if refused:
                with self._deleting():
                    count, size = self._delete(refused)
                    self._count_drop("refused", count, size, say=False)
        if self._acks.due(now):
            self.flush_acks()
        return acked

    def flush_acks(self) -> None:
        """Delete the acknowledged rows now, in one transaction that does not wait for an fsync (a power
        cut that loses it only means those rows are sent once more)."""
        if not self._acks.waiting:
            return
        with self._lock:
            if self.cfg.synchronous != "normal":
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._deleting():
                    self._delete_acked()
            finally:
                if self.cfg.synchronous != "normal":
                    self._db.execute(f"PRAGMA synchronous={self.cfg.synchronous.upper()}")

    @contextlib.contextmanager
    def _deleting(self) -> Iterator[None]:
        """A transaction that deletes rows and inserts none: it keeps the ``seq`` counter on disk."""
        with outbox_file.transaction(self._db):
            yield
            self._seqs.keep(self._db)

    def _delete_acked(self) -> None:
        """Delete the acknowledged rows; the caller holds the lock and the transaction."""
        if self._acks.waiting:
            count, size = self._delete(self._acks.take_acked())
            self._count -= count
            self._bytes -= size

    def _delete(self, rows: Sequence[Tuple[int, int]]) -> Tuple[int, int]:
        """Delete (row id, seq) pairs, both matching (a file from an earlier version may reuse ids); returns
        (rows, bytes) deleted."""
        count = size = 0
        for row_id, seq in rows:
            found = self._db.execute(
                "SELECT size FROM messages WHERE id = ? AND seq = ?", (row_id, seq)
            ).fetchone()
            if found is not None:
                self._db.execute("DELETE FROM messages WHERE id = ?", (row_id,))
                count += 1
                size += int(found[0])
        return count, size

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
            return self._acks.requeue()

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
        return OutboxHealth(
            depth=self.depth,
            bytes=int(self._bytes),
            inflight=self._acks.inflight,
            dropped=dropped,
            dropped_total=sum(dropped.values()),
            synchronous=self.cfg.synchronous,
            path=str(self.path),
            quarantined=str(self.quarantined) if self.quarantined else None,
            oldest_age_s=self._oldest_age_s(),
        )

    def _oldest_age_s(self) -> float:
        """Seconds the oldest queued row has waited (an acknowledged row waits at most ``ACK_FLUSH_S``
        more for its deletion); 0 when nothing is queued."""
        if not self.depth:
            return 0.0
        with self._lock:
            row = self._db.execute("SELECT created FROM messages ORDER BY id LIMIT 1").fetchone()
        return 0.0 if row is None else round(max(0.0, self._clock() - float(row[0])), 1)

    def stats(self) -> Dict[str, Any]:
        """:meth:`health` as JSON-ready data."""
        return dataclasses.asdict(self.health())

    def close(self) -> None:
        """Delete what was acknowledged, checkpoint the WAL into the main file and close."""
        with contextlib.suppress(sqlite3.Error):  # a full disk: they are sent once more next time
            self.flush_acks()
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()
