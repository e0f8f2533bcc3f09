"""The command guard: retained commands ignored, allowed list, rate limits, bounded replies (pure)."""

from __future__ import annotations

from typing import List

from agent.config import CommandsConfig, MqttConfig
from agent.mqtt.guard import CommandGuard, exposure_warnings
from agent.throttle import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_starts_full_and_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_s=2.0, capacity=4.0, now=clock())
    assert [bucket.try_take(1, clock()) for _ in range(5)] == [True, True, True, True, False]
    clock.now += 0.5
    assert bucket.try_take(1, clock())  # one token back after half a second
    assert not bucket.try_take(1, clock())
    clock.now += 100.0
    assert bucket.try_take(4.0, clock())  # refills only up to the burst
    assert not bucket.try_take(1, clock())


def test_session_starts_are_limited_per_hour_and_ends_never() -> None:
    clock = Clock()
    guard = CommandGuard(CommandsConfig(session_starts_per_hour=3), clock)
    results = [guard.budget("session", "start") for _ in range(5)]
    assert results[:3] == [None, None, None]
    assert results[3] is not None
    assert "at most 3 an hour" in results[3]
    assert guard.budget("session", "end") is None  # ending a session costs nothing
    clock.now += 1200  # a third of an hour gives one start back
    assert guard.budget("session", "start") is None
    assert guard.budget("session", "start") is not None
    assert guard.snapshot().rate_limited == 3


def test_privacy_commands_are_left_to_the_pause_rule() -> None:
    """cmd/privacy had a token bucket here, which let a script hold the kiosk paused for the whole first
    hour (#31); its pauses are now limited by the pause's own sliding window (agent.privacy.state, vetted
    by the hub: tests/unit/test_privacy.py), so the guard spends nothing on them."""
    guard = CommandGuard(CommandsConfig(), Clock())
    assert [guard.budget("privacy", action) for action in ["pause", "resume"] * 10] == [None] * 20
    assert guard.snapshot().rate_limited == 0


def test_text_is_limited_by_characters() -> None:
    clock = Clock()
    guard = CommandGuard(CommandsConfig(text_chars_per_minute=20_000), clock)
    assert guard.budget("text", chars=10_000) is None
    assert guard.budget("text", chars=10_000) is None
    refusal = guard.budget("text", chars=10_000)
    assert refusal is not None
    assert "20000 characters a minute" in refusal
    clock.now += 30  # half a minute: 10,000 characters back
    assert guard.budget("text", chars=10_000) is None


def test_disabled_commands_name_what_is_allowed() -> None:
    guard = CommandGuard(CommandsConfig(allowed=("session",)))
    assert guard.disabled("session") is None
    why = guard.disabled("text")
    assert why == "cmd/text is disabled on this kiosk (commands.allowed: session)"
    assert guard.snapshot().disabled == 1


def test_retained_commands_are_counted_and_logged_once_per_name() -> None:
    guard = CommandGuard(CommandsConfig())
    assert [guard.retained("session"), guard.retained("session"), guard.retained("text")] == [
        True,
        False,
        True,
    ]
    assert guard.snapshot().retained_ignored == 3


def test_a_flood_gets_a_bounded_number_of_replies_and_announcements() -> None:
    clock = Clock()
    guard = CommandGuard(CommandsConfig(replies_per_s=5.0, discovery_per_minute=6), clock)
    replies: List[bool] = []
    announced = 0
    for _ in range(500):  # 500 cmd/discovery within one instant
        announced += guard.budget("discovery") is None
        replies.append(guard.may_reply())
    assert announced == 6
    assert sum(replies) == 10  # a burst of two seconds' worth, then silence
    assert guard.snapshot().replies_dropped == 490
    assert not guard.announce_allowed()  # Home Assistant's birth shares the budget


def test_a_remote_broker_without_tls_or_login_is_warned_about() -> None:
    assert exposure_warnings(MqttConfig(host="127.0.0.1")) == []
    assert exposure_warnings(MqttConfig(host="localhost")) == []
    assert exposure_warnings(MqttConfig(host="broker.example", tls=True, username="kiosk-1")) == []
    warnings = exposure_warnings(MqttConfig(host="broker.example"))
    assert len(warnings) == 2
    assert "mqtt.tls = false" in warnings[0]
    assert "mqtt.username is empty" in warnings[1]
