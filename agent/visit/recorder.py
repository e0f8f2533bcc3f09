"""The visit recorder: session events become summaries, queued with checkpoints, and a crash is recovered.

It owns the session state machine (``agent.visit.session``) and the summarizer (``agent.visit.summary``),
and queues what they produce through one callable (the MQTT outbox's ``enqueue_many``), so it runs on
plain values in a unit test. A session's checkpoint (its running aggregate) is written in the same
transaction as the messages that change it (a start, a window's summaries, an end), under
``session/<id>`` in the outbox's ``state`` table: a quiet visit costs no writes, and a killed agent's
open session is ended (reason ``interrupted``) with its aggregate by the next start
(:meth:`VisitRecorder.recover`), before any new session can begin.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence

from agent.config import SessionConfig, SummaryConfig
from agent.hume.types import Observation
from agent.messages import OutMessage
from agent.visit.session import SessionEvent, SessionTracker
from agent.visit.summary import Summarizer
from agent.visit.tally import Tally

_LOGGER = logging.getLogger(__name__)

SESSION_STATE_PREFIX = "session/"
"""Outbox ``state`` keys of open sessions' checkpoints: ``session/<session id>``."""

CHECKPOINT_EVERY_S = 60.0
"""An open session's checkpoint is rewritten at most this often (and always at its start and end). Each
rewrite is a few KB of JSON in the same transaction as a window's summaries: the whole agent wrote 8.6 KB
to flash per delivered message with a rewrite every 5 s window, 6.8-7.3 KB with one a minute (two runs of
scripts/bench/flash.py's whole-agent part on a loaded machine; the outbox's own share is about 3 KB).
What a crash may cost: the ``interrupted`` end's aggregate misses at most the last minute of the visit
(those windows' own summaries were queued and are delivered); with ``outbox.synchronous = "normal"`` a
power cut may roll it back one rewrite further."""

Queue = Callable[[List[OutMessage], Dict[str, Optional[str]]], bool]
"""Queue messages and ``state`` rows (None deletes one) in one transaction; False if nothing was stored."""


class VisitRecorder:
    """Sessions and their summaries, queued durably with their checkpoints."""

    def __init__(
        self,
        session: SessionConfig,
        summary: SummaryConfig,
        device_id: str,
        queue: Queue,
        *,
        models: Sequence[str],
        per_face: bool,
        wall: Callable[[], float],
        on_boundary: Callable[[SessionEvent], None] = lambda ev: None,
    ) -> None:
        self.sessions = SessionTracker(session)
        self.summaries = Summarizer(summary, device_id, per_face=per_face)
        self.tally = Tally(tuple(models))
        """Visits ended by reason and summaries by model, from what was queued (health, metrics)."""
        self._queue = queue
        self._wall = wall
        self._on_boundary = on_boundary
        """Called at each start and end, before its messages are queued (the service drops audio windows
        and face ids there, and queues the visit's notice ahead of its start message)."""
        self._checkpointed: Dict[str, float] = {}
        """Sessions whose checkpoint is in the outbox's ``state`` table (deleted when they end), with the
        wall time it was last written."""
        self._showing: Dict[str, FrozenSet[str]] = {}
        """The models showing a reading in each session's checkpoint as last written: a change rewrites
        it at once, so an ``interrupted`` end idles what was on screen (a checkpoint written only at the
        start listed none, and a killed visit's last face stayed on ``state/face`` and in HA)."""

    def apply(self, events: Iterable[SessionEvent]) -> None:
        """Each start or end: its summary messages, after the boundary callback."""
        for ev in events:
            wall = self._wall()
            if ev.kind == "start":
                _LOGGER.info("session %s started (%s)", ev.session_id, ev.reason)
                msgs = self.summaries.session_started(ev, wall)
            else:
                _LOGGER.info("session %s ended (%s)", ev.session_id, ev.reason)
                msgs = self.summaries.session_ended(ev, wall)
            self._on_boundary(ev)
            self.publish(msgs)

    def add(self, obs: Observation) -> None:
        """A measurement from Hume, into the current windows."""
        self.summaries.add(obs)

    def flush(self) -> None:
        """Queue the summaries of the windows that closed."""
        self.publish(self.summaries.flush(self._wall()))

    def publish(self, msgs: Iterable[OutMessage]) -> None:
        """Queue messages together with the checkpoints of the open sessions, in one transaction.

        A checkpoint is written at a session's start, rewritten with messages at most every
        :data:`CHECKPOINT_EVERY_S` (a quiet visit costs no writes), and deleted with its end message. The
        outbox fsyncs a put that adds or deletes a ``state`` key even with ``synchronous = "normal"``, so a
        power cut may roll a checkpoint back to an earlier rewrite but never loses a started session
        (tests/faults/test_power_loss.py).
        """
        batch = list(msgs)
        if not batch:
            return
        wall = self._wall()
        current = self.summaries.checkpoints(wall)
        showing = self.summaries.showing()
        due = {
            sid: doc
            for sid, doc in current.items()
            if not 0 <= wall - self._checkpointed.get(sid, float("-inf")) < CHECKPOINT_EVERY_S
            or showing.get(sid) != self._showing.get(sid)
        }  # new, due (a wall clock stepped backwards counts as due), or what shows a reading changed
        state: Dict[str, Optional[str]] = {SESSION_STATE_PREFIX + sid: doc for sid, doc in due.items()}
        state.update({SESSION_STATE_PREFIX + sid: None for sid in set(self._checkpointed) - set(current)})
        if self._queue(batch, state):
            kept = {sid: at for sid, at in self._checkpointed.items() if sid in current}
            self._checkpointed = {**kept, **{sid: wall for sid in due}}
            self._showing = {sid: showing[sid] for sid in self._checkpointed}
            self.tally.observe(batch, wall)

    def recover(self, checkpoints: Mapping[str, str]) -> int:
        """End the sessions a previous run left open (reason ``interrupted``); returns how many.

        ``checkpoints`` are the outbox's ``state`` rows under :data:`SESSION_STATE_PREFIX`. Each session's
        aggregate, end and idle messages are queued with the deletion of its checkpoint, in one
        transaction. An unreadable checkpoint still gets its end (with no aggregate, zero duration and the
        restart as its start), so the retained ``session`` is never left at ``start``.
        """
        wall = self._wall()
        for key, checkpoint in sorted(checkpoints.items()):
            sid = key[len(SESSION_STATE_PREFIX) :]
            try:
                msgs = self.summaries.recover(sid, checkpoint, wall)
            except ValueError as exc:
                _LOGGER.error("%s; ending it without an aggregate", exc)
                msgs = self.summaries.recover(sid, self.summaries.bare_checkpoint(wall), wall)
            _LOGGER.warning(
                "session %s was still open when the agent last stopped (killed, crashed or a power cut): "
                "ended it with reason interrupted",
                sid,
            )
            self._queue(msgs, {key: None})
            self.tally.observe(msgs, wall)
        return len(checkpoints)

    def shutdown(self, now: float) -> None:
        """The agent is stopping: end the open session (reason ``shutdown``) so its aggregate is queued."""
        self.apply(self.sessions.shutdown(now))
        self.flush()
