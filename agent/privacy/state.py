"""The visitor's side of the kiosk, as pure state machines: the privacy pause and the notice gate.

**Pause.** A visitor (the on-screen button, a physical GPIO button) or an operator (``cmd/privacy``) pauses
measuring; it ends by ``resume`` or by itself after ``privacy.max_pause_s``, so a pause pressed by one
visitor and forgotten does not switch the kiosk off for the day. While paused the service drops frames and
audio before any processing (no presence check, no encoding): nothing reaches Hume, and nothing about the
visitor is computed.

**Notice.** The EU AI Act, Art. 50(3), asks the deployer of an emotion-recognition system to inform the
people exposed to it, at the latest at first exposure (Art. 50(5)). :class:`NoticeGate` makes "first
exposure" concrete: media of a visit may leave for Hume only once the retained ``notice`` message for that
visit (``active``, the text, ``since``) has been published, i.e. acknowledged by the broker (its PUBACK).
Whenever media may no longer be sent (the visit ended, a pause) the notice is withdrawn (``active`` false).

The rule when the broker is down: media may leave once the notice is **durably queued** in the outbox (its
``put`` returned a seq: committed to disk). Why that and not "hold media until the broker is back": the
people in front of the kiosk are informed by the signage and the on-screen page, which do not depend on the
broker; the MQTT notice is the deployer's record of when measuring was announced, and the outbox sends it
before anything else of that visit (rows leave oldest first), so the record is complete and in order once
the broker is reachable again. Holding media instead would make every broker outage a measuring outage
without informing anyone better. If the outbox cannot store the notice (disk full), nothing is sent: then
there would be no record at all. While the broker is connected but the PUBACK has not come yet (typically
a millisecond; behind a backlog, as long as the backlog takes) media is dropped, not buffered.

Nothing here reads a clock or does I/O: ``now`` is monotonic seconds, ``wall`` is ``time.time()``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
from typing import Deque, List, Optional

from agent.messages import OutMessage, utc_iso

_LOGGER = logging.getLogger(__name__)

NOTICE_TOPIC = "notice"
NOTICE_SCHEMA = "hume-edge/notice/1"
PAUSE_SOURCES = ("mqtt", "page", "button")
"""Who may pause or resume: ``cmd/privacy``, the on-screen page, the GPIO button."""
PAUSE_ACTIONS = ("pause", "resume")
PAGE_WINDOW_S = 3600.0
"""The window ``privacy.page_pauses_per_hour`` counts page pauses in."""
VISITOR_SOURCES = ("page", "button")
"""The controls in front of the kiosk; ``mqtt`` is an operator or the kiosk UI's account."""


@dataclasses.dataclass(frozen=True)
class PauseEvent:
    """A pause began or ended. ``source`` is one of :data:`PAUSE_SOURCES`, or ``max`` (it expired)."""

    kind: str
    """``paused`` or ``resumed``."""
    source: str
    at: float
    """Monotonic seconds."""


@dataclasses.dataclass(frozen=True)
class PauseRefused:
    """A pause not granted: why (for the log and the page's JSON), and in how many seconds it would be."""

    reason: str
    retry_after_s: float


class PauseControl:
    """Pause / resume from any source, ending by itself after ``max_pause_s``.

    Pausing while paused restarts the maximum (the button pressed again means "not yet") and yields no
    event; resuming while running is a no-op. :meth:`toggle` is the physical button: one button, both ways.

    **How often the page may pause** (#31: any local process could ``POST /pause`` at each automatic resume
    and hold the kiosk paused for good). The on-screen page begins at most ``page_pauses_per_hour`` pauses
    in any 3600 s (a sliding window of their start times), so it holds the kiosk paused for at most
    ``page_pauses_per_hour * max_pause_s`` of any hour: with the defaults (6, 300 s) a process pausing at
    every resume gets 30 min, then the kiosk measures until the first of those pauses is an hour old: half
    of any hour at most. (A token bucket of the same rate would have let it hold the first hour whole: each
    300 s pause refills half a token.) Six visitors an hour who each want a pause all get one. A pause
    beyond it is refused with the reason and the wait (:meth:`pause_refusal`), which the page shows the
    visitor: a pause button never fails silently. A page pause while paused neither extends the pause nor
    counts (the page's button is disabled while paused, so only a script sends one). The GPIO button is not
    limited (pressing it takes someone in front of the kiosk); ``cmd/privacy`` has its own limit
    (``commands.privacy_per_hour``, ``agent.mqtt.guard``).

    **Who may end a visitor's pause.** A pause pressed by a visitor (the page or the GPIO button) ends by a
    visitor's control (the button pressed again) or by ``max_pause_s``; ``cmd/privacy resume`` is refused
    for it (:meth:`resume_refusal`), so the kiosk UI's broker account cannot silently undo it (#31). An
    operator's pause (``cmd/privacy``) ends by any control.
    """

    def __init__(self, max_pause_s: float, page_pauses_per_hour: int = 6) -> None:
        if max_pause_s <= 0:
            raise ValueError(f"max_pause_s {max_pause_s}: must be > 0")
        if page_pauses_per_hour < 1:
            raise ValueError(f"page_pauses_per_hour {page_pauses_per_hour}: must be >= 1")
        self.max_pause_s = max_pause_s
        self.page_pauses_per_hour = page_pauses_per_hour
        self._until: Optional[float] = None
        self._page_starts: Deque[float] = collections.deque()
        """When the page's pauses of the last hour began, oldest first (at most ``page_pauses_per_hour``)."""
        self.pauses = 0
        """Pauses begun since start (for health)."""
        self.page_refused = 0
        """Page pauses refused since start, over ``page_pauses_per_hour`` (for health)."""
        self.source: Optional[str] = None
        """Who paused (a visitor's press wins over an operator's while both hold it); None when running."""

    @property
    def paused(self) -> bool:
        return self._until is not None

    def remaining_s(self, now: float) -> Optional[float]:
        """Seconds left of the current pause, or None when not paused."""
        return None if self._until is None else max(0.0, self._until - now)

    def pause_refusal(self, now: float, source: str) -> Optional[PauseRefused]:
        """Why a pause from ``source`` would be refused now (see the class docs), or None if it would not."""
        if source != "page" or self.paused:
            return None
        while self._page_starts and self._page_starts[0] <= now - PAGE_WINDOW_S:
            self._page_starts.popleft()
        if len(self._page_starts) < self.page_pauses_per_hour:
            return None
        wait_s = self._page_starts[0] + PAGE_WINDOW_S - now
        return PauseRefused(
            f"the on-screen pause was used {len(self._page_starts)} times within the last hour, as often as "
            f"this kiosk allows (privacy.page_pauses_per_hour = {self.page_pauses_per_hour}); "
            f"it can pause again in {math.ceil(wait_s / 60.0):d} min",
            wait_s,
        )

    def pause(self, now: float, source: str) -> List[PauseEvent]:
        _check_source(source)
        was = self.paused
        if source == "page":
            if was:  # neither extended nor counted: see the class docs
                self.source = source
                return []
            if self.pause_refusal(now, source) is not None:
                self.page_refused += 1
                return []
            self._page_starts.append(now)
        self._until = now + self.max_pause_s
        if not was or source in VISITOR_SOURCES:
            self.source = source
        if was:
            return []
        self.pauses += 1
        return [PauseEvent("paused", source, now)]

    def resume_refusal(self, source: str) -> Optional[str]:
        """Why ``source`` may not end the current pause (see the class docs), or None if it may."""
        if self.paused and source not in VISITOR_SOURCES and self.source in VISITOR_SOURCES:
            return (
                f"a visitor paused measuring (on the {'page' if self.source == 'page' else 'button'}): "
                f"only the kiosk's button or the maximum ({self.max_pause_s:g} s) ends that pause"
            )
        return None

    def resume(self, now: float, source: str) -> List[PauseEvent]:
        _check_source(source)
        if not self.paused or self.resume_refusal(source) is not None:
            return []
        self._until = None
        self.source = None
        return [PauseEvent("resumed", source, now)]

    def toggle(self, now: float, source: str) -> List[PauseEvent]:
        return self.resume(now, source) if self.paused else self.pause(now, source)

    def command(self, now: float, action: str, source: str) -> List[PauseEvent]:
        """``pause`` or ``resume`` (ValueError naming the allowed actions otherwise)."""
        if action == "pause":
            return self.pause(now, source)
        if action == "resume":
            return self.resume(now, source)
        raise ValueError(f"privacy action {action!r}: must be one of {', '.join(PAUSE_ACTIONS)}")

    def tick(self, now: float) -> List[PauseEvent]:
        """End a pause whose maximum has passed."""
        if self._until is not None and now >= self._until:
            self._until = None
            self.source = None
            return [PauseEvent("resumed", "max", now)]
        return []


def _check_source(source: str) -> None:
    if source not in PAUSE_SOURCES:
        raise ValueError(f"pause source {source!r}: must be one of {', '.join(PAUSE_SOURCES)}")


@dataclasses.dataclass(frozen=True)
class NoticeState:
    """What the notice says right now (the page shows it; health reports it)."""

    active: bool
    text: str
    since: Optional[float]
    """Wall-clock seconds the notice became active; None when inactive."""
    session_id: Optional[str]
    published: bool
    """The broker acknowledged this notice (False while it waits in the outbox)."""


class NoticeGate:
    """The retained ``notice`` and whether media may leave; see the module docstring for the rule.

    The service calls :meth:`update` with whether media may be sent (a visit or idle streaming, and not
    paused) every time that may have changed; a returned message must be enqueued and its seq handed to
    :meth:`queued`; the publisher reports the broker's acknowledgement through :meth:`delivered`. A new
    visit while the notice is active (always mode rolling over, idle streaming turning into a visit) is a
    new notice: the gate closes until that one is queued or acknowledged too.
    """

    def __init__(self, text: str, device_id: str) -> None:
        self.text = text
        self.device_id = device_id
        self._active = False
        self._since: Optional[float] = None
        self._session: Optional[str] = None
        self._seq: Optional[int] = None
        self._delivered = False
        self.notices = 0
        """Active notices published since start."""

    @property
    def active(self) -> bool:
        return self._active

    def state(self) -> NoticeState:
        return NoticeState(self._active, self.text, self._since, self._session, self._delivered)

    def update(self, want_active: bool, session_id: Optional[str], wall: float) -> Optional[OutMessage]:
        """The notice message to enqueue when what it must say changed, else None."""
        if want_active == self._active and (not want_active or session_id == self._session):
            return None
        self._active = want_active
        self._since = wall if want_active else None
        self._session = session_id if want_active else None
        self._seq = None
        self._delivered = False
        if want_active:
            self.notices += 1
        return self.message(wall)

    def message(self, wall: float) -> OutMessage:
        """The retained ``notice`` payload for the current state (also the one sent at start-up)."""
        payload = {
            "schema": NOTICE_SCHEMA,
            "device": self.device_id,
            "ts": utc_iso(wall),
            "active": self._active,
            "text": self.text,
            "since": utc_iso(self._since) if self._since is not None else None,
            "session": self._session,
        }
        return OutMessage(NOTICE_TOPIC, payload, retain=True)

    def queued(self, seq: int) -> None:
        """The outbox stored the last message from :meth:`update` as ``seq`` (-1: it could not)."""
        if seq > 0:
            self._seq = seq
        elif self._active:
            _LOGGER.error("the notice could not be queued (outbox not writable): nothing is sent to Hume")

    def delivered(self, seq: int) -> None:
        """The broker acknowledged the outbox row ``seq`` (any topic; only the current notice counts)."""
        if self._seq is not None and seq == self._seq:
            self._delivered = True

    def media_allowed(self, broker_connected: bool) -> bool:
        """Whether media of the current visit may leave for Hume now."""
        if not self._active or self._seq is None:
            return False
        return self._delivered or not broker_connected
