"""Protocol drift: what a Hume server sent that our client does not know, counted per link.

We have never spoken to the real v1 API (limited release); the emulator follows the published contract.
The day Hume adds a message type, a field or a close code, a fleet must see it: each link counts every
unknown message type, field and close code, logs each kind once (a server repeating it cannot flood the
journal), and carries the counts (and up to :data:`KINDS_MAX` kinds by name) in health. ``hume-edge
probe`` lists the same kinds from one short session. The known sets live with each version's protocol
(:mod:`agent.hume.v1.protocol`, :mod:`agent.hume.v0.protocol`): this module only counts. Pure, no I/O but
one log line per new kind.
"""

from __future__ import annotations

import logging
import re
from typing import Dict, Iterable, Tuple

_LOGGER = logging.getLogger(__name__)

KINDS = ("type", "field", "close_code", "header")
"""What can differ: a message type, a field (dotted path), a WebSocket close code, a response header."""
KINDS_MAX = 32
"""Distinct kinds kept by name per link; later new ones are counted under ``other``."""
NAME_MAX_CHARS = 60
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\[\]:/-]")


def kind_name(kind: str, name: object) -> str:
    """``kind:name`` with the server's name reduced to safe characters and :data:`NAME_MAX_CHARS`."""
    text = _UNSAFE.sub("?", str(name))[:NAME_MAX_CHARS]
    return f"{kind}:{text}"


class Drift:
    """Unknown things one link saw: totals per kind and counts per named kind (bounded)."""

    def __init__(self, link: str, logger: logging.Logger = _LOGGER) -> None:
        self.link = link
        self._logger = logger
        self.totals: Dict[str, int] = {kind: 0 for kind in KINDS}
        self.named: Dict[str, int] = {}

    def saw(self, kind: str, name: object) -> None:
        """One unknown ``kind`` (one of :data:`KINDS`) called ``name``; the first of each is logged."""
        self.totals[kind] = self.totals.get(kind, 0) + 1
        key = kind_name(kind, name)
        if key not in self.named:
            if len(self.named) >= KINDS_MAX:
                key = "other"
            else:
                self._logger.warning(
                    "hume %s: the server sent %s, which this client does not know (protocol drift: "
                    "counted in health as unknown_%ss; 'hume-edge probe' lists it)",
                    self.link,
                    key,
                    kind,
                )
        self.named[key] = self.named.get(key, 0) + 1

    def saw_all(self, kind: str, names: Iterable[object]) -> None:
        for name in names:
            self.saw(kind, name)

    def counters(self) -> Dict[str, float]:
        """``unknown_types``, ``unknown_fields``, ``unknown_close_codes`` (only those seen)."""
        return {f"unknown_{kind}s": float(n) for kind, n in self.totals.items() if n and kind != "header"}

    def kinds(self) -> Tuple[Tuple[str, int], ...]:
        """Every named kind with its count, name-sorted."""
        return tuple(sorted(self.named.items()))
