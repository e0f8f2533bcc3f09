"""A visit's running statistics: score means per name, capture-time ranges, per-model (and per-face) totals.

Pure arithmetic the summarizer (``agent.visit.summary``) is built on; every class dumps to and loads from
the plain JSON of a session checkpoint, so a visit interrupted by a crash is recovered with what it had.
``top_k``, ``smooth`` and ``sentiment_summary`` are what a summary shows of them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Set

from agent.hume.types import Observation, Scores
from agent.messages import utc_iso

MAX_FACES_LISTED = 10
"""Faces listed in one face summary (those with the most measurements); the rest are counted."""
MAX_FACES_TRACKED = 64
"""Face ids tracked per window and per session for smoothing, so a crowd cannot grow memory unbounded."""
DECIMALS = 4
"""Scores are rounded to this many decimals (before ranking, so the published order is the true one)."""
SENTIMENT_LEVELS = range(1, 10)


def top_k(means: Mapping[str, float], k: int) -> List[Dict[str, Any]]:
    """The ``k`` best scores, rounded, by descending score, ties broken by name (deterministic).

    Names are lower case whichever backend measured them (v1's are, v0's are capitalised), so a dashboard
    compares one spelling; where Hume's differs it is kept as ``hume_name`` (``agent.visit.summary``).
    """
    rounded = sorted((-round(score, DECIMALS), name.lower(), name) for name, score in means.items())
    out: List[Dict[str, Any]] = []
    listed: Set[str] = set()
    for neg, lower, name in rounded:
        if len(out) == k:
            break
        if lower in listed:
            continue  # two labels that differ only in case: the higher score speaks for both
        listed.add(lower)
        entry: Dict[str, Any] = {"name": lower, "score": -neg}
        if name != lower:
            entry["hume_name"] = name
        out.append(entry)
    return out


def sentiment_summary(means: Mapping[str, float]) -> Optional[Dict[str, Any]]:
    """Expected level (sum of level x p / sum of p) and the distribution; None without usable levels."""
    levels = {int(n): p for n, p in means.items() if n.isdigit() and int(n) in SENTIMENT_LEVELS}
    total = sum(levels.values())
    if total <= 0:
        return None
    expected = sum(level * p for level, p in levels.items()) / total
    return {
        "expected": min(9.0, max(1.0, round(expected, 3))),
        "distribution": {str(level): round(p, DECIMALS) for level, p in sorted(levels.items())},
    }


def smooth(
    previous: Optional[Mapping[str, float]], current: Mapping[str, float], alpha: float
) -> Dict[str, float]:
    """Exponential smoothing: ``alpha`` x previous + (1 - alpha) x current, per name in ``current``.

    A convex combination, so scores stay within the bounds of their inputs; names absent from the
    current window are dropped rather than decayed, so a summary lists only what was measured now.
    """
    if previous is None or alpha <= 0:
        return dict(current)
    return {name: alpha * previous.get(name, cur) + (1 - alpha) * cur for name, cur in current.items()}


class Means:
    """Running sums and counts per name; each name's mean covers the measurements that had it."""

    __slots__ = ("counts", "n", "sums")

    def __init__(self) -> None:
        self.sums: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}
        self.n = 0

    def add(self, scores: Scores) -> None:
        self.n += 1
        for s in scores:
            self.sums[s.name] = self.sums.get(s.name, 0.0) + s.score
            self.counts[s.name] = self.counts.get(s.name, 0) + 1

    def means(self) -> Dict[str, float]:
        # Hume's scores lie in [0, 1]; clamping keeps one odd reply from making a message invalid.
        return {name: min(1.0, max(0.0, total / self.counts[name])) for name, total in self.sums.items()}

    def dump(self) -> Dict[str, Any]:
        # 7 decimals: a mean moves by < 1e-7, invisible at the 4 published decimals; 16 % fewer bytes.
        return {"n": self.n, "sums": {k: round(v, 7) for k, v in self.sums.items()}, "counts": self.counts}

    @classmethod
    def load(cls, obj: Any) -> Means:
        means = cls()
        means.n = int(obj["n"])
        means.sums = {str(k): float(v) for k, v in obj["sums"].items()}
        means.counts = {str(k): int(v) for k, v in obj["counts"].items()}
        if set(means.sums) != set(means.counts) or any(c <= 0 for c in means.counts.values()):
            raise ValueError("sums and counts do not match")
        return means


class Range:
    """Smallest and largest of the values seen (None until one is)."""

    __slots__ = ("hi", "lo")

    def __init__(self) -> None:
        self.lo: Optional[float] = None
        self.hi: Optional[float] = None

    def add(self, value: Optional[float]) -> None:
        if value is None:
            return
        self.lo = value if self.lo is None else min(self.lo, value)
        self.hi = value if self.hi is None else max(self.hi, value)

    def dump(self) -> List[Optional[float]]:
        return [self.lo, self.hi]

    @classmethod
    def load(cls, obj: Any) -> Range:
        out = cls()
        for value in obj:
            out.add(None if value is None else float(value))
        return out

    def capture_range(self) -> Optional[Dict[str, str]]:
        """As a ``captured`` field: the range's ends as UTC timestamps."""
        if self.lo is None or self.hi is None:
            return None
        return {"first": utc_iso(self.lo), "last": utc_iso(self.hi)}


class ModelStats:
    """What one model said during one window (per face id) or one whole session (faces merged)."""

    def __init__(self, per_face: bool) -> None:
        self.per_face = per_face
        self.emotions: Dict[str, Means] = {}
        self.sentiment = Means()
        self.toxicity = Means()
        self.measurements = 0
        self.warnings = 0
        self.captured = Range()
        self.stream = Range()

    def add(self, obs: Observation) -> None:
        self.captured.add(obs.captured_at)
        if obs.warning_code is not None:
            self.warnings += 1
        for m in obs.measurements:
            self.measurements += 1
            self.stream.add(m.begin_s)
            self.stream.add(m.end_s)
            key = (m.face_id or "unknown") if self.per_face else ""
            means = self.emotions.get(key)
            if means is None and len(self.emotions) < MAX_FACES_TRACKED:
                means = self.emotions[key] = Means()
            if means is not None:
                means.add(m.emotions)
            if m.sentiment:
                self.sentiment.add(m.sentiment)
            if m.toxicity:
                self.toxicity.add(m.toxicity)

    def dump(self) -> Dict[str, Any]:
        """The session totals (faces merged) as JSON-ready values, for a checkpoint."""
        means = self.emotions.get("")
        return {
            "measurements": self.measurements,
            "warnings": self.warnings,
            "emotions": means.dump() if means is not None else None,
            "sentiment": self.sentiment.dump(),
            "toxicity": self.toxicity.dump(),
            "captured": self.captured.dump(),
        }

    @classmethod
    def load(cls, obj: Any) -> ModelStats:
        stats = cls(per_face=False)
        stats.measurements = int(obj["measurements"])
        stats.warnings = int(obj["warnings"])
        if obj["emotions"] is not None:
            stats.emotions[""] = Means.load(obj["emotions"])
        stats.sentiment = Means.load(obj["sentiment"])
        stats.toxicity = Means.load(obj["toxicity"])
        stats.captured = Range.load(obj["captured"])
        return stats

    def language_fields(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        sentiment = sentiment_summary(self.sentiment.means())
        if sentiment is not None:
            out["sentiment"] = sentiment
        if self.toxicity.n:
            out["toxicity"] = {name: round(p, DECIMALS) for name, p in sorted(self.toxicity.means().items())}
        return out
