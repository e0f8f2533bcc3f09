"""Top emotions per model over short windows, and one aggregate per visitor session: pure, no I/O.

Dashboards want a small, stable, documented message, not Hume's raw 48-dimensional stream. For every
open session the :class:`Summarizer` averages each emotion's score over a window of ``window_s``
(per face id for the face model), publishes the ``top_k`` of them (optionally smoothed across windows),
and at the session's end an aggregate over the whole visit. Language adds sentiment (the expected level
1-9 and its distribution) and toxicity. Message shapes are fixed by ``agent/schema/messages.schema.json``
(``SCHEMA_PATH``) and documented in docs/mqtt.md; payloads carry no ``seq``: the outbox stamps it.

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

A model's reading lasts until an ``idle`` message (schema ``hume-edge/idle/1``: "no current reading") on its
summary topic ends it: when the session ends (reason: the end's), when a window of the face model has no
face (``no_face``) or a window of a voice model no measurement, i.e. after silence of at least a whole
window (``silence``); at start-up ``state/<model>`` says ``idle`` too (reason ``start``: nothing is current
after a restart), published directly rather than queued, so the stream is not touched by a restart.
Each reading gets one idle message, so Home Assistant's per-model sensors read ``unknown`` while the kiosk
is empty or quiet instead of the last face for the rest of the visit (about 5 s in presence mode, the whole
visit in a command-started one). The language model keeps its reading until the visit ends: text comes
once per thing typed or said, and a window without any is the normal case, not an absence.

Every summary and idle message names ``state/<model>`` as its live-state topic (``OutMessage.state``): the
publisher keeps the latest one there, retained, published directly and never from a backlog, so a late
subscriber reads the current reading (or idle) of every model, and a replayed backlog never moves it. The
session's start and end do the same on ``state/session``.

Labels are published in lower case whichever backend measured them (v1's are lower case, v0's
capitalised), so ``state == 'joy'`` holds on both; where Hume's own spelling differs it is kept beside the
name as ``hume_name`` (v0: ``{"name": "joy", "hume_name": "Joy"}``).

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
from typing import Any, Dict, FrozenSet, List, Mapping, Sequence, Set, Tuple

from agent.config import SummaryConfig
from agent.hume.types import HUME_MODELS, MODELS, Observation
from agent.messages import SESSION_STATE_TOPIC, OutMessage, state_topic, utc_iso
from agent.visit.session import END, START, Reason, SessionEvent
from agent.visit.stats import (
    MAX_FACES_LISTED,
    MAX_FACES_TRACKED,
    ModelStats,
    Range,
    smooth,
    top_k,
)

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema" / "messages.schema.json"
SUMMARY_SCHEMA = "hume-edge/summary/1"
SESSION_SCHEMA = "hume-edge/session/1"
AGGREGATE_SCHEMA = "hume-edge/aggregate/1"
IDLE_SCHEMA = "hume-edge/idle/1"
IDLE_NO_FACE = "no_face"
"""Idle reason: a window of the face model without a face."""
IDLE_SILENCE = "silence"
"""Idle reason: a window of a voice model without a measurement (silence of at least a window)."""
IDLE_START = "start"
"""Idle reason: the agent started; no reading is current."""
EMPTY_WINDOW_IDLE = {"face": IDLE_NO_FACE, "prosody": IDLE_SILENCE, "burst": IDLE_SILENCE}
"""Models whose reading an empty window ends, and the idle reason it gives (language: see module doc)."""
CHECKPOINT_VERSION = 1


class _Session:
    """One open session: its current window, its running totals and its smoothing state."""

    def __init__(self, start: SessionEvent, wall: float, per_face: bool = True) -> None:
        self.per_face = per_face
        self.start = start
        self.start_wall = wall
        self.window_open = wall
        self.window: Dict[str, ModelStats] = {}
        self.totals: Dict[str, ModelStats] = {}
        self.smoothed: OrderedDict[Tuple[str, str], Dict[str, float]] = OrderedDict()
        self.showing: Set[str] = set()
        """Models whose last message in this session is a summary: each gets an ``idle`` message when its
        reading ends (an empty window, or the session's end)."""

    def add(self, obs: Observation) -> None:
        for stats, per_face in ((self.window, self.per_face and obs.model == "face"), (self.totals, False)):
            if obs.model not in stats:
                stats[obs.model] = ModelStats(per_face)
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
    totals: Mapping[str, ModelStats]
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
        return [OutMessage("session", payload, retain=True, state=SESSION_STATE_TOPIC)]

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
        out = self._close_window(session, wall, ending=True)
        duration = round(max(0.0, ev.at - session.start.at), 3)
        ending = _Ending(
            ev.session_id,
            session.totals,
            session.start_wall,
            wall,
            wall,
            duration,
            ev.reason,
            session.showing,
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
                "published": sorted(session.showing),  # the key predates the empty-window idle
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

    def idle_at_start(self, models: Sequence[str], wall: float) -> Dict[str, Dict[str, Any]]:
        """The live state of every model at start-up, by state topic: an ``idle`` payload (reason
        ``start``, no session, no ``seq``: it is published directly, never queued) that
        ``state/<model>`` shows until the model's first reading (see the module doc)."""
        return {
            state_topic(model): {
                "schema": IDLE_SCHEMA,
                "device": self._device,
                "ts": utc_iso(wall),
                "model": model,
                "reason": IDLE_START,
            }
            for model in models
        }

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
            totals = {str(m): ModelStats.load(v) for m, v in doc["totals"].items() if m in MODELS}
            published = {str(m) for m in doc["published"] if m in MODELS}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"checkpoint of session {session_id} is unreadable: {exc!r}") from exc
        duration = round(at - started, 3)
        ending = _Ending(session_id, totals, started, at, wall, duration, Reason.INTERRUPTED, published)
        return self._ending(ending)

    def showing(self) -> Dict[str, FrozenSet[str]]:
        """The models showing a reading, per open session: what its checkpoint's idle messages cover."""
        return {sid: frozenset(session.showing) for sid, session in self._open.items()}

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

    def _close_window(self, session: _Session, wall: float, *, ending: bool = False) -> List[OutMessage]:
        """The window's summaries; a model whose reading an empty (whole) window ends gets its idle
        message, except when the session is ``ending``: its end's idle messages say it for every model."""
        out = []
        for model in MODELS:
            stats = session.window.get(model)
            if stats is not None and stats.measurements:
                out.append(self._summary(session, model, stats, wall))
                session.showing.add(model)
            elif model in session.showing and model in EMPTY_WINDOW_IDLE and not ending:
                out.append(self._idle(session.start.session_id, model, EMPTY_WINDOW_IDLE[model], wall))
                session.showing.discard(model)
        session.window = {}
        session.window_open = wall
        return out

    def _summary(self, session: _Session, model: str, stats: ModelStats, wall: float) -> OutMessage:
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
        return OutMessage(f"summary/{model}", payload, state=state_topic(model))

    def _idle(self, session_id: str, model: str, reason: str, wall: float) -> OutMessage:
        idle = self._head(IDLE_SCHEMA, session_id, wall)
        idle.update(model=model, reason=reason)
        return OutMessage(f"summary/{model}", idle, state=state_topic(model))

    def _ending(self, e: _Ending) -> List[OutMessage]:
        """Aggregate, retained session end, then one ``idle`` per model still showing a reading (MODELS
        order)."""
        end = self._head(SESSION_SCHEMA, e.session_id, e.decided)
        end.update(event=END, reason=e.reason, started=utc_iso(e.started), duration_s=e.duration_s)
        out = [self._aggregate(e), OutMessage("session", end, retain=True, state=SESSION_STATE_TOPIC)]
        out += [self._idle(e.session_id, m, e.reason, e.decided) for m in MODELS if m in e.published]
        return out

    def _aggregate(self, e: _Ending) -> OutMessage:
        models: Dict[str, Any] = {}
        captured = Range()
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
