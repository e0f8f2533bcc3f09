"""What the agent hands to its MQTT side: a neutral module, so ``agent.mqtt`` needs nothing from ``summary``.

The summarizer (a producer) and the publisher (a transport) both depend on this, never on each other.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any, Dict, Mapping, Optional


@dataclasses.dataclass(frozen=True)
class OutMessage:
    """A message for the outbox; ``topic`` is relative to ``{topic_prefix}/{device_id}/``."""

    topic: str
    payload: Dict[str, Any]
    retain: bool = False
    state: Optional[str] = None
    """A retained live-state topic (relative, e.g. ``state/face``) that this message, with its ``seq``,
    also becomes when it is queued: published directly, never from a backlog (``agent.summary``)."""


SESSION_STATE_TOPIC = "state/session"
"""The retained live state of the session: the latest session start or end (``agent.summary``)."""


def state_topic(model: str) -> str:
    """The retained live-state topic of a model (relative to ``{prefix}/{device_id}/``)."""
    return f"state/{model}"


def encode(body: Mapping[str, Any]) -> bytes:
    """A message's bytes on the wire (compact JSON, UTF-8): one encoding for the outbox and state."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def utc_iso(epoch_s: float) -> str:
    """``2026-11-24T21:40:52.123Z``: the one timestamp format of every message."""
    stamp = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"
