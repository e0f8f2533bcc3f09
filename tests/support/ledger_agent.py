"""``hume-edge run`` that also writes down every ``seq`` its outbox stamped, for the power-loss campaign.

Test instrumentation, not product: ``python -m tests.support.ledger_agent run --config FILE`` is the
agent's own CLI with its SQLite connections made :class:`LedgerConnection`, which sees every row inserted
into the outbox's ``messages`` table and writes two lines per row to the file named by
``$HUME_EDGE_TEST_LEDGER``, on a disk the cut does not touch: ``<life> <seq> <topic> <sha1 of the queued
JSON> <moment>``, where ``moment`` is

* ``commit``: written just before the ``COMMIT`` of the transaction that inserted the row is sent, so no
  row can reach the card, and so the broker, without this line (a ``write(2)`` to a file off the cut
  filesystem survives the SIGKILL);
* ``committed``: written once that ``COMMIT`` returned: what ``synchronous = full`` promises to keep.

The campaign compares both with what the broker delivered, so "lost", "duplicated" and "reused" are counted
per message, not inferred from the counter. Writing only after a put returned (as this module first did) let
a cut landing between a commit and its line deliver a message "the outbox never stamped": the restarted
agent sent the committed row, which had no line (seen once in a full suite run, seed 20261208).

At the SQL level, not around ``Outbox.put_many``, so the ledger holds for any code path that stamps a row
and for the outbox of earlier versions alike (the campaign is run against the code before the seq
reservation to show it catches reuse).
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import sys
from typing import Any, List, Sequence, Tuple

from agent import cli
from agent.mqtt.outbox_file import unpack

LEDGER_ENV = "HUME_EDGE_TEST_LEDGER"
LIFE_ENV = "HUME_EDGE_TEST_LIFE"
COMMIT, COMMITTED = "commit", "committed"
"""A ledger line's moment: the row's transaction is about to commit / has committed."""
_INSERT = re.compile(r"\s*INSERT\s+INTO\s+messages\s*\(([^)]*)\)", re.IGNORECASE)


def digest(payload: bytes) -> str:
    return hashlib.sha1(payload).hexdigest()[:16]


class LedgerConnection(sqlite3.Connection):
    """A connection that writes down the ``messages`` rows of each transaction around its ``COMMIT``."""

    ledger_fd = -1
    life = "0"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rows: List[Tuple[int, str, str]] = []
        """(seq, topic, digest) inserted by the open transaction."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        verb = sql.lstrip()[:8].upper()
        if verb.startswith(("COMMIT", "END")):
            rows, self._rows = self._rows, []
            self._write(rows, COMMIT)
            cursor = super().execute(sql, parameters)
            self._write(rows, COMMITTED)
            return cursor
        if verb.startswith("ROLLBACK"):
            self._rows = []
        cursor = super().execute(sql, parameters)
        insert = _INSERT.match(sql)
        if insert:
            self._rows.append(_row([c.strip() for c in insert.group(1).split(",")], parameters))
        return cursor

    def _write(self, rows: Sequence[Tuple[int, str, str]], moment: str) -> None:
        if rows:
            text = "".join(f"{self.life} {seq} {topic} {dig} {moment}\n" for seq, topic, dig in rows)
            os.write(self.ledger_fd, text.encode())


def _row(columns: List[str], parameters: Sequence[Any]) -> Tuple[int, str, str]:
    values = dict(zip(columns, parameters))
    return int(values["seq"]), str(values["topic"]), digest(unpack(bytes(values["payload"])))


def install(path: str, life: str) -> None:
    """Every ``sqlite3.connect`` of this process makes a :class:`LedgerConnection` writing to ``path``."""
    LedgerConnection.ledger_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    LedgerConnection.life = life
    connect = sqlite3.connect

    def ledger_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", LedgerConnection)
        db: sqlite3.Connection = connect(*args, **kwargs)
        return db

    sqlite3.connect = ledger_connect  # type: ignore[assignment]


if __name__ == "__main__":
    install(os.environ[LEDGER_ENV], os.environ.get(LIFE_ENV, "0"))
    sys.exit(cli.main(sys.argv[1:]))
