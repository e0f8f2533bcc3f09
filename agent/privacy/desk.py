"""The privacy desk: the pause and each visit's notice, driven by commands and visits, telling its listeners.

It composes the two pure state machines of ``agent.privacy.state`` (the pause, the notice gate) with what
they need from outside, passed in: where a notice is queued (the outbox's ``enqueue``), the wall clock.
The service hands it the visit's state and the broker's (:meth:`PrivacyDesk.sync`) and acts on its answer
(media allowed or not); the on-screen page and the capture LED listen (:attr:`PrivacyDesk.listeners`).
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Iterable, List, Optional

from agent.config import PrivacyConfig
from agent.messages import OutMessage
from agent.ops.health import PrivacyHealth
from agent.privacy.state import NoticeGate, PauseControl, PauseEvent, PauseRefused
from agent.throttle import LogThrottle

_LOGGER = logging.getLogger(__name__)


class PrivacyDesk:
    """See the module docstring. No I/O of its own; ``now`` is monotonic seconds."""

    def __init__(
        self,
        cfg: PrivacyConfig,
        device_id: str,
        enqueue: Callable[[OutMessage], int],
        *,
        wall: Callable[[], float],
        mqtt_pauses_per_hour: int = 6,
    ) -> None:
        """``mqtt_pauses_per_hour``: ``commands.privacy_per_hour``, the allowance of ``cmd/privacy``."""
        self.cfg = cfg
        self.pause = PauseControl(cfg.max_pause_s, cfg.page_pauses_per_hour, mqtt_pauses_per_hour)
        self.notice = NoticeGate(cfg.notice_text, device_id)
        self.listeners: List[Callable[[], None]] = []
        """Called whenever the notice or whether media may leave changed (the page, the LED)."""
        self._enqueue = enqueue
        self._wall = wall
        self._media_allowed = False
        self._log = LogThrottle(_LOGGER)

    @property
    def paused(self) -> bool:
        return self.pause.paused

    @property
    def media_allowed(self) -> bool:
        """Whether media may leave right now, as of the last :meth:`sync` (the capture LED)."""
        return self._media_allowed and not self.pause.paused

    def start(self) -> None:
        """At start-up: queue the inactive notice, withdrawing one a crash may have left active."""
        self._enqueue(self.notice.message(self._wall()))

    def command(self, now: float, action: str, source: str) -> bool:
        """``pause`` / ``resume`` / ``toggle`` from ``source`` (mqtt, page, button); True if it changed."""
        if action == "toggle":
            return self._said(self.pause.toggle(now, source))
        return self._said(self.pause.command(now, action, source))

    def refuse_pause(self, now: float, source: str) -> Optional[PauseRefused]:
        """Why a pause from ``source`` (``page``, ``mqtt``) is refused now, or None; the caller answers a
        refusal and does not pause (``agent.privacy.state.PauseControl``: one rule, an allowance each).

        Every refusal is counted in health (``privacy.page_pauses_refused``, ``mqtt_pauses_refused``). The
        page's are logged (INFO, as refused commands are) once per 10 min at most, since a script can send
        thousands; ``cmd/privacy``'s are logged by the command intake, once a minute at most.
        """
        refused = self.pause.refuse(now, source)
        if refused is not None and source == "page":
            self._log.log(logging.INFO, "page", "privacy pause from the page refused: %s", refused.reason)
        return refused

    def page_pause(self, now: float) -> Optional[PauseRefused]:
        """The on-screen Pause: None when paused (or already paused), else why not, for the page to show."""
        refused = self.refuse_pause(now, "page")
        if refused is None:
            self._said(self.pause.pause(now, "page"))
        return refused

    def tick(self, now: float) -> bool:
        """A pause past ``privacy.max_pause_s`` ends; True if it did."""
        return self._said(self.pause.tick(now))

    def delivered(self, seq: int) -> None:
        """The broker acknowledged outbox row ``seq`` (the notice's, or any other)."""
        self.notice.delivered(seq)

    def announced(self, broker_connected: bool) -> bool:
        """The current visit's notice is out (acknowledged, or durably queued while the broker is down)."""
        return self.notice.media_allowed(broker_connected)

    def sync(self, streaming: bool, session_id: Optional[str], broker_connected: bool) -> bool:
        """Queue the notice if what it must say changed; tell the listeners; whether media may leave.

        ``streaming``: a visit is on (or idle streaming). The notice is withdrawn by a pause as by the
        visit's end.
        """
        msg = self.notice.update(streaming and not self.pause.paused, session_id, self._wall())
        if msg is not None:
            self.notice.queued(self._enqueue(msg))
        allowed = self.notice.media_allowed(broker_connected) and not self.pause.paused
        if msg is not None or allowed != self._media_allowed:
            self._media_allowed = allowed
            for listener in self.listeners:
                listener()
        return allowed

    def health(
        self, now: float, dropped: Dict[str, Dict[str, int]], paused: int, unannounced: int
    ) -> PrivacyHealth:
        """What a deployer audits; the drop counts come from the media gate."""
        left = self.pause.remaining_s(now)
        return PrivacyHealth(
            deployment_context=self.cfg.deployment_context,
            paused=self.pause.paused,
            pause_left_s=None if left is None else round(left, 1),
            pauses=self.pause.pauses,
            page_pauses_refused=self.pause.refused["page"],
            mqtt_pauses_refused=self.pause.refused["mqtt"],
            notice_active=self.notice.active,
            notice_published=self.notice.state().published,
            notices=self.notice.notices,
            dropped_paused=paused,
            dropped_unannounced=unannounced,
            dropped=dropped,
        )

    def _said(self, events: Iterable[PauseEvent]) -> bool:
        changed = False
        for ev in events:
            changed = True
            if ev.kind == "paused":
                _LOGGER.info(
                    "privacy pause (%s): nothing is captured or sent for at most %g s",
                    ev.source,
                    self.pause.max_pause_s,
                )
            else:
                _LOGGER.info("privacy pause ended (%s): measuring again", ev.source)
        return changed
