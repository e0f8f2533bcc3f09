"""The privacy desk (agent.privacy.desk): pause commands, each visit's notice queued, listeners told."""

from __future__ import annotations

import logging
from typing import List

import pytest

from agent.config import PrivacyConfig
from agent.messages import OutMessage
from agent.privacy.desk import PrivacyDesk


class Outbox:
    """The desk's ``enqueue``: a seq per message, or -1 when the disk is full."""

    def __init__(self) -> None:
        self.messages: List[OutMessage] = []
        self.full = False

    def enqueue(self, msg: OutMessage) -> int:
        if self.full:
            return -1
        self.messages.append(msg)
        return len(self.messages)


def desk(outbox: Outbox, max_pause_s: float = 60.0) -> PrivacyDesk:
    return PrivacyDesk(PrivacyConfig(max_pause_s=max_pause_s), "kiosk1", outbox.enqueue, wall=lambda: 1e9)


def test_start_withdraws_a_notice_a_crash_left_active() -> None:
    outbox = Outbox()
    d = desk(outbox)
    d.start()
    assert [(m.topic, m.payload["active"], m.retain) for m in outbox.messages] == [("notice", False, True)]


def test_media_leaves_only_once_the_visits_notice_is_acknowledged_and_listeners_hear_each_change() -> None:
    outbox = Outbox()
    d = desk(outbox)
    told: List[bool] = []
    d.listeners.append(lambda: told.append(d.media_allowed))
    assert not d.sync(True, "s1", broker_connected=True)  # queued, no PUBACK yet
    assert outbox.messages[-1].payload["active"] is True
    assert outbox.messages[-1].payload["session"] == "s1"
    assert not d.announced(True)
    d.delivered(len(outbox.messages))
    assert d.announced(True)
    assert d.sync(True, "s1", broker_connected=True)
    assert not d.sync(False, None, broker_connected=True)  # the visit ended: withdrawn
    assert outbox.messages[-1].payload["active"] is False
    assert told == [False, True, False]


def test_while_the_broker_is_down_a_durably_queued_notice_lets_media_leave() -> None:
    outbox = Outbox()
    d = desk(outbox)
    assert d.sync(True, "s1", broker_connected=False)


def test_a_notice_the_outbox_cannot_store_lets_nothing_leave() -> None:
    outbox = Outbox()
    outbox.full = True
    d = desk(outbox)
    assert not d.sync(True, "s1", broker_connected=False)


def test_a_pause_withdraws_the_notice_and_ends_by_itself() -> None:
    outbox = Outbox()
    d = desk(outbox, max_pause_s=10.0)
    d.sync(True, "s1", broker_connected=False)
    assert d.command(0.0, "pause", "mqtt")
    assert not d.command(1.0, "pause", "page")  # already paused: no change, the maximum not restarted
    assert d.paused
    assert not d.media_allowed
    assert not d.sync(True, "s1", broker_connected=False)
    assert outbox.messages[-1].payload["active"] is False
    assert not d.tick(5.0)
    assert d.tick(10.0)  # 10 s after the first press
    assert not d.paused
    assert d.sync(True, "s1", broker_connected=False)
    assert d.command(20.0, "toggle", "button")
    assert d.paused
    assert d.command(21.0, "toggle", "button")
    assert not d.paused


def test_health_reports_the_pause_the_notice_and_the_gates_drops() -> None:
    outbox = Outbox()
    d = desk(outbox)
    d.command(0.0, "pause", "mqtt")
    drops = {"paused": {"frame": 2, "audio": 1, "text": 0}}
    h = d.health(4.0, drops, paused=3, unannounced=0)
    assert h.paused
    assert h.pauses == 1
    assert h.pause_left_s == 56.0
    assert h.dropped_paused == 3
    assert h.dropped == drops
    assert h.deployment_context == PrivacyConfig().deployment_context


def test_a_refused_page_pause_is_answered_counted_in_health_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The page's refusals over privacy.page_pauses_per_hour (#31): the reason for the page, one log line
    per 10 min whatever the flood, every one counted in ``health.privacy``."""
    outbox = Outbox()
    d = PrivacyDesk(
        PrivacyConfig(max_pause_s=60.0, page_pauses_per_hour=1), "kiosk1", outbox.enqueue, wall=lambda: 1e9
    )
    caplog.set_level(logging.INFO, logger="agent.privacy.desk")
    assert d.page_pause(0.0) is None
    assert d.paused
    assert d.page_pause(1.0) is None  # already paused: nothing to refuse, nothing extended
    assert d.pause.remaining_s(1.0) == 59.0
    d.tick(60.0)
    for n in range(50):
        refused = d.page_pause(60.0 + n)
        assert refused is not None
        assert "privacy.page_pauses_per_hour = 1" in refused.reason
    assert not d.paused
    assert d.health(110.0, {}, 0, 0).page_pauses_refused == 50
    said = [r for r in caplog.records if "from the page refused" in r.getMessage()]
    assert len(said) == 1
    assert said[0].levelno == logging.INFO


def test_a_refused_mqtt_pause_is_counted_in_health_and_left_to_the_intake_to_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """cmd/privacy pause over commands.privacy_per_hour: the hub vets it with :meth:`refuse_pause` (the
    reply on cmd/result says why); counted in ``health.privacy.mqtt_pauses_refused``, apart from the page's
    allowance; the intake logs refused commands (once a minute), so the desk does not."""
    outbox = Outbox()
    d = PrivacyDesk(
        PrivacyConfig(max_pause_s=60.0), "kiosk1", outbox.enqueue, wall=lambda: 1e9, mqtt_pauses_per_hour=1
    )
    caplog.set_level(logging.INFO, logger="agent.privacy.desk")
    assert d.refuse_pause(0.0, "mqtt") is None
    assert d.command(0.0, "pause", "mqtt")
    assert d.refuse_pause(30.0, "mqtt") is None  # already paused: nothing to refuse
    assert not d.command(30.0, "pause", "mqtt")
    assert d.pause.remaining_s(30.0) == 30.0  # not extended
    d.tick(60.0)
    for n in range(5):
        refused = d.refuse_pause(60.0 + n, "mqtt")
        assert refused is not None
        assert "commands.privacy_per_hour = 1" in refused.reason
    assert d.page_pause(70.0) is None  # the visitor's button has its own allowance
    h = d.health(80.0, {}, 0, 0)
    assert (h.mqtt_pauses_refused, h.page_pauses_refused, h.pauses) == (5, 0, 2)
    assert not [r for r in caplog.records if "refused" in r.getMessage()]
