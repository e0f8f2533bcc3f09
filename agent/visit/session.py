"""When a visitor session starts and ends: a pure state machine, driven by plain values and times.

One visitor's emotions must never bleed into the next one's, and credits are spent only while someone is
there. :class:`SessionTracker` turns noisy evidence into clean IDLE -> ACTIVE -> IDLE transitions:

* **presence** mode: visual presence (the on-device detector, or Hume's own face predictions) must hold
  for ``debounce_s`` to start a session; a session ends once there has been no evidence at all (visual
  or voice) for ``grace_s``. Voice keeps a session alive (a visitor who looks away while talking) but
  never starts one: a kiosk microphone hears passers-by, background chatter and its own loudspeaker, and
  none of that is a visitor in front of the camera worth paying for.
* **always** mode: one session that starts at the first call and is only cut by ``max_session_s`` or an
  ``end`` command, each of which immediately rolls over into a fresh session (a new id, a clean context).
* **command** mode: only MQTT ``cmd/session`` start / end (a PIR sensor, the kiosk's UI) move the machine.

Commands in every mode: ``start`` forces a session (a no-op if one is active). Such a session still
ends once nobody has been present (no visual or voice evidence) for ``grace_s``, counted from the command
(a repeated ``start``, a PIR sensor re-triggering, counts it again from then): on a broker anyone can publish
to, one forged ``start`` once streamed for ``max_session_s`` (900 s, 120 paid payloads a minute) with nobody
there. ``session.hold_commanded = true`` restores the hold: a commanded session is then ended only by
``end`` or ``max_session_s``, for a sensor or UI that is believed even when the camera misses the visitor.
Repeated ``start`` commands do not cut the session. ``end`` ends the active session; in presence mode,
visual presence must then drop before presence can start another one, so the visitor who was just
dismissed does not immediately restart a session by still standing there. To force a new visitor, send
``end`` then ``start``. In command mode absence ends sessions the same way (the service runs the presence
check there too, unless ``hold_commanded``).

``max_session_s`` bounds a session (and a detector stuck at "present"): the session ends with reason
``max_duration``. In presence mode a new session may start if presence continues, after a fresh
debounce counted from the cut, so a genuinely long visit is still measured, in bounded pieces.

The visit being debounced is announced before it starts: :attr:`SessionTracker.pending_id` is the id it
will start with, so the hub raises its notice at the debounce's first frame and holds the media captured
once the notice is out until the debounce decides (``agent.hub``).

Every event is a boundary: the service calls ``backend.mark_boundary()`` once for each non-empty list of
events it gets back, so the next payload of every model carries ``reset_stream`` (and, with
``identify_faces``, the face connection is reopened so two visitors never share a face id).

All ``now`` arguments are monotonic seconds supplied by the caller; nothing here reads a clock. A ``now``
earlier than one already seen is treated as the latest one seen, so events never go back in time.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Callable, List, Optional

from agent.config import SessionConfig

START = "start"
END = "end"
MODES = ("presence", "always", "command")
COMMANDS = (START, END)


class Reason:
    """Why a session started or ended (the ``reason`` of a :class:`SessionEvent`)."""

    PRESENCE = "presence"
    """Start: visual presence held for ``debounce_s``."""
    ALWAYS = "always"
    """Start: always mode (first call, or roll-over after an end)."""
    COMMAND = "command"
    """Start or end: an MQTT ``cmd/session`` command."""
    ABSENCE = "absence"
    """End: no visual or voice evidence for ``grace_s``."""
    MAX_DURATION = "max_duration"
    """End: the session reached ``max_session_s``."""
    SHUTDOWN = "shutdown"
    """End: the agent stopped cleanly (SIGTERM, Ctrl-C) while the session was open."""
    INTERRUPTED = "interrupted"
    """End, decided at the next start: the agent died with the session open (SIGKILL, power cut, watchdog).

    The restarted agent finds the session's durable checkpoint (``agent/visit/summary.py``) and ends it, so
    the retained ``session`` message never stays ``start`` for a visit nobody is measuring.
    """


START_REASONS = (Reason.PRESENCE, Reason.ALWAYS, Reason.COMMAND)
END_REASONS = (Reason.ABSENCE, Reason.MAX_DURATION, Reason.COMMAND, Reason.SHUTDOWN, Reason.INTERRUPTED)


@dataclasses.dataclass(frozen=True)
class SessionEvent:
    """A session started or ended; ``at`` is the caller's monotonic ``now`` of the call that decided it."""

    kind: str
    """"start" or "end"."""
    session_id: str
    at: float
    reason: str


def new_session_id() -> str:
    """A random, unguessable id: 32 hex digits (uuid4)."""
    return uuid.uuid4().hex


class SessionTracker:
    """IDLE -> ACTIVE -> IDLE from presence, voice, Hume face predictions and commands (see module doc).

    ``observe`` takes level signals: a value holds until the next report on the same input (``None``
    leaves an input unchanged). ``tick`` lets timers (grace, debounce, maximum length) fire when no
    input arrives. Each call returns the events it caused, oldest first; an end and a start may come
    together (a roll-over).
    """

    def __init__(self, cfg: SessionConfig, new_id: Callable[[], str] = new_session_id) -> None:
        if cfg.mode not in MODES:
            raise ValueError(f"session.mode = {cfg.mode!r}: must be one of {', '.join(MODES)}")
        self._cfg = cfg
        self._new_id = new_id
        self._id: Optional[str] = None
        self._started_at = 0.0
        self._held = False
        """Started or confirmed by a ``start`` command with ``hold_commanded``: absence does not end it."""
        self._presence = False
        self._face = False
        """Hume saw a face; only about the current session, cleared at its end."""
        self._voice = False
        self._seen_since: Optional[float] = None
        """Start of the current uninterrupted run of visual presence (the debounce clock)."""
        self._candidate: Optional[str] = None
        """The id the visit being debounced will have if it qualifies (its notice already names it)."""
        self._last_evidence = 0.0
        self._blocked = False
        """After an ``end`` command: visual presence must drop before it may start a session."""
        self._now: Optional[float] = None

    @property
    def active(self) -> bool:
        """A session is running."""
        return self._id is not None

    @property
    def session_id(self) -> Optional[str]:
        """The running session's id, None while IDLE."""
        return self._id

    @property
    def should_stream(self) -> bool:
        """Media goes to Hume: during a session, or always when ``stream_when_idle``."""
        return self._id is not None or self._cfg.stream_when_idle

    def observe(
        self,
        now: float,
        *,
        presence: Optional[bool] = None,
        voice: Optional[bool] = None,
        face: Optional[bool] = None,
    ) -> List[SessionEvent]:
        """Report the latest value of one or more inputs at ``now``.

        ``presence``: the on-device detector's verdict on a frame. ``voice``: voice activity in an audio
        chunk. ``face``: Hume's face model saw a face (True) or warned that it saw none (False). Face
        reports while IDLE are ignored unless ``stream_when_idle``: without it nothing was streamed, so
        such a report can only be a late reply about the session that just ended.
        """
        now = self._advance(now)
        events = self._step(now)  # timers due before these inputs fire first
        if presence is not None:
            self._presence = presence
        if voice is not None:
            self._voice = voice
        if face is not None and (self._id is not None or self._cfg.stream_when_idle):
            self._face = face
        self._track_visual(now)
        return events + self._step(now)

    def command(self, now: float, action: str) -> List[SessionEvent]:
        """Apply an external ``start`` or ``end`` command (see module doc); ValueError for anything else."""
        if action not in COMMANDS:
            raise ValueError(f"session command {action!r}: must be one of {', '.join(COMMANDS)}")
        now = self._advance(now)
        events = self._step(now)
        if action == START:
            if self._id is None:
                events.append(self._start(now, Reason.COMMAND))
            self._held = self._cfg.hold_commanded
            self._last_evidence = now  # the grace counts from the command: nobody seen since, it ends
            self._blocked = False
        else:
            if self._id is not None:
                events.append(self._end(now, Reason.COMMAND))
            self._blocked = self._cfg.mode == "presence" and self._visual()
        return events + self._step(now)

    def shutdown(self, now: float) -> List[SessionEvent]:
        """End the running session because the agent is stopping (reason ``shutdown``); never starts one.

        Unlike an ``end`` command, no roll-over follows (in ``always`` mode a new session would start and
        never run) and nothing is remembered about presence: the process is about to exit.
        """
        now = self._advance(now)
        return [self._end(now, Reason.SHUTDOWN)] if self._id is not None else []

    def tick(self, now: float) -> List[SessionEvent]:
        """Let due timers fire (call it about once a second, and whenever no input arrives)."""
        return self._step(self._advance(now))

    @property
    def pending_id(self) -> Optional[str]:
        """While a presence debounce runs: the id its session will start with, else None.

        The hub announces the visit (its notice) from the debounce's first frame, under this id, and holds
        the media captured once the notice is out in memory until the session starts (then it is sent) or
        the debounce fails (then it is dropped and the notice withdrawn): a visit's first second is then
        measured, where it used to be lost to the debounce (benchmark 8)."""
        if self.debounce_due() is None:
            return None
        if self._candidate is None:
            self._candidate = self._new_id()
        return self._candidate

    def debounce_due(self) -> Optional[float]:
        """When the running debounce completes (a ``tick`` then starts the session), None if none runs.

        The hub wakes its tick for it: the start (and so the notice, then the visit's first frame) comes
        when the debounce is over, not at the next half-second tick or audio chunk (benchmark 8: those
        started a visit 0.03-0.18 s late, after the camera frame due then, so its first frame came a
        frame period later)."""
        if self._id is not None or self._cfg.mode != "presence" or self._blocked or self._seen_since is None:
            return None
        return self._seen_since + self._cfg.debounce_s

    # ----------------------------------------------------------------------------------------------

    def _advance(self, now: float) -> float:
        if self._now is not None and now < self._now:
            now = self._now
        self._now = now
        return now

    def _visual(self) -> bool:
        return self._presence or self._face

    def _track_visual(self, now: float) -> None:
        if not self._visual():
            self._seen_since = None
            self._candidate = None
            self._blocked = False
        elif self._seen_since is None:
            self._seen_since = now

    def _step(self, now: float) -> List[SessionEvent]:
        events: List[SessionEvent] = []
        if self._id is not None:
            evidence = self._visual() or self._voice
            if evidence:
                self._last_evidence = now
            if now - self._started_at >= self._cfg.max_session_s:
                events.append(self._end(now, Reason.MAX_DURATION))
            elif (
                self._cfg.mode != "always"
                and not self._held
                and not evidence
                and now - self._last_evidence >= self._cfg.grace_s
            ):
                events.append(self._end(now, Reason.ABSENCE))
        if self._id is None:
            if self._cfg.mode == "always":
                events.append(self._start(now, Reason.ALWAYS))
            elif (
                self._cfg.mode == "presence"
                and not self._blocked
                and self._seen_since is not None
                and now - self._seen_since >= self._cfg.debounce_s
            ):
                events.append(self._start(now, Reason.PRESENCE))
        return events

    def _start(self, now: float, reason: str) -> SessionEvent:
        # A presence start takes the id its debounce was announced under; any other start a fresh one.
        candidate, self._candidate = self._candidate, None
        self._id = candidate if reason == Reason.PRESENCE and candidate is not None else self._new_id()
        self._started_at = self._last_evidence = now
        self._held = False
        return SessionEvent(START, self._id, now, reason)

    def _end(self, now: float, reason: str) -> SessionEvent:
        assert self._id is not None
        event = SessionEvent(END, self._id, now, reason)
        self._id = None
        self._held = False
        self._face = False
        # Debounce counts afresh from the end, so a roll-over after max_duration is not instantaneous.
        self._seen_since = now if self._visual() else None
        return event
