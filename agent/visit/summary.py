"""Top emotions per model over short windows, and one aggregate per visitor session: pure, no I/O.

Dashboards want a small, stable, documented message, not Hume's raw 48-dimensional stream. For every
open session the :class:`Summarizer` averages each emotion's score over a window of ``window_s``
(per face id for the face model), publishes the ``top_k`` of them (optionally smoothed across windows),
and at the session's end an aggregate over the whole visit. Language adds sentiment (the expected level
1-9 and its distribution) and toxicity. Message shapes are fixed by ``agent/schema/messages.schema.json``
(``SCHEMA_PATH``) and documented in the README; payloads carry no ``seq``: the outbox stamps it.

Observations are attributed by their ``session_id`` only, so a late reply can never land in the next
visitor's summaries: it goes to its own session while that is still open (the service may keep a
session open after its end event until in-flight replies are in), and is otherwise dropped and counted
(:meth:`Summarizer.stats`).

Interrupted sessions: :meth:`Summarizer.checkpoints` gives each open session's running totals as a small
JSON document (measured: 2.1 KB for the face model's 48 emotions, 8.4 KB with all four models and
language's sentiment and toxicity; about 0.5 ms to build), which the service stores in the outbox's
database in the same transaction as every batch of messages it queues. A session's checkpoint therefore
always covers exactly the windows already queued as summaries, and it is deleted in the transaction that
queues the session's end. A checkpoint found at start-up belongs to a session the agent never ended
(SIGKILL, power cut, watchdog): :meth:`Summarizer.recover` turns it into that session's aggregate (what was
measured and published) and its end, with reason ``interrupted``. Delivered rows are deleted from the
outbox on PUBACK, so the aggregate could not be derived from the queued messages themselves; hence the
checkpoint.

When a session ends, every model that published a summary in it gets one ``idle`` message on its summary
topic (schema ``hume-edge/idle/1``): "no current reading". Dashboards that show the latest summary (Home
Assistant's per-model sensors) then read ``unknown`` instead of the last visitor's emotions.

Windows are arrival-based: one window per session, opened at the session's start and re-opened by each
:meth:`Summarizer.flush` that closes it. Replies arrive with latency, so a window covers the replies
received in it; the capture times they carry are reported separately (``captured``), and ``ts`` is the
capture time of the newest media covered.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from agent.config import SummaryConfig
from agent.hume.types import HUME_MODELS, MODELS, Observation, Scores
from agent.messages import OutMessage, utc_iso
from agent.visit.session import END, START, Reason, SessionEvent

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema" / "messages.schema.json"
SUMMARY_SCHEMA = "hume-edge/summary/1"
SESSION_SCHEMA = "hume-edge/session/1"
AGGREGATE_SCHEMA = "hume-edge/aggregate/1"
IDLE_SCHEMA = "hume-edge/idle/1"
CHECKPOINT_VERSION = 1

MAX_FACES_LISTED = 10
"""Faces listed in one face summary (those with the most measurements); the rest are counted."""
MAX_FACES_TRACKED = 64
"""Face ids tracked per window and per session for smoothing, so a crowd cannot grow memory unbounded."""
DECIMALS = 4
"""Scores are rounded to this many decimals (before ranking, so the published order is the true one)."""
SENTIMENT_LEVELS = range(1, 10)


def top_k(means: Mapping[str, float], k: int) -> List[Dict[str, Any]]:
    """The ``k`` best scores, rounded, by descending score, ties broken by name (deterministic)."""
    rounded = sorted((-round(score, DECIMALS), name) for name, score in means.items())
    return [{"name": name, "score": -neg} for neg, name in rounded[:k]]


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


class _Means:
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
    def load(cls, obj: Any) -> _Means:
        means = cls()
        means.n = int(obj["n"])
        means.sums = {str(k): float(v) for k, v in obj["sums"].items()}
        means.counts = {str(k): int(v) for k, v in obj["counts"].items()}
        if set(means.sums) != set(means.counts) or any(c <= 0 for c in means.counts.values()):
            raise ValueError("sums and counts do not match")
        return means


class _Range:
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
    def load(cls, obj: Any) -> _Range:
        out = cls()
        for value in obj:
            out.add(None if value is None else float(value))
        return out

    def capture_range(self) -> Optional[Dict[str, str]]:
        """As a ``captured`` field: the range's ends as UTC timestamps."""
        if self.lo is None or self.hi is None:
            return None
        return {"first": utc_iso(self.lo), "last": utc_iso(self.hi)}


class _ModelStats:
    """What one model said during one window (per face id) or one whole session (faces merged)."""

    def __init__(self, per_face: bool) -> None:
        self.per_face = per_face
        self.emotions: Dict[str, _Means] = {}
        self.sentiment = _Means()
        self.toxicity = _Means()
        self.measurements = 0
        self.warnings = 0
        self.captured = _Range()
        self.stream = _Range()

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
                means = self.emotions[key] = _Means()
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
    def load(cls, obj: Any) -> _ModelStats:
        stats = cls(per_face=False)
        stats.measurements = int(obj["measurements"])
        stats.warnings = int(obj["warnings"])
        if obj["emotions"] is not None:
            stats.emotions[""] = _Means.load(obj["emotions"])
        stats.sentiment = _Means.load(obj["sentiment"])
        stats.toxicity = _Means.load(obj["toxicity"])
        stats.captured = _Range.load(obj["captured"])
        return stats

    def language_fields(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        sentiment = sentiment_summary(self.sentiment.means())
        if sentiment is not None:
            out["sentiment"] = sentiment
        if self.toxicity.n:
            out["toxicity"] = {name: round(p, DECIMALS) for name, p in sorted(self.toxicity.means().items())}
        return out


class _Session:
    """One open session: its current window, its running totals and its smoothing state."""

    def __init__(self, start: SessionEvent, wall: float, per_face: bool = True) -> None:
        self.per_face = per_face
        self.start = start
        self.start_wall = wall
        self.window_open = wall
        self.window: Dict[str, _ModelStats] = {}
        self.totals: Dict[str, _ModelStats] = {}
        self.smoothed: OrderedDict[Tuple[str, str], Dict[str, float]] = OrderedDict()
        self.published: Set[str] = set()
        """Models that published a summary in this session: each gets an ``idle`` message at its end."""

    def add(self, obs: Observation) -> None:
        for stats, per_face in ((self.window, self.per_face and obs.model == "face"), (self.totals, False)):
            if obs.model not in stats:
                stats[obs.model] = _ModelStats(per_face)
            stats[obs.model].add(obs)

    def smoothed_top(self, model: str, key: str, means: Dict[str, float], cfg: SummaryConfig) -> List[Any]:
        previous = self.smoothed.pop((model, key), None)
        current = smooth(previous, means, cfg.smoothing)
        self.smoothed[(model, key)] = current
        if len(self.smoothed) > MAX_FACES_TRACKED + len(MODELS):
            self.smoothed.popitem(last=False)  # the longest unseen face
        return top_k(current, cfg.top_k)


@dataclasses.dataclass(frozen=True)
class _Ending:
    """What closing a session needs, whether it ended now or is recovered from a checkpoint."""

    session_id: str
    totals: Mapping[str, _ModelStats]
    started: float
    """Wall clock of the start."""
    ended: float
    """Wall clock the measurement covers up to (now, or the checkpoint's time)."""
    decided: float
    """Wall clock when the end was decided (``ts`` of the end and idle messages)."""
    duration_s: float
    reason: str
    published: Set[str]


class Summarizer:
    """Turns observations into summary, session and aggregate messages (see module doc).

    Call :meth:`session_started` / :meth:`session_ended` with the tracker's events, :meth:`add` with every
    observation, and :meth:`flush` about once a second; publish every returned message in order.
    ``wall`` arguments are ``time.time()`` readings supplied by the caller.
    """

    def __init__(self, cfg: SummaryConfig, device_id: str, *, per_face: bool = True) -> None:
        """``per_face`` False: face summaries carry one ``top`` for all faces (privacy.per_face_detail)."""
        if not device_id:
            raise ValueError("device_id: must not be empty (it names the device in every message)")
        self._cfg = cfg
        self._device = device_id
        self._per_face = per_face
        self._open: Dict[str, _Session] = {}
        self._dropped_late = 0
        self._dropped_idle = 0

    def session_started(self, ev: SessionEvent, wall: float) -> List[OutMessage]:
        """Open a session; returns its retained ``session`` start message."""
        if ev.kind != START:
            raise ValueError(f"session_started: event kind {ev.kind!r}, expected 'start'")
        if ev.session_id in self._open:
            raise ValueError(f"session_started: session {ev.session_id} is already open")
        self._open[ev.session_id] = _Session(ev, wall, self._per_face)
        payload = self._head(SESSION_SCHEMA, ev.session_id, wall)
        payload.update(event=START, reason=ev.reason)
        return [OutMessage("session", payload, retain=True)]

    def add(self, obs: Observation) -> None:
        """Count an observation into its own session's window and totals, or drop and count it."""
        if obs.model not in MODELS:
            raise ValueError(f"observation model {obs.model!r}: must be one of {', '.join(MODELS)}")
        session = self._open.get(obs.session_id) if obs.session_id is not None else None
        if session is not None:
            session.add(obs)
        elif obs.session_id is None:
            self._dropped_idle += 1
        else:
            self._dropped_late += 1

    def flush(self, wall_now: float) -> List[OutMessage]:
        """Summaries of every window at least ``window_s`` old; an empty window yields nothing."""
        out: List[OutMessage] = []
        for session in self._open.values():
            # A wall clock stepped back (NTP) restarts the window rather than stalling it for the step.
            session.window_open = min(session.window_open, wall_now)
            if wall_now - session.window_open >= self._cfg.window_s:
                out.extend(self._close_window(session, wall_now))
        return out

    def session_ended(self, ev: SessionEvent, wall: float) -> List[OutMessage]:
        """Close a session: its last (possibly short) window, its aggregate, its retained end message, and
        an ``idle`` message for every model that published in it."""
        if ev.kind != END:
            raise ValueError(f"session_ended: event kind {ev.kind!r}, expected 'end'")
        session = self._open.pop(ev.session_id, None)
        if session is None:
            raise ValueError(f"session_ended: session {ev.session_id} is not open")
        out = self._close_window(session, wall)
        duration = round(max(0.0, ev.at - session.start.at), 3)
        ending = _Ending(
            ev.session_id,
            session.totals,
            session.start_wall,
            wall,
            wall,
            duration,
            ev.reason,
            session.published,
        )
        return out + self._ending(ending)

    def checkpoints(self, wall: float) -> Dict[str, str]:
        """Each open session's totals as JSON, by session id (see the module doc); ``wall`` = now.

        Store them together with the messages of the same call sequence: a checkpoint then covers exactly
        the summaries already queued (the totals of a window still open are part of it too, and are
        published by :meth:`recover` as what was measured).
        """
        out: Dict[str, str] = {}
        for sid, session in self._open.items():
            doc = {
                "v": CHECKPOINT_VERSION,
                "reason": session.start.reason,
                "started": session.start_wall,
                "at": max(wall, session.start_wall),
                "published": sorted(session.published),
                "totals": {model: stats.dump() for model, stats in session.totals.items()},
            }
            out[sid] = json.dumps(doc, separators=(",", ":"), sort_keys=True)
        return out

    @staticmethod
    def bare_checkpoint(wall: float) -> str:
        """A checkpoint for a session whose own one is unreadable: nothing measured, starting at ``wall``,
        every model the agent can run published (so each gets its ``idle`` message)."""
        doc = {"v": CHECKPOINT_VERSION, "reason": "", "started": wall, "at": wall, "published": HUME_MODELS}
        return json.dumps(dict(doc, totals={}))

    def recover(self, session_id: str, checkpoint: str, wall: float) -> List[OutMessage]:
        """End a session the agent never ended (reason ``interrupted``) from its stored checkpoint.

        Returns its aggregate (of the totals checkpointed), its retained end and the ``idle`` messages.
        The aggregate's ``ended`` and the ``duration_s`` of both stop at the checkpoint's time, the last
        moment the agent is known to have measured the visit; ``ts`` of the end is ``wall`` (now), when it
        was decided. An unreadable checkpoint raises ValueError naming what is wrong.
        """
        if not session_id:
            raise ValueError("recover: empty session id")
        try:
            doc = json.loads(checkpoint)
            if doc["v"] != CHECKPOINT_VERSION:
                raise ValueError(f"version {doc['v']!r}, expected {CHECKPOINT_VERSION}")
            started = float(doc["started"])
            at = max(started, float(doc["at"]))
            totals = {str(m): _ModelStats.load(v) for m, v in doc["totals"].items() if m in MODELS}
            published = {str(m) for m in doc["published"] if m in MODELS}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"checkpoint of session {session_id} is unreadable: {exc!r}") from exc
        duration = round(at - started, 3)
        ending = _Ending(session_id, totals, started, at, wall, duration, Reason.INTERRUPTED, published)
        return self._ending(ending)

    def stats(self) -> Dict[str, int]:
        """Counters for health messages: open sessions, observations dropped as late or idle."""
        return {
            "open_sessions": len(self._open),
            "dropped_late": self._dropped_late,
            "dropped_idle": self._dropped_idle,
        }

    # ----------------------------------------------------------------------------------------------

    def _head(self, schema: str, session_id: str, ts: float) -> Dict[str, Any]:
        return {"schema": schema, "device": self._device, "session": session_id, "ts": utc_iso(ts)}

    def _close_window(self, session: _Session, wall: float) -> List[OutMessage]:
        out = []
        for model in MODELS:
            stats = session.window.get(model)
            if stats is not None and stats.measurements:
                out.append(self._summary(session, model, stats, wall))
                session.published.add(model)
        session.window = {}
        session.window_open = wall
        return out

    def _summary(self, session: _Session, model: str, stats: _ModelStats, wall: float) -> OutMessage:
        assert stats.captured.hi is not None
        payload = self._head(SUMMARY_SCHEMA, session.start.session_id, stats.captured.hi)
        payload.update(
            model=model,
            window={"start": utc_iso(session.window_open), "end": utc_iso(wall)},
            captured=stats.captured.capture_range(),
            measurements=stats.measurements,
            warnings=stats.warnings,
        )
        if stats.stream.lo is not None and stats.stream.hi is not None:
            payload["stream"] = {"begin_s": stats.stream.lo, "end_s": stats.stream.hi}
        if stats.per_face:
            ranked = sorted(stats.emotions.items(), key=lambda kv: (-kv[1].n, kv[0]))
            listed = sorted(ranked[:MAX_FACES_LISTED])
            payload["faces"] = [
                {
                    "face_id": face_id,
                    "measurements": means.n,
                    "top": session.smoothed_top(model, face_id, means.means(), self._cfg),
                }
                for face_id, means in listed
            ]
            payload["faces_omitted"] = len(ranked) - len(listed)
        else:
            means = stats.emotions.get("")
            payload["top"] = session.smoothed_top(model, "", means.means() if means else {}, self._cfg)
        if model == "language":
            payload.update(stats.language_fields())
        return OutMessage(f"summary/{model}", payload)

    def _ending(self, e: _Ending) -> List[OutMessage]:
        """Aggregate, retained session end, then one ``idle`` per model that published (MODELS order)."""
        end = self._head(SESSION_SCHEMA, e.session_id, e.decided)
        end.update(event=END, reason=e.reason, started=utc_iso(e.started), duration_s=e.duration_s)
        out = [self._aggregate(e), OutMessage("session", end, retain=True)]
        for model in MODELS:
            if model in e.published:
                idle = self._head(IDLE_SCHEMA, e.session_id, e.decided)
                idle.update(model=model, reason=e.reason)
                out.append(OutMessage(f"summary/{model}", idle))
        return out

    def _aggregate(self, e: _Ending) -> OutMessage:
        models: Dict[str, Any] = {}
        captured = _Range()
        for model in MODELS:
            stats = e.totals.get(model)
            if stats is None:
                continue
            captured.add(stats.captured.lo)
            captured.add(stats.captured.hi)
            means = stats.emotions.get("")
            entry: Dict[str, Any] = {
                "measurements": stats.measurements,
                "warnings": stats.warnings,
                "top": top_k(means.means() if means else {}, self._cfg.top_k),
            }
            if model == "language":
                entry.update(stats.language_fields())
            models[model] = entry
        payload = self._head(AGGREGATE_SCHEMA, e.session_id, e.ended if captured.hi is None else captured.hi)
        payload.update(
            started=utc_iso(e.started),
            ended=utc_iso(e.ended),
            duration_s=e.duration_s,
            reason=e.reason,
            models=models,
        )
        if captured.hi is not None:
            payload["captured"] = captured.capture_range()
        return OutMessage("aggregate", payload)
