"""What the fleet view reads from one ``health`` message: untrusted bytes in, a typed :class:`HealthView` out.

The payload is parsed with :func:`agent.untrusted.loads` (size and depth bounded); every field is checked
for its type, timestamps for their shape, and text is stripped of control characters and clipped.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Optional

from agent import untrusted
from agent.untrusted import clip

MAX_PAYLOAD_BYTES = 64 * 1024
"""A health message is about 2 KB; anything 30x larger is not ours."""
MAX_TEXT_CHARS = 160
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)$")


def clean_text(value: object, limit: int = MAX_TEXT_CHARS) -> Optional[str]:
    """A string fit for a terminal (:func:`agent.untrusted.clip`), or None when it is not a string."""
    return clip(value, limit) if isinstance(value, str) else None


def _int(value: object) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _get(body: Mapping[str, Any], *path: str) -> object:
    node: object = body
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


@dataclasses.dataclass(frozen=True)
class HealthView:
    """What the fleet view reads from one ``health`` message; every field may be missing (None)."""

    ts: Optional[str] = None
    version: Optional[str] = None
    config_fingerprint: Optional[str] = None
    python: Optional[str] = None
    os: Optional[str] = None
    backend: Optional[str] = None
    started_at: Optional[str] = None
    session_active: Optional[bool] = None
    queue_depth: Optional[int] = None
    dropped: Optional[int] = None
    last_error: Optional[str] = None
    hume_state: Optional[str] = None
    """The Hume link's headline state (``open``, ``idle``, ``rate_limited``, ``backoff``, ...)."""


def parse_health(payload: bytes) -> HealthView:
    """The fields the fleet view shows; ValueError for anything that is not a JSON object."""
    body = untrusted.loads(payload, max_bytes=MAX_PAYLOAD_BYTES, what="health")
    if not isinstance(body, dict):
        raise ValueError("health is not a JSON object")
    ident = body.get("identity")
    ident = ident if isinstance(ident, dict) else {}
    ts = body.get("ts")
    started = ident.get("started_at")
    active = _get(body, "session", "active")
    depth = _int(_get(body, "outbox", "depth"))
    dropped = _int(_get(body, "outbox", "dropped_total"))
    error = body.get("last_error")
    message = error.get("message") if isinstance(error, dict) else error
    return HealthView(
        ts=ts if isinstance(ts, str) and _TIMESTAMP.match(ts) else None,
        version=clean_text(ident.get("version"), 40),
        config_fingerprint=clean_text(ident.get("config_fingerprint"), 64),
        python=clean_text(ident.get("python"), 40),
        os=clean_text(ident.get("os"), 80),
        backend=clean_text(ident.get("backend"), 16),
        started_at=started if isinstance(started, str) and _TIMESTAMP.match(started) else None,
        session_active=active if isinstance(active, bool) else None,
        queue_depth=depth if depth is not None else _int(_get(body, "mqtt", "queue_depth")),
        dropped=dropped if dropped is not None else _int(_get(body, "mqtt", "dropped")),
        last_error=clean_text(message),
        hume_state=clean_text(_get(body, "hume", "state"), 24),
    )
