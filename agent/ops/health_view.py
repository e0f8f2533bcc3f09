"""The one reader of the health JSON: a body in, a typed :class:`HealthView` out, every field checked.

Two readers used to exist: ``hume-edge fleet`` parsed the retained ``health`` messages, ``hume-edge
status`` the status file (the same body, ``agent.ops.health.Health.to_json()``, plus the file's own
envelope: pid, written_at, ...) by hand, with its own fallbacks for older layouts. Both now read it here.
Either may meet a body an older or newer agent wrote, or, on the broker, one anyone with publish rights
wrote: every field may be missing or of the wrong type (then None), timestamps must have their shape, and
text is stripped of control characters and clipped (:func:`agent.untrusted.clip`): no terminal escape
reaches the screen.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Optional, Tuple

from agent import untrusted
from agent.untrusted import clip

MAX_PAYLOAD_BYTES = 64 * 1024
"""A health message is about 2 KB; anything 30x larger is not ours."""
MAX_TEXT_CHARS = 160
"""Text kept per field by default: a table cell (``hume-edge fleet``)."""
MAX_LINKS = 16
"""Links kept (the agent reports two: ``hume`` and ``mqtt``)."""
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)$")


def clean_text(value: object, limit: int = MAX_TEXT_CHARS) -> Optional[str]:
    """A string fit for a terminal (:func:`agent.untrusted.clip`), or None when it is not a string."""
    return clip(value, limit) if isinstance(value, str) else None


def _int(value: object) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _epoch(value: object) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _get(body: Mapping[str, Any], *path: str) -> object:
    node: object = body
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


@dataclasses.dataclass(frozen=True)
class LinkView:
    """One link (``hume``, ``mqtt``): its state word and its other plain fields, as text."""

    name: str
    state: str
    details: Tuple[Tuple[str, str], ...] = ()
    """(field, value) of every number, string and flag beside ``state``, sorted by field; nested parts
    (the Hume link's per-socket figures) are left out."""


@dataclasses.dataclass(frozen=True)
class HealthView:
    """What an operator's tools read from one health body; every field may be missing (None, or empty)."""

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
    device_id: Optional[str] = None
    models: Optional[Tuple[str, ...]] = None
    session_id: Optional[str] = None
    session_since: Optional[float] = None
    """When the open visit began (epoch seconds)."""
    last_error_level: Optional[str] = None
    last_error_at: Optional[float] = None
    """When the last error was logged (epoch seconds)."""
    links: Tuple[LinkView, ...] = ()


FLEET_FIELDS = (
    "ts",
    "version",
    "config_fingerprint",
    "python",
    "os",
    "backend",
    "started_at",
    "session_active",
    "queue_depth",
    "dropped",
    "last_error",
    "hume_state",
)
"""The fields ``hume-edge fleet --json`` prints per kiosk (docs/fleet.md)."""


def parse_health(payload: bytes, text_chars: int = MAX_TEXT_CHARS) -> HealthView:
    """:func:`read_health` of untrusted bytes (size and depth bounded); ValueError for anything that is
    not a JSON object."""
    body = untrusted.loads(payload, max_bytes=MAX_PAYLOAD_BYTES, what="health")
    if not isinstance(body, dict):
        raise ValueError("health is not a JSON object")
    return read_health(body, text_chars)


def read_health(body: Mapping[str, Any], text_chars: int = MAX_TEXT_CHARS) -> HealthView:
    """The typed view of a health body (or a status file, which holds one); ``text_chars``: how much of a
    free text (the last error) to keep."""
    ident = body.get("identity")
    ident = ident if isinstance(ident, dict) else {}
    ts = body.get("ts")
    started = ident.get("started_at")
    active = _get(body, "session", "active")
    error = body.get("last_error")
    message = error.get("message") if isinstance(error, dict) else error
    models = ident.get("models")
    return HealthView(
        ts=ts if isinstance(ts, str) and _TIMESTAMP.match(ts) else None,
        version=clean_text(ident.get("version"), 40),
        config_fingerprint=clean_text(ident.get("config_fingerprint"), 64),
        python=clean_text(ident.get("python"), 40),
        os=clean_text(ident.get("os"), 80),
        backend=clean_text(ident.get("backend"), 16),
        started_at=started if isinstance(started, str) and _TIMESTAMP.match(started) else None,
        session_active=active if isinstance(active, bool) else None,
        queue_depth=_queue_depth(body),
        dropped=_first(_int(_get(body, "outbox", "dropped_total")), _int(_get(body, "mqtt", "dropped"))),
        last_error=clean_text(message, text_chars),
        hume_state=clean_text(_get(body, "hume", "state"), 24),
        device_id=clean_text(body.get("device_id"), 64),
        models=(
            tuple(clip(m, 16) for m in models[:MAX_LINKS] if isinstance(m, str))
            if isinstance(models, list)
            else None
        ),
        session_id=clean_text(_get(body, "session", "id"), 64),
        session_since=_epoch(_get(body, "session", "since")),
        last_error_level=clean_text(error.get("level"), 16) if isinstance(error, dict) else None,
        last_error_at=_epoch(error.get("at")) if isinstance(error, dict) else None,
        links=_links(body),
    )


def _first(*values: Optional[int]) -> Optional[int]:
    return next((v for v in values if v is not None), None)


def _queue_depth(body: Mapping[str, Any]) -> Optional[int]:
    """The outbox's depth; else what the MQTT link reports; else (older status files) a top-level
    ``queue_depth`` or the one link that reports one."""
    depths = [_int(v.get("queue_depth")) for v in _link_objects(body).values() if isinstance(v, dict)]
    known = [d for d in depths if d is not None]
    return _first(
        _int(_get(body, "outbox", "depth")),
        _int(_get(body, "mqtt", "queue_depth")),
        _int(body.get("queue_depth")),
        known[0] if len(known) == 1 else None,
    )


def _link_objects(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """``links`` (older status files), or else every top-level object with a ``state`` (``"hume": {...}``)."""
    links = body.get("links")
    if isinstance(links, dict):
        return links
    return {k: v for k, v in body.items() if isinstance(v, dict) and "state" in v}


def _links(body: Mapping[str, Any]) -> Tuple[LinkView, ...]:
    out = []
    for name, link in sorted(_link_objects(body).items())[:MAX_LINKS]:
        if isinstance(link, dict):
            details = tuple(
                (clip(k, 40), clip(v))
                for k, v in sorted(link.items())
                if k != "state" and not isinstance(v, (dict, list))
            )
            out.append(LinkView(clip(name, 24), clip(link.get("state", "unknown"), 24), details))
        else:
            out.append(LinkView(clip(name, 24), clip(link, 24)))
    return tuple(out)
