"""What the agent queued, counted for health and metrics: visits ended by reason, summaries by model, and
when the latest summary was made.

The service hands every batch it queues to :meth:`Tally.observe` (the messages are the record of what
happened: a visit's end carries its reason, a summary its model), so the counts cannot drift from what the
broker receives, and no part of the session or summary logic needs a counter of its own. Pure; the
counts start at zero with the process, as Prometheus counters do.
"""

from __future__ import annotations

import collections
from typing import Dict, Iterable, Optional

from agent.messages import OutMessage, utc_iso
from agent.visit.session import END, END_REASONS
from agent.visit.summary import SESSION_SCHEMA, SUMMARY_SCHEMA


class Tally:
    """Counts of the messages the service queued."""

    def __init__(self, models: Iterable[str] = ()) -> None:
        # Every reason and model from the start, at 0: Prometheus' rate() needs the 0 before the first one.
        self.ended: Dict[str, int] = collections.Counter(dict.fromkeys(END_REASONS, 0))
        self.published: Dict[str, int] = collections.Counter(dict.fromkeys(models, 0))
        self.last_summary_at: Optional[float] = None
        """Wall-clock time (epoch s) the latest summary was queued."""

    def observe(self, msgs: Iterable[OutMessage], wall: float) -> None:
        """Count one batch the service queued at ``wall``."""
        for msg in msgs:
            schema = msg.payload.get("schema")
            if schema == SUMMARY_SCHEMA:
                self.published[str(msg.payload.get("model"))] += 1
                self.last_summary_at = wall
            elif schema == SESSION_SCHEMA and msg.payload.get("event") == END:
                reason = msg.payload.get("reason")
                self.ended[reason if reason in END_REASONS else "other"] += 1

    @property
    def last_summary_iso(self) -> Optional[str]:
        return None if self.last_summary_at is None else utc_iso(self.last_summary_at)
