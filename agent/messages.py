"""What the agent hands to its MQTT side: a neutral module, so ``agent.mqtt`` needs nothing from ``summary``.

The summarizer (a producer) and the publisher (a transport) both depend on this, never on each other.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Dict


@dataclasses.dataclass(frozen=True)
class OutMessage:
    """A message for the outbox; ``topic`` is relative to ``{topic_prefix}/{device_id}/``."""

    topic: str
    payload: Dict[str, Any]
    retain: bool = False


def utc_iso(epoch_s: float) -> str:
    """``2026-11-24T21:40:52.123Z``: the one timestamp format of every message."""
    stamp = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
