"""The fleet as a pure fold: ``status`` and ``health`` messages (retained or live) in, a report out.

Every decision of ``hume-edge fleet`` is made here, on plain bytes: which topics count, what is ignored and
why (counted in :class:`Ignored`), which config fingerprint most kiosks run, which kiosks ``--expect``
did not name (they neither vote in the majority nor are judged by it).
"""

from __future__ import annotations

import collections
import dataclasses
import fnmatch
from typing import Dict, List, Optional, Sequence, Tuple

from agent.ops.health_view import FLEET_FIELDS, MAX_PAYLOAD_BYTES, HealthView, clean_text, parse_health

MAX_KIOSKS = 10_000
MAX_DEVICE_CHARS = 128
STATES = ("online", "stopped", "offline")
"""What an agent (or its last will) writes to ``status``; a kiosk with no status yet shows ``unknown``."""


@dataclasses.dataclass(frozen=True)
class KioskRow:
    """One kiosk as the fleet view shows it."""

    device: str
    state: str
    """``online``, ``stopped``, ``offline`` (the agent's last will fired), or ``unknown`` (no status)."""
    config_differs: bool
    """Its config fingerprint is not the one most kiosks run."""
    health: HealthView
    expected: bool = True
    """It matches ``--expect`` (always true without it). An unexpected one is shown and marked, and neither
    votes in the config majority nor is judged by it: any account that may write under the prefix can
    publish a kiosk there."""

    def to_json(self) -> Dict[str, object]:
        return {
            "device": self.device,
            "state": self.state,
            "expected": self.expected,
            "config_differs": self.config_differs,
            **{name: getattr(self.health, name) for name in FLEET_FIELDS},
        }


@dataclasses.dataclass(frozen=True)
class Ignored:
    """Messages that changed nothing, by reason."""

    too_large: int = 0
    bad_json: int = 0
    bad_status: int = 0
    bad_topic: int = 0
    too_many_kiosks: int = 0

    @property
    def total(self) -> int:
        return sum(dataclasses.astuple(self))


@dataclasses.dataclass(frozen=True)
class FleetReport:
    """The whole fleet at one moment: kiosks sorted by device id."""

    kiosks: Tuple[KioskRow, ...]
    majority_fingerprint: Optional[str]
    """The config fingerprint most kiosks report; None when no single one leads (a tie, or none known)."""
    ignored: Ignored

    def to_json(self) -> Dict[str, object]:
        counts = collections.Counter(k.state for k in self.kiosks)
        return {
            "kiosks": [k.to_json() for k in self.kiosks],
            "counts": {state: counts.get(state, 0) for state in (*STATES, "unknown")},
            "majority_fingerprint": self.majority_fingerprint,
            "config_differs": [k.device for k in self.kiosks if k.config_differs],
            "unexpected": [k.device for k in self.kiosks if not k.expected],
            "ignored": dataclasses.asdict(self.ignored),
        }


@dataclasses.dataclass
class _Kiosk:
    state: Optional[str] = None
    health: Optional[HealthView] = None


class FleetFold:
    """Folds ``status`` and ``health`` messages (retained or live) into per-kiosk state. No I/O."""

    def __init__(self, prefix: str, max_kiosks: int = MAX_KIOSKS, expect: Sequence[str] = ()) -> None:
        self.prefix = prefix
        self.max_kiosks = max_kiosks
        self.expect = tuple(expect)
        """Device ids or shell-style patterns (``kiosk-*``) of the kiosks the admin runs; empty: all."""
        self._kiosks: Dict[str, _Kiosk] = {}
        self._ignored: Dict[str, int] = {f.name: 0 for f in dataclasses.fields(Ignored)}

    @property
    def topics(self) -> List[str]:
        """What to subscribe to."""
        return [f"{self.prefix}/+/status", f"{self.prefix}/+/health"]

    def _device(self, topic: str) -> Optional[Tuple[str, str]]:
        head = f"{self.prefix}/"
        if not topic.startswith(head):
            return None
        device, _, kind = topic[len(head) :].partition("/")
        if kind not in ("status", "health") or not device or len(device) > MAX_DEVICE_CHARS:
            return None
        if clean_text(device) != device:  # control characters: not a device id an agent accepts
            return None
        return device, kind

    def receive(self, topic: str, payload: bytes) -> None:
        """One message; an empty payload clears that part (a retained message was deleted)."""
        parsed = self._device(topic)
        if parsed is None:
            self._ignored["bad_topic"] += 1
            return
        device, kind = parsed
        if len(payload) > MAX_PAYLOAD_BYTES:  # also refused by untrusted.loads: counted apart here
            self._ignored["too_large"] += 1
            return
        kiosk = self._kiosks.get(device)
        if kiosk is None:
            if not payload:
                return
            if len(self._kiosks) >= self.max_kiosks:
                self._ignored["too_many_kiosks"] += 1
                return
            kiosk = _Kiosk()
        if kind == "status":
            word = payload.strip().decode("ascii", errors="replace")
            if payload and word not in STATES:
                self._ignored["bad_status"] += 1
                return
            kiosk.state = word or None
        else:
            try:
                kiosk.health = parse_health(payload) if payload else None
            except ValueError:  # untrusted.UntrustedInputError: not JSON, or nested too deeply
                self._ignored["bad_json"] += 1
                return
        if kiosk.state is None and kiosk.health is None:
            self._kiosks.pop(device, None)
        else:
            self._kiosks[device] = kiosk

    def expected(self, device: str) -> bool:
        """Whether ``device`` matches ``--expect`` (case-sensitive, as MQTT topics are)."""
        return not self.expect or any(fnmatch.fnmatchcase(device, p) for p in self.expect)

    def report(self) -> FleetReport:
        """The fleet now, with kiosks whose config differs from the majority, and unexpected ones, flagged."""
        fingerprints = collections.Counter(
            k.health.config_fingerprint
            for device, k in self._kiosks.items()
            if k.health is not None and k.health.config_fingerprint and self.expected(device)
        ).most_common(2)
        majority = None
        if fingerprints and (len(fingerprints) == 1 or fingerprints[0][1] > fingerprints[1][1]):
            majority = fingerprints[0][0]
        rows = []
        for device in sorted(self._kiosks):
            kiosk = self._kiosks[device]
            health = kiosk.health or HealthView()
            fp = health.config_fingerprint
            expected = self.expected(device)
            rows.append(
                KioskRow(
                    device=device,
                    state=kiosk.state or "unknown",
                    config_differs=expected and majority is not None and fp is not None and fp != majority,
                    health=health,
                    expected=expected,
                )
            )
        return FleetReport(tuple(rows), majority, Ignored(**self._ignored))
