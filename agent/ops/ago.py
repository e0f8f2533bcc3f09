"""How long ago, in words read at a glance: ``12 s ago``, ``4 min ago``, ``3.5 h ago``, ``2 d ago``.

One helper for ``hume-edge status`` (snapshot age, uptime, pause, last error) and ``hume-edge fleet``
(each kiosk's last health). Pure.
"""

from __future__ import annotations

import datetime
from typing import Optional


def ago(seconds: float) -> str:
    """``seconds`` in the past as words (a negative age, a clock stepped back, reads ``0 s ago``)."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def ago_iso(iso: Optional[str], now: float) -> str:
    """:func:`ago` of a message's UTC timestamp (``2026-11-24T21:40:52.123Z``), ``-`` when there is none."""
    if iso is None:
        return "-"
    stamp = datetime.datetime.strptime(iso.replace("+00:00", "Z")[:19], "%Y-%m-%dT%H:%M:%S")
    return ago(now - stamp.replace(tzinfo=datetime.timezone.utc).timestamp())
