"""Which queued rows are in flight and which are acknowledged but not deleted yet: memory only.

Neither needs durability (after a crash such a row is simply sent again, same ``seq``: at-least-once), and
keeping them out of the database saves two transactions per summary flush (``agent.mqtt.outbox``). Rows are
known by ``seq``, their identity (a row's id is its seq in files made since; older files have other ids).
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Set, Tuple

ACK_FLUSH_S = 5.0
"""Acknowledged rows wait at most this long to be deleted (with the next put, or on their own); a crash in
between sends them once more. Home Assistant's recorder and mosquitto 2.1's persistence batch commits the
same way (5 s) to spare flash."""
ACK_FLUSH_ROWS = 500


class Acks:
    """mid -> row while in flight; seq -> row id once acknowledged, until :meth:`take_acked`."""

    def __init__(self) -> None:
        self._inflight: Dict[int, Tuple[int, int]] = {}
        self._acked: Dict[int, int] = {}
        self._acked_since: Optional[float] = None

    def sent(self, mid: int, row_id: int, seq: int) -> None:
        self._inflight[mid] = (row_id, seq)

    def acked(self, mids: Iterable[int], now: float) -> int:
        """Move the rows of these mids to acknowledged; returns how many were in flight."""
        count = 0
        for mid in mids:
            row = self._inflight.pop(mid, None)
            if row is not None:
                self._acked[row[1]] = row[0]
                count += 1
        if self._acked and self._acked_since is None:
            self._acked_since = now
        return count

    def take_inflight(self, mids: Iterable[int]) -> List[Tuple[int, int]]:
        """The (row id, seq) of these in-flight mids, forgotten here (the broker refused them)."""
        rows = [self._inflight.pop(mid, None) for mid in mids]
        return [row for row in rows if row is not None]

    def due(self, now: float) -> bool:
        """Whether the acknowledged rows have waited long enough, or are many enough, to be deleted."""
        since = self._acked_since
        return since is not None and (len(self._acked) >= ACK_FLUSH_ROWS or now - since >= ACK_FLUSH_S)

    def take_acked(self) -> List[Tuple[int, int]]:
        """The acknowledged (row id, seq) pairs, forgotten here (the caller deletes them)."""
        rows = [(row_id, seq) for seq, row_id in self._acked.items()]
        self._acked.clear()
        self._acked_since = None
        return rows

    def requeue(self) -> int:
        """Every in-flight row is ready again (its PUBACK can no longer come); returns how many."""
        count = len(self._inflight)
        self._inflight.clear()
        return count

    def busy(self) -> Set[int]:
        """Seqs not to hand out: in flight or acknowledged."""
        return {seq for _, seq in self._inflight.values()} | set(self._acked)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def waiting(self) -> int:
        """Acknowledged, not deleted yet."""
        return len(self._acked)
