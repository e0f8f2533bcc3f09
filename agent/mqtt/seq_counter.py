"""The outbox's ``seq`` counter: why no number is ever handed out twice, whatever the fsync mode and however
the power goes.

Consumers de-duplicate on ``(device, seq)``: a number stamped on two different messages makes them drop
the second as a redelivery. The counter lives in the outbox's ``meta`` table and advances in the same
transaction as the rows it numbers. With ``outbox.synchronous = "normal"`` such a transaction is not yet on
the card when ``put`` returns (SQLite syncs the WAL only at a checkpoint), yet the drain publishes its rows
at once; a power cut then rolled the counter back to the last synced commit, and the restarted agent
stamped numbers consumers had already seen on new messages (``scripts/chaos --power-cuts 6``, the outbox
on a filesystem that drops unsynced writes: 12 and 17 of ~105 numbers reused in two runs, 0 since).

**Reservation (the choice):** the counter hands out only numbers below ``seq_reserved``, a bound that is
itself durable before any number under it is published: a transaction that needs a number at or above it
raises it by :data:`RESERVE_BLOCK` in the same transaction and commits with an fsync whatever the mode (in
WAL mode that fsync also makes every earlier commit durable). So after any cut the durable
``seq_reserved`` is above every number ever handed out, and a start in a new boot continues from it.
Cost: one fsync per :data:`RESERVE_BLOCK` messages (in ``full`` mode every commit is fsynced anyway) and a
gap of at most that many numbers per reboot: ``seq`` is strictly increasing, not contiguous.

**Why not the clock** (a new file seeds the counter with the wall clock in epoch milliseconds, and the
counter, a few messages a second, stays far below it): a kiosk without a real-time clock boots with the
time fake-hwclock saved (up to an hour old after a cut) or 1970 until NTP answers, so a clock-derived
start can be below numbers already out, and no gap added to it is safe against a clock that is days
behind. The clock only seeds a new file, and then never below what the file it replaces (quarantined, see
``agent.mqtt.outbox_file``) had reserved, when that can still be read.

**Why not always jump at start:** a SIGKILL or crash within the same boot loses nothing (the page cache
keeps every commit), so the counter continues exactly where it was, with no gap; only a start in a new boot
(``/proc/sys/kernel/random/boot_id`` differs from the one stored at the last start) jumps to the
reservation. An unreadable boot id counts as a new boot (a gap, never a repeat).

**Where the counter lives between starts:** in memory while the outbox is open; on disk it is the newest
row's ``seq`` + 1, or ``next_seq`` in ``meta`` when that is higher (a start reads both). A put's new rows
carry it, so a put writes no ``meta`` row: rewriting ``next_seq`` in every put's commit added the ``meta``
page to each commit's WAL frames, 25 % of the outbox's bytes written (``scripts/bench/flash.py``: 3,297 ->
2,468 bytes a message at 2 KB pages). Only a transaction that deletes rows without adding any (acknowledged
rows deleted on their own, a drop) writes ``next_seq`` (:meth:`SeqCounter.keep`), and only when it deleted
the newest row.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Dict, Optional, Tuple

RESERVE_BLOCK = 1000
"""Numbers reserved per fsync: a kiosk's ~1-4 messages/s reserve about every 4-15 minutes."""
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


def boot_id(path: Path = BOOT_ID_PATH) -> str:
    """This boot's id (a UUID the kernel draws at boot), or "" when it cannot be read."""
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def boot_number(boot: str) -> int:
    """A boot id as a positive integer for the ``meta`` table (its first 60 bits; 0 when unknown)."""
    try:
        return int(boot.replace("-", "")[:15], 16) + 1 if boot else 0
    except ValueError:
        return 0


class SeqCounter:
    """The next ``seq`` and its durable reservation; one per open outbox, used inside its transactions."""

    def __init__(self, db: sqlite3.Connection, *, seed: int, boot: str) -> None:
        """Read (or create) the counter at open, inside the caller's transaction.

        ``seed`` is the first number of a new file (the clock, or above a quarantined file's reservation).
        """
        meta: Dict[str, int] = {
            str(k): int(v)
            for k, v in db.execute(
                "SELECT key, value FROM meta WHERE key IN ('next_seq', 'seq_reserved', 'seq_boot')"
            )
        }
        newest = newest_seq(db)
        if newest is not None:
            meta["next_seq"] = max(meta.get("next_seq", 0), newest + 1)
        number = boot_number(boot)
        if "next_seq" not in meta:
            start = seed
        elif number and meta.get("seq_boot") == number:
            start = meta["next_seq"]  # same boot: the page cache lost nothing
        else:
            # A file from before reservations has none: a clock that is not behind still covers it.
            start = max(meta["next_seq"], meta.get("seq_reserved", seed))
        self.reserved = max(meta.get("seq_reserved", start), start)
        """Every number handed out is below this durable bound."""
        self._next = start
        self._pending: Optional[Tuple[int, Optional[int]]] = None
        """(next, reserved) of the transaction of the last :meth:`advance`, until :meth:`committed`."""
        for key, value in (("next_seq", start), ("seq_reserved", self.reserved), ("seq_boot", number)):
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def next_seq(self) -> int:
        """The number the next message gets."""
        return self._next

    def must_reserve(self, count: int) -> bool:
        """Whether stamping ``count`` more numbers needs a reservation (and so an fsynced commit)."""
        return self._next + count > self.reserved

    def advance(self, db: sqlite3.Connection, upto: int) -> None:
        """Numbers below ``upto`` are stamped on rows inserted by the open transaction (which carry the
        counter on disk); reserve past it when needed (:meth:`must_reserve` said so before the transaction
        began, so it is fsynced). Call :meth:`committed` once the commit returned."""
        reserved: Optional[int] = None
        if upto > self.reserved:
            reserved = upto - 1 + RESERVE_BLOCK  # this batch's last number and BLOCK - 1 more
            db.execute("UPDATE meta SET value = ? WHERE key = 'seq_reserved'", (reserved,))
        self._pending = (upto, reserved)

    def committed(self) -> None:
        """The transaction of the last :meth:`advance` is committed: its numbers are used, its reservation
        holds (a rolled-back one never calls this, so its numbers are handed out again)."""
        if self._pending is not None:
            self._next = self._pending[0]
            if self._pending[1] is not None:
                self.reserved = self._pending[1]
            self._pending = None

    def keep(self, db: sqlite3.Connection) -> None:
        """Inside a transaction that deleted rows and inserted none, before its commit: when the newest row
        is gone, the counter goes to ``meta``, so a restart in this boot still continues from it."""
        newest = newest_seq(db)
        if newest is None or newest + 1 < self._next:
            db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (self._next,))


def newest_seq(db: sqlite3.Connection) -> Optional[int]:
    """The ``seq`` of the newest queued row (the highest id: since ids are seqs, files made by earlier
    versions have their old, smaller ids first), or None when the queue is empty."""
    row = db.execute("SELECT seq FROM messages ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else int(row[0])


def salvage_reserved(path: Path) -> int:
    """The highest number a (quarantined) outbox file had reserved or reached, if it can still be read."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0
    try:
        # NOT INDEXED: the table's own page alone, even when its key index is damaged
        rows = db.execute("SELECT key, value FROM meta NOT INDEXED").fetchall()
        return max((int(v) for k, v in rows if k in ("next_seq", "seq_reserved")), default=0)
    except (sqlite3.Error, ValueError, TypeError):
        return 0
    finally:
        db.close()
