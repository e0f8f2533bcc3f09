"""The organisation's request limit, shared by every key of one organisation and by v0 and v1 alike.

Hume's limits page (Expression Measurement, 2026-12): "each organization can make up to 600 requests per
minute". What counts, chosen here where Hume is silent:

- **A session open counts** (an accepted WebSocket upgrade, v0 or v1): it is the one request a realtime
  client makes. Media frames do not: one kiosk at 3 fps would spend 180 of the 600 by itself, and each
  session already has its own send rate (1 s of audio per second, 3 frames per second).
- **A refused handshake does not count**: neither a 401 (the key names no organisation) nor a 429 (the
  request was not served). So a fleet's retries cost the budget nothing; they cost only load. The limit is
  a sliding window: at most ``requests`` opens in any ``window_s`` (60 s unless a test scales it down).

Over the limit the caller answers HTTP 429 with ``Retry-After`` (seconds until the oldest counted open
leaves the window), or, for v1 with ``answer = "error"``, accepts and ends the session with the realtime
``rate_limited`` error: Hume documents neither for the handshake, so the agent must survive both.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from typing import Callable, Deque, Dict, List, Mapping, Optional, Tuple

DEFAULT_REQUESTS_PER_MIN = 600
"""Hume's documented organisation limit."""
DEFAULT_WINDOW_S = 60.0
DEFAULT_ORG = "default"
"""The organisation of every key not mapped to another one."""
ANSWERS = ("handshake", "error")
"""How v1 answers over the limit: HTTP 429 at the handshake, or the realtime ``rate_limited`` error."""
EVENTS_KEPT = 200_000
"""Opens and refusals remembered for benchmarks and ``/_emulator/.../stats`` (oldest dropped)."""
RETRY_AFTER_HEADER = "Retry-After"
STATS_EVENTS = 1000
"""The latest judged handshakes in ``stats()`` (time on this host's monotonic clock, organisation,
admitted): enough for a test to count opens per window."""


@dataclasses.dataclass(frozen=True)
class OrgLimitSettings:
    """``--org-requests-per-min``, ``--org-window-s``, ``--org KEY=ORG``, ``--org-limit-answer``."""

    requests: int = DEFAULT_REQUESTS_PER_MIN
    """Opens allowed per organisation in any ``window_s`` (0: unlimited)."""
    window_s: float = DEFAULT_WINDOW_S
    orgs: Tuple[Tuple[str, str], ...] = ()
    """(key, organisation) pairs; unmapped keys belong to :data:`DEFAULT_ORG`."""
    answer: str = "handshake"

    def __post_init__(self) -> None:
        if isinstance(self.requests, bool) or not isinstance(self.requests, int) or self.requests < 0:
            raise ValueError(f"org requests per window must be an integer >= 0, got {self.requests!r}")
        if not self.window_s > 0 or not math.isfinite(self.window_s):
            raise ValueError(f"org window must be > 0 seconds, got {self.window_s!r}")
        if self.answer not in ANSWERS:
            raise ValueError(f"org limit answer must be one of {', '.join(ANSWERS)}, got {self.answer!r}")
        for key, org in self.orgs:
            if not key or not org:
                raise ValueError(f"org mapping needs KEY=ORG, both non-empty, got {key!r}={org!r}")


def parse_org_mapping(specs: List[str]) -> Tuple[Tuple[str, str], ...]:
    """``["key-a=acme", ...]`` as pairs; ValueError naming a spec without ``=``."""
    out = []
    for spec in specs:
        key, sep, org = spec.partition("=")
        if not sep or not key.strip() or not org.strip():
            raise ValueError(f"--org {spec!r}: expected KEY=ORGANISATION")
        out.append((key.strip(), org.strip()))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class OrgEvent:
    """One handshake the limit judged: when (the limit's clock), for which organisation, let in or not."""

    at: float
    org: str
    admitted: bool


class OrgLimit:
    """Sliding-window open counts per organisation. One instance serves v0 and v1 of one emulator."""

    def __init__(
        self, settings: Optional[OrgLimitSettings] = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings or OrgLimitSettings()
        self._orgs: Mapping[str, str] = dict(self.settings.orgs)
        self._clock = clock
        self._opens: Dict[str, Deque[float]] = {}
        self.admitted: Dict[str, int] = collections.Counter()
        self.refused: Dict[str, int] = collections.Counter()
        self.events: Deque[OrgEvent] = collections.deque(maxlen=EVENTS_KEPT)

    def org_of(self, key: str) -> str:
        return self._orgs.get(key, DEFAULT_ORG)

    def admit(self, key: str) -> Optional[float]:
        """Count one open for ``key``'s organisation: None if within the limit, else the seconds until
        the oldest counted open leaves the window (what ``Retry-After`` says)."""
        org, now = self.org_of(key), self._clock()
        limit, window = self.settings.requests, self.settings.window_s
        opens = self._opens.setdefault(org, collections.deque())
        while opens and now - opens[0] >= window:
            opens.popleft()
        if limit and len(opens) >= limit:
            self.refused[org] += 1
            self.events.append(OrgEvent(now, org, False))
            return max(0.0, opens[0] + window - now)
        if limit:
            opens.append(now)
        self.admitted[org] += 1
        self.events.append(OrgEvent(now, org, True))
        return None

    @staticmethod
    def retry_after_header(wait_s: float) -> Dict[str, str]:
        """``Retry-After`` in whole seconds (RFC 9110 delay-seconds), never 0 while refusing."""
        return {RETRY_AFTER_HEADER: str(max(1, math.ceil(wait_s)))}

    def refusal_text(self, key: str) -> str:
        s = self.settings
        return (
            f"organization {self.org_of(key)!r} is over its limit of {s.requests} requests per "
            f"{s.window_s:g} s; retry later"
        )

    def stats(self) -> Dict[str, object]:
        s = self.settings
        return {
            "requests": s.requests,
            "window_s": s.window_s,
            "answer": s.answer,
            "admitted": dict(self.admitted),
            "refused": dict(self.refused),
            "events": [[e.at, e.org, e.admitted] for e in list(self.events)[-STATS_EVENTS:]],
        }
