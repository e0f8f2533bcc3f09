"""What reached the broker, so that "lost" is real.

Accounting, so that "lost" is real: the outbox stamps ``seq`` from a counter in its database, contiguous
per database, so ``produced`` = the counter at the end minus the counter before the agent first started
(read from the database itself). ``delivered`` = distinct seqs the persistent subscriber received;
``dropped`` = what the outbox's documented bounds dropped (counted in its database); ``queued`` = rows
still in the outbox at the end. ``lost = produced - delivered - dropped - queued`` must be 0. Messages the
agent could not store at all (disk full) never got a seq: they are the agent's own ``write_failures``
counter, summed over its lives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Dict, List, Sequence, Set, Tuple

from agent.mqtt.seq_counter import newest_seq
from tests.support.mosquitto import Received
from tests.support.processes import PREFIX

# --------------------------------------------------------------------------------------------------
# What reached the broker


@dataclasses.dataclass
class Accounting:
    """The figures the campaign reports; ``lost`` must be 0."""

    produced: int
    delivered: int
    dropped: Dict[str, int]
    queued: int
    duplicates: int
    out_of_order: int
    write_failures: int
    missing: List[int] = dataclasses.field(default_factory=list)
    """The stamped seqs the subscriber never received (queued and dropped ones included)."""

    @property
    def lost(self) -> int:
        return self.produced - self.delivered - sum(self.dropped.values()) - self.queued


def seqs_of(messages: Sequence[Received]) -> List[Tuple[int, bool, bool]]:
    """(seq, retained replay, ``"replay": true``) of every outbox message under the device's prefix, in
    arrival order (the live-state copies on ``state/...`` are not deliveries). The order promise holds per
    class: messages the agent marked ``replay`` (its backlog after a reconnect) are in order among
    themselves, and so are the others (``mqtt.replay = live_first`` sends live ones before the backlog)."""
    out = []
    for m in messages:
        if not m.topic.startswith(PREFIX) or "/cmd/" in m.topic or "/state/" in m.topic:
            continue  # state/...: copies of the latest messages, published again at every connect
        try:
            body = json.loads(m.payload)
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("seq"), int):
            out.append((body["seq"], m.retain, body.get("replay") is True))
    return out


def outbox_counter(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        # the live counter: the newest row's seq + 1, or meta's next_seq when higher (agent.mqtt.seq_counter)
        stored = int(db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
        return max(stored, (newest_seq(db) or 0) + 1)


def outbox_remains(path: Path) -> Tuple[int, Dict[str, int]]:
    """Rows still queued and the drops counted per reason."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        queued = int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
        rows = db.execute("SELECT key, value FROM meta WHERE key LIKE 'dropped_%'").fetchall()
    return queued, {k[len("dropped_") :]: int(v) for k, v in rows}


def account(
    first: int,
    last: int,
    received: Sequence[Tuple[int, bool, bool]],
    *,
    queued: int,
    dropped: Dict[str, int],
    write_failures: int,
) -> Accounting:
    """``first``..``last`` (exclusive) were stamped; see the module docstring for the formula."""
    distinct = {s for s, _, _ in received if first <= s < last}
    arrivals = [(s, replay) for s, retained, replay in received if not retained and first <= s < last]
    live = [s for s, _ in arrivals]
    seen: Set[int] = set()
    highest = {False: first - 1, True: first - 1}
    out_of_order = 0
    for s, replay in arrivals:
        if s in seen:
            continue
        seen.add(s)
        if s < highest[replay]:
            out_of_order += 1
        highest[replay] = max(highest[replay], s)
    return Accounting(
        produced=last - first,
        delivered=len(distinct),
        dropped=dropped,
        queued=queued,
        duplicates=len(live) - len(set(live)),
        out_of_order=out_of_order,
        write_failures=write_failures,
        missing=[s for s in range(first, last) if s not in distinct],
    )
