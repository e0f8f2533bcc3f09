"""The power-loss campaign's ledger (tests/support/ledger_agent.py) and its accounting: exact by construction.

A message can reach the card, and so the broker, only through a ``COMMIT``; the ledger writes its line before
that ``COMMIT`` is sent, so "delivered but never stamped" means a real stray message, never a cut that came
between a commit and its line (which the first ledger, written after ``put`` returned, reported once in a
full suite run: a session ``start`` committed and fsynced at start-up, the cut, the next life delivered it).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from agent.config import OutboxConfig
from agent.mqtt.outbox import Outbox
from agent.mqtt.outbox_file import unpack
from tests.support.ledger_agent import LedgerConnection, digest, install
from tests.support.powerloss import LedgerAgent, Stamp, account
from tests.support.processes import PREFIX


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The ledger installed in this process (undone after the test)."""
    path = tmp_path / "ledger.txt"
    monkeypatch.setattr(sqlite3, "connect", sqlite3.connect)
    monkeypatch.setattr(LedgerConnection, "ledger_fd", LedgerConnection.ledger_fd)
    monkeypatch.setattr(LedgerConnection, "life", LedgerConnection.life)
    install(str(path), "7")
    yield path
    os.close(LedgerConnection.ledger_fd)


def lines(path: Path) -> List[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_a_row_is_in_the_ledger_before_its_commit_is_sent(ledger: Path, tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxConfig(synchronous="normal"))
    at_commit: List[List[str]] = []
    box._db.set_trace_callback(lambda sql: at_commit.append(lines(ledger)) if sql == "COMMIT" else None)
    seqs = box.put_many([("summary", {"n": 1}, False), ("session", {"event": "start"}, False)])
    box._db.set_trace_callback(None)
    stored = {seq: unpack(bytes(p)) for seq, p in box._db.execute("SELECT seq, payload FROM messages")}
    expected = [f"7 {seq} {topic} {digest(stored[seq])}" for seq, topic in zip(seqs, ["summary", "session"])]
    assert at_commit[-1] == [f"{line} commit" for line in expected], "the ledger lagged the COMMIT"
    assert lines(ledger) == [f"{line} commit" for line in expected] + [
        f"{line} committed" for line in expected
    ]
    box.close()


def test_a_rolled_back_transaction_leaves_no_line(ledger: Path, tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", OutboxConfig())
    with pytest.raises(TypeError):  # the first row is inserted, the second cannot be encoded: ROLLBACK
        box.put_many([("summary", {"n": 1}, False), ("summary", {"n": object()}, False)])
    assert lines(ledger) == []
    seq = box.put("summary", {"n": 2})
    assert [line.split(" ")[1::3] for line in lines(ledger)] == [
        [str(seq), "commit"],
        [str(seq), "committed"],
    ]
    box.close()


def received(*bodies: Tuple[int, str]) -> List[Tuple[str, bytes, bool]]:
    return [(PREFIX + topic, json.dumps({"seq": seq}).encode(), False) for seq, topic in bodies]


def stamp(seq: int, topic: str, committed: bool) -> Stamp:
    return Stamp(1, seq, topic, digest(json.dumps({"seq": seq}).encode()), committed)


def test_accounting_tells_a_cut_mid_commit_from_a_message_never_stamped() -> None:
    ledger = [
        stamp(1, "summary", False), stamp(1, "summary", True),  # committed, delivered
        stamp(2, "summary", False), stamp(2, "summary", True),  # committed, lost
        stamp(3, "session", False),  # a cut before COMMIT returned; on the card after all: delivered
        stamp(4, "summary", False),  # a cut before COMMIT returned; not on the card
    ]  # fmt: skip
    acc = account(ledger, received((1, "summary"), (3, "session"), (5, "summary")))
    assert (acc.stamped, acc.delivered, acc.lost) == (2, 1, 1)
    assert (acc.cut_mid_commit, acc.cut_mid_commit_delivered) == (2, 1)
    assert acc.not_in_ledger == 1
    assert acc.unstamped == ["5 summary"]


def test_the_ledger_file_reads_back(tmp_path: Path) -> None:
    agent = LedgerAgent.__new__(LedgerAgent)
    agent.ledger = tmp_path / "ledger.txt"
    agent.ledger.write_text("3 17 summary abc commit\n3 17 summary abc committed\n", encoding="utf-8")
    assert agent.ledger_lines() == [
        Stamp(3, 17, "summary", "abc", False),
        Stamp(3, 17, "summary", "abc", True),
    ]
