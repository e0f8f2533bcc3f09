"""SessionTracker: the documented transitions, one scenario each, with plain values and times."""

from __future__ import annotations

import itertools
from typing import Callable, List, Tuple

import pytest

from agent.config import SessionConfig
from agent.visit.session import END, START, Reason, SessionEvent, SessionTracker


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"s{next(counter)}"


def tracker(**kw: object) -> SessionTracker:
    base = {"debounce_s": 1.0, "grace_s": 5.0, "max_session_s": 100.0}
    base.update(kw)
    return SessionTracker(SessionConfig(**base), new_id=ids())  # type: ignore[arg-type]


def kinds(events: List[SessionEvent]) -> List[Tuple[str, str, float, str]]:
    return [(e.kind, e.session_id, e.at, e.reason) for e in events]


def test_presence_must_hold_for_debounce() -> None:
    t = tracker()
    assert t.observe(0.0, presence=True) == []
    assert t.observe(0.5, presence=False) == []
    assert t.observe(0.6, presence=True) == []
    assert t.tick(1.5) == []  # the run restarted at 0.6
    assert kinds(t.tick(1.6)) == [(START, "s1", 1.6, Reason.PRESENCE)]
    assert t.active
    assert t.session_id == "s1"


def test_debounce_due_says_when_the_start_comes_and_only_while_a_debounce_runs() -> None:
    t = tracker()
    assert t.debounce_due() is None
    t.observe(0.6, presence=True)
    assert t.debounce_due() == pytest.approx(1.6)
    assert kinds(t.tick(t.debounce_due() or 0.0)) == [(START, "s1", 1.6, Reason.PRESENCE)]
    assert t.debounce_due() is None  # active: no debounce
    t.command(2.0, "end")
    assert t.debounce_due() is None  # dismissed while still in view: presence must drop first
    t.observe(3.0, presence=False)
    assert t.debounce_due() is None
    assert tracker(mode="command").observe(0.0, presence=True) == []
    commanded = tracker(mode="command")
    commanded.observe(0.0, presence=True)
    assert commanded.debounce_due() is None  # presence starts nothing in command mode


def test_a_debounce_is_announced_under_the_id_its_session_starts_with() -> None:
    """The hub raises the visit's notice at the debounce's first frame, naming this id (agent.hub)."""
    t = tracker()
    assert t.pending_id is None
    t.observe(0.0, presence=True)
    glance = t.pending_id
    assert glance == "s1"
    t.observe(0.5, presence=False)  # a glance: the debounce failed, its id is never used
    assert t.pending_id is None
    t.observe(0.6, presence=True)
    assert t.pending_id == "s2"
    assert t.pending_id == "s2"  # stable while the debounce runs
    assert kinds(t.tick(1.6)) == [(START, "s2", 1.6, Reason.PRESENCE)]
    assert t.pending_id is None  # active
    commanded = tracker()
    commanded.observe(0.0, presence=True)
    assert commanded.pending_id == "s1"
    assert kinds(commanded.command(0.2, "start")) == [(START, "s2", 0.2, Reason.COMMAND)]


def test_absence_must_hold_for_grace_and_presence_resets_it() -> None:
    t = tracker()
    t.observe(0.0, presence=True)
    t.tick(1.0)
    t.observe(2.0, presence=False)
    assert t.tick(6.9) == []
    t.observe(6.95, presence=True)  # back in time: grace starts over
    t.observe(7.0, presence=False)
    assert t.tick(11.9) == []
    assert kinds(t.tick(12.0)) == [(END, "s1", 12.0, Reason.ABSENCE)]
    assert not t.active
    assert t.session_id is None


def test_voice_keeps_a_session_alive_but_cannot_start_one() -> None:
    t = tracker()
    assert t.observe(0.0, voice=True) == []
    assert t.tick(30.0) == []
    assert not t.active
    t.observe(31.0, presence=True)
    t.tick(32.0)
    t.observe(33.0, presence=False)  # looked away, still talking
    assert t.tick(60.0) == []
    t.observe(60.0, voice=False)
    assert kinds(t.tick(65.0)) == [(END, "s1", 65.0, Reason.ABSENCE)]


def test_hume_face_counts_as_presence_only_while_active_unless_streaming_when_idle() -> None:
    t = tracker()
    assert t.observe(0.0, face=True) == []
    assert t.tick(10.0) == []  # a late reply of an ended session starts nothing
    t.observe(10.0, presence=True)
    t.tick(11.0)
    t.observe(12.0, presence=False, face=True)  # the local check misses, Hume sees a face
    assert t.tick(30.0) == []
    t.observe(30.0, face=False)
    assert kinds(t.tick(35.0)) == [(END, "s1", 35.0, Reason.ABSENCE)]

    idle = tracker(stream_when_idle=True)
    assert idle.should_stream
    idle.observe(0.0, face=True)
    assert kinds(idle.tick(1.0)) == [(START, "s1", 1.0, Reason.PRESENCE)]


def test_face_seen_is_forgotten_at_the_end_of_a_session() -> None:
    t = tracker(max_session_s=10.0)
    t.observe(0.0, presence=True)
    t.tick(1.0)
    t.observe(2.0, presence=False, face=True)
    assert kinds(t.tick(11.0)) == [(END, "s1", 11.0, Reason.MAX_DURATION)]
    assert t.tick(20.0) == []  # the old session's face verdict starts nothing


def test_max_duration_cuts_and_restarts_after_a_fresh_debounce() -> None:
    t = tracker(max_session_s=10.0)
    t.observe(0.0, presence=True)
    t.tick(1.0)
    assert kinds(t.tick(11.0)) == [(END, "s1", 11.0, Reason.MAX_DURATION)]
    assert t.tick(11.5) == []
    assert kinds(t.tick(12.0)) == [(START, "s2", 12.0, Reason.PRESENCE)]


def test_max_duration_with_zero_debounce_rolls_over_in_one_call() -> None:
    t = tracker(max_session_s=10.0, debounce_s=0.0)
    assert kinds(t.observe(0.0, presence=True)) == [(START, "s1", 0.0, Reason.PRESENCE)]
    assert kinds(t.tick(10.0)) == [
        (END, "s1", 10.0, Reason.MAX_DURATION),
        (START, "s2", 10.0, Reason.PRESENCE),
    ]


def test_timers_due_before_an_input_fire_first() -> None:
    t = tracker()
    t.observe(0.0, presence=True)
    t.tick(1.0)
    t.observe(2.0, presence=False)
    # Nobody for 20 s (no ticks), then someone: the first visit ended, a new one is debounced.
    assert kinds(t.observe(22.0, presence=True)) == [(END, "s1", 22.0, Reason.ABSENCE)]
    assert kinds(t.tick(23.0)) == [(START, "s2", 23.0, Reason.PRESENCE)]


def test_a_commanded_session_nobody_attends_ends_after_grace() -> None:
    """One forged ``start`` on an open broker streamed 900 s with nobody present (#31): now grace_s."""
    for mode in ("presence", "command"):
        t = tracker(mode=mode)
        assert kinds(t.command(0.0, "start")) == [(START, "s1", 0.0, Reason.COMMAND)]
        assert t.tick(4.0) == []
        assert t.command(4.0, "start") == []  # a re-triggering sensor counts the grace again from now
        assert t.tick(8.5) == []
        assert kinds(t.tick(9.0)) == [(END, "s1", 9.0, Reason.ABSENCE)], mode


def test_a_commanded_session_someone_attends_lasts() -> None:
    t = tracker(mode="command")
    t.command(0.0, "start")
    t.observe(3.0, presence=True)
    assert t.tick(50.0) == []
    t.observe(60.0, presence=False, voice=True)  # looked away, still talking
    assert t.tick(64.0) == []
    t.observe(64.0, voice=False)
    assert kinds(t.tick(69.0)) == [(END, "s1", 69.0, Reason.ABSENCE)]


def test_command_start_forces_and_holds_a_session() -> None:
    t = tracker(hold_commanded=True)
    assert kinds(t.command(0.0, "start")) == [(START, "s1", 0.0, Reason.COMMAND)]
    assert t.tick(50.0) == []  # nobody seen, yet held
    assert t.command(60.0, "start") == []  # a re-triggering sensor does not cut the visit
    assert kinds(t.tick(100.0)) == [(END, "s1", 100.0, Reason.MAX_DURATION)]


def test_command_start_holds_a_presence_session() -> None:
    t = tracker(hold_commanded=True)
    t.observe(0.0, presence=True)
    t.tick(1.0)
    assert t.command(2.0, "start") == []
    t.observe(3.0, presence=False)
    assert t.tick(50.0) == []
    assert kinds(t.command(51.0, "end")) == [(END, "s1", 51.0, Reason.COMMAND)]


def test_command_end_blocks_presence_until_it_drops() -> None:
    t = tracker()
    t.observe(0.0, presence=True)
    t.tick(1.0)
    assert kinds(t.command(2.0, "end")) == [(END, "s1", 2.0, Reason.COMMAND)]
    assert t.tick(30.0) == []  # the dismissed visitor still stands there
    t.observe(31.0, presence=False)
    t.observe(32.0, presence=True)
    assert kinds(t.tick(33.0)) == [(START, "s2", 33.0, Reason.PRESENCE)]


def test_command_end_while_idle_cancels_a_pending_presence_start() -> None:
    t = tracker()
    t.observe(0.0, presence=True)
    assert t.command(0.5, "end") == []
    assert t.tick(5.0) == []


def test_command_start_after_end_overrides_the_block() -> None:
    t = tracker()
    t.observe(0.0, presence=True)
    t.tick(1.0)
    events = t.command(2.0, "end") + t.command(2.0, "start")
    assert kinds(events) == [(END, "s1", 2.0, Reason.COMMAND), (START, "s2", 2.0, Reason.COMMAND)]


def test_command_mode_never_starts_on_presence() -> None:
    t = tracker(mode="command", hold_commanded=True)
    t.observe(0.0, presence=True)
    assert t.tick(10.0) == []
    assert not t.should_stream
    assert kinds(t.command(10.0, "start")) == [(START, "s1", 10.0, Reason.COMMAND)]
    assert t.should_stream
    t.observe(11.0, presence=False, voice=False)
    assert t.tick(50.0) == []  # held
    assert kinds(t.command(50.0, "end")) == [(END, "s1", 50.0, Reason.COMMAND)]
    t.observe(51.0, presence=True)
    assert t.tick(60.0) == []


def test_always_mode_starts_at_once_and_rolls_over() -> None:
    t = tracker(mode="always", max_session_s=10.0)
    assert kinds(t.tick(0.0)) == [(START, "s1", 0.0, Reason.ALWAYS)]
    assert t.observe(5.0, presence=False) == []
    assert kinds(t.tick(10.0)) == [(END, "s1", 10.0, Reason.MAX_DURATION), (START, "s2", 10.0, Reason.ALWAYS)]
    assert kinds(t.command(12.0, "end")) == [
        (END, "s2", 12.0, Reason.COMMAND),
        (START, "s3", 12.0, Reason.ALWAYS),
    ]
    assert t.command(13.0, "start") == []


@pytest.mark.parametrize("mode", ["presence", "always", "command"])
def test_shutdown_ends_with_its_own_reason_and_never_rolls_over(mode: str) -> None:
    t = tracker(mode=mode)
    assert t.shutdown(0.5) == []  # nothing open: nothing to end
    t.command(1.0, "start")
    assert kinds(t.shutdown(2.0)) == [(END, "s1", 2.0, Reason.SHUTDOWN)]
    assert not t.active


def test_should_stream_follows_the_session() -> None:
    t = tracker()
    assert not t.should_stream
    t.observe(0.0, presence=True)
    t.tick(1.0)
    assert t.should_stream


def test_time_going_backwards_is_held_at_the_latest_now() -> None:
    t = tracker(debounce_s=0.0)
    t.tick(10.0)
    assert [e.at for e in t.observe(5.0, presence=True)] == [10.0]


def test_zero_grace_ends_as_soon_as_evidence_is_gone_not_before() -> None:
    t = tracker(grace_s=0.0, debounce_s=0.0)
    t.observe(0.0, presence=True)
    assert t.tick(50.0) == []
    assert kinds(t.observe(51.0, presence=False)) == [(END, "s1", 51.0, Reason.ABSENCE)]


def test_bad_command_and_mode_are_named() -> None:
    with pytest.raises(ValueError, match=r"session command 'pause': must be one of start, end"):
        tracker().command(0.0, "pause")
    with pytest.raises(ValueError, match=r"session.mode = 'sometimes'"):
        tracker(mode="sometimes")


def test_default_ids_are_unique_hex() -> None:
    t = SessionTracker(SessionConfig(debounce_s=0.0, max_session_s=10.0))
    seen = set()
    for i in range(5):
        for ev in t.observe(float(i * 10), presence=True):
            seen.add(ev.session_id)
    assert len(seen) == 5
    assert all(len(s) == 32 and int(s, 16) >= 0 for s in seen)
