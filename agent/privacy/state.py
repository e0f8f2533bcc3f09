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
Whenever media may no longer be sent (the visit ended, a pause, a debounce that did not become a visit) the
notice is withdrawn (``active`` false). In presence mode a visit is announced when its debounce begins
(``agent.hub``), so its media captured while the debounce runs may be held and sent if it qualifies.

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
from typing import Deque, Dict, List, Optional

from agent.messages import OutMessage, utc_iso

_LOGGER = logging.getLogger(__name__)

NOTICE_TOPIC = "notice"
NOTICE_SCHEMA = "hume-edge/notice/1"
PAUSE_SOURCES = ("mqtt", "page", "button")
"""Who may pause or resume: ``cmd/privacy``, the on-screen page, the GPIO button."""
PAUSE_ACTIONS = ("pause", "resume")
VISITOR_SOURCES = ("page", "button")
"""The controls in front of the kiosk; ``mqtt`` is an operator or the kiosk UI's account."""
LIMITED_SOURCES = ("page", "mqtt")
"""The controls whose pause starts are limited per hour (:class:`StartWindow`); the GPIO button is not."""
LIMIT_SETTINGS = {"page": "privacy.page_pauses_per_hour", "mqtt": "commands.privacy_per_hour"}
"""The setting that holds each limited control's allowance (named in a refusal)."""
WINDOW_S = 3600.0
"""The window pause starts are counted in."""


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
    """A pause not granted: why (for the log, the page's JSON and ``cmd/result``), and in how many seconds
    it would be (``math.inf`` when the allowance is 0)."""

    reason: str
    retry_after_s: float


class StartWindow:
    """At most ``per_hour`` starts in any :data:`WINDOW_S`: a sliding window of the start times.

    Why not a token bucket of the same rate (what ``cmd/privacy`` had): a bucket starts full and refills
    while a pause runs, 0.5 token per 300 s pause at 6 an hour, so a script pausing at every resume got
    6 + 3 + 1.5 + ... = about 12 pauses, the whole first hour, before "half of every hour" applied (#31). The
    window holds at most ``per_hour`` floats, so its memory is bounded by the setting (<= 3600).
    """

    def __init__(self, per_hour: int) -> None:
        if per_hour < 0:
            raise ValueError(f"pauses per hour {per_hour}: must be >= 0")
        self.per_hour = per_hour
        self._starts: Deque[float] = collections.deque()
        """When the starts of the last hour were, oldest first (at most ``per_hour``)."""

    def count(self, now: float) -> int:
        """Starts within the last hour."""
        while self._starts and self._starts[0] <= now - WINDOW_S:
            self._starts.popleft()
        return len(self._starts)

    def wait_s(self, now: float) -> float:
        """0 if a start may begin now, else the seconds until one may (``math.inf`` for an allowance of 0)."""
        if self.count(now) < self.per_hour:
            return 0.0
        return math.inf if not self._starts else self._starts[0] + WINDOW_S - now

    def started(self, now: float) -> None:
        self._starts.append(now)


class PauseControl:
    """Pause / resume from any source, ending by itself after ``max_pause_s``.

    Resuming while running is a no-op. :meth:`toggle` is the physical button: one button, both ways.

    **A pause while paused changes nothing**, from any source: it neither restarts the maximum nor spends an
    allowance, and yields no event (#31: re-sending ``cmd/privacy pause`` before each maximum held the kiosk
    paused indefinitely; the page's button is disabled while paused, so there only a script sends one). A
    visitor's press (page) still takes an operator's pause over, for who may end it (below).

    **How often a pause may begin: one rule for the page and ``cmd/privacy``** (#31: any local process
    could ``POST /pause``, and any broker account send ``cmd/privacy pause``, at each automatic resume). Each
    of the two begins at most its allowance of pauses in any 3600 s (:class:`StartWindow`): the page
    ``page_pauses_per_hour`` (``privacy.page_pauses_per_hour``), ``cmd/privacy`` ``mqtt_pauses_per_hour``
    (``commands.privacy_per_hour``). So each holds the kiosk paused for at most allowance x ``max_pause_s``
    of any hour, the first one included: with the defaults (6, 300 s) a script pausing at every resume gets
    30 min, then the kiosk measures until the first of those pauses is an hour old: half of any hour.
    Six visitors an hour who each want a pause all get one. A pause beyond it is refused with the reason
    and the wait (:meth:`pause_refusal`): the page shows it to the visitor, ``cmd/result`` to the sender;
    every refusal is counted per source (:attr:`refused`). The GPIO button is not limited (pressing it takes
    someone in front of the kiosk). Resume is not limited: it only ends a pause (never a visitor's, below),
    and a resume-and-pause cycle still spends a start.

    **Why each source has its own allowance, not one shared:** a shared one would let either side disable
    the other's pause: any broker login sending six ``cmd/privacy pause`` at the top of the hour would leave
    the visitor a button refusing for an hour (a privacy control switched off remotely), and any local
    process would spend the operator's. The price: someone holding both a broker login and code on the
    kiosk itself can keep it paused for the sum of the two (with the defaults, the whole hour); a pause only
    stops measuring, the error on privacy's side, and health counts every pause and refusal.

    **Who may end a visitor's pause.** A pause pressed by a visitor (the page or the GPIO button) ends by a
    visitor's control (the button pressed again) or by ``max_pause_s``; ``cmd/privacy resume`` is refused
    for it (:meth:`resume_refusal`), so the kiosk UI's broker account cannot silently undo it (#31). An
    operator's pause (``cmd/privacy``) ends by any control.
    """

    def __init__(
        self, max_pause_s: float, page_pauses_per_hour: int = 6, mqtt_pauses_per_hour: int = 6
    ) -> None:
        if max_pause_s <= 0:
            raise ValueError(f"max_pause_s {max_pause_s}: must be > 0")
        if page_pauses_per_hour < 1:
            raise ValueError(f"page_pauses_per_hour {page_pauses_per_hour}: must be >= 1")
        self.max_pause_s = max_pause_s
        self._until: Optional[float] = None
        self._windows: Dict[str, StartWindow] = {
            "page": StartWindow(page_pauses_per_hour),
            "mqtt": StartWindow(mqtt_pauses_per_hour),
        }
        self.pauses = 0
        """Pauses begun since start (for health)."""
        self.refused: Dict[str, int] = {source: 0 for source in LIMITED_SOURCES}
        """Pauses refused since start over their source's allowance, by source (for health)."""
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
        window = self._windows.get(source)
        if window is None or self.paused:
            return None
        wait_s = window.wait_s(now)
        if wait_s <= 0.0:
            return None
        what = "the on-screen pause" if source == "page" else "cmd/privacy pause"
        setting = f"{LIMIT_SETTINGS[source]} = {window.per_hour}"
        if math.isinf(wait_s):
            return PauseRefused(f"{what} is off on this kiosk ({setting})", wait_s)
        return PauseRefused(
            f"{what} was used {window.count(now)} times within the last hour, as often as this kiosk allows "
            f"({setting}); it can pause again in {math.ceil(wait_s / 60.0):d} min",
            wait_s,
        )

    def refuse(self, now: float, source: str) -> Optional[PauseRefused]:
        """:meth:`pause_refusal`, counted in :attr:`refused` when it refuses: for a caller that answers the
        refusal itself and does not call :meth:`pause` (the page, ``cmd/privacy``'s reply)."""
        refused = self.pause_refusal(now, source)
        if refused is not None:
            self.refused[source] += 1
        return refused

    def pause(self, now: float, source: str) -> List[PauseEvent]:
        _check_source(source)
        if self.paused:  # neither extended nor counted: see the class docs
            if source in VISITOR_SOURCES:
                self.source = source
            return []
        if self.refuse(now, source) is not None:
            return []
        window = self._windows.get(source)
        if window is not None:
            window.started(now)
        self._until = now + self.max_pause_s
        self.source = source
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
