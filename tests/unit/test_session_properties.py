"""SessionTracker under random inputs, commands and forward time jumps: the invariants always hold."""

from __future__ import annotations

import itertools
from typing import List, Optional, Tuple, Union

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import SessionConfig
from agent.visit.session import END, START, Reason, SessionEvent, SessionTracker

START_REASONS = {Reason.PRESENCE, Reason.ALWAYS, Reason.COMMAND}
END_REASONS = {Reason.ABSENCE, Reason.MAX_DURATION, Reason.COMMAND}

Observe = Tuple[str, Optional[bool], Optional[bool], Optional[bool]]
Command = Tuple[str, str]
Op = Union[Observe, Command, Tuple[str]]

maybe_bool = st.one_of(st.none(), st.booleans())
nothing = st.none()
ops = st.one_of(
    # One input at a time, as the service reports them, and now and then several at once.
    st.tuples(st.just("observe"), st.booleans(), nothing, nothing),
    st.tuples(st.just("observe"), nothing, st.booleans(), nothing),
    st.tuples(st.just("observe"), nothing, nothing, st.booleans()),
    st.tuples(st.just("observe"), maybe_bool, maybe_bool, maybe_bool),
    st.tuples(st.just("command"), st.sampled_from(["start", "end"])),
    st.tuples(st.just("tick")),
    st.tuples(st.just("tick")),
)
# Mostly small steps (debounce and grace play out), sometimes a jump past every timer.
small_steps = st.one_of(st.sampled_from([0.0, 0.25, 1.0, 2.5, 6.0]), st.floats(0, 3))
steps = st.lists(
    st.tuples(st.one_of(small_steps, small_steps, small_steps, st.floats(0, 500)), ops), max_size=80
)
configs = st.builds(
    SessionConfig,
    mode=st.sampled_from(["presence"] * 3 + ["always", "command"]),
    debounce_s=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 5)),
    grace_s=st.one_of(st.sampled_from([0.0, 2.0, 5.0]), st.floats(0, 20)),
    max_session_s=st.floats(10, 200),
    stream_when_idle=st.booleans(),
)


def apply(t: SessionTracker, now: float, op: Op) -> List[SessionEvent]:
    if op[0] == "observe":
        _, presence, voice, face = op  # type: ignore[misc]
        return t.observe(now, presence=presence, voice=voice, face=face)
    if op[0] == "command":
        return t.command(now, op[1])  # type: ignore[misc]
    return t.tick(now)


@settings(max_examples=300, deadline=None)
@given(cfg=configs, script=steps)
def test_sessions_never_overlap_and_every_event_is_a_clean_boundary(
    cfg: SessionConfig, script: List[Tuple[float, Op]]
) -> None:
    counter = itertools.count()
    t = SessionTracker(cfg, new_id=lambda: f"id{next(counter)}")
    now = 0.0
    active: Optional[str] = None
    started_at = 0.0
    starts: List[str] = []
    ended: List[str] = []
    for dt, op in script:
        now += dt
        for ev in apply(t, now, op):
            assert ev.at == now
            if ev.kind == START:
                assert active is None, "a session started while another was active"
                assert ev.reason in START_REASONS
                assert ev.session_id not in starts, "session ids must be unique"
                if cfg.mode != "always":
                    assert ev.reason != Reason.ALWAYS
                active, started_at = ev.session_id, ev.at
                starts.append(ev.session_id)
            else:
                assert ev.kind == END
                assert ev.session_id == active, "an end for a session that is not the active one"
                assert ev.reason in END_REASONS
                assert ev.session_id not in ended
                ended.append(ev.session_id)
                active = None
        assert t.session_id == active
        assert t.active == (active is not None)
        assert t.should_stream == (active is not None or cfg.stream_when_idle)
        if active is not None:
            assert now - started_at < cfg.max_session_s
        if cfg.mode == "always" and op[0] in ("observe", "tick"):
            assert t.active


@settings(max_examples=200, deadline=None)
@given(cfg=configs, script=steps)
def test_voice_alone_never_starts_a_session(cfg: SessionConfig, script: List[Tuple[float, Op]]) -> None:
    t = SessionTracker(cfg)
    now = 0.0
    for dt, op in script:
        now += dt
        if op[0] == "observe":
            _, _, voice, _ = op  # type: ignore[misc]
            events = t.observe(now, presence=False, voice=voice, face=False)
        else:
            events = t.tick(now)
        assert [e for e in events if e.kind == START and e.reason == Reason.PRESENCE] == []


MARGIN_S = 1e-6
"""Added to a timer's deadline: ``(now + d) - now`` may round to just below ``d``."""

presence_configs = st.builds(
    SessionConfig,
    mode=st.just("presence"),
    debounce_s=st.floats(0, 5),
    grace_s=st.floats(0, 20),
    max_session_s=st.floats(10, 200),
    stream_when_idle=st.booleans(),
)


def run(t: SessionTracker, script: List[Tuple[float, Op]]) -> float:
    now = 0.0
    for dt, op in script:
        now += dt
        apply(t, now, op)
    return now


@settings(max_examples=200, deadline=None)
@given(cfg=presence_configs, script=steps)
def test_silence_for_grace_ends_every_session_not_held_by_a_command(
    cfg: SessionConfig, script: List[Tuple[float, Op]]
) -> None:
    t = SessionTracker(cfg)
    now = run(t, [(dt, op) for dt, op in script if op[0] != "command"])
    t.observe(now, presence=False, voice=False, face=False)
    t.tick(now + cfg.grace_s + MARGIN_S)
    assert not t.active


@settings(max_examples=200, deadline=None)
@given(cfg=presence_configs, script=steps)
def test_presence_for_debounce_starts_a_session_unless_dismissed(
    cfg: SessionConfig, script: List[Tuple[float, Op]]
) -> None:
    t = SessionTracker(cfg)
    now = run(t, [(dt, op) for dt, op in script if op != ("command", "end")])
    t.observe(now, presence=True)
    first = now + cfg.debounce_s + MARGIN_S
    t.tick(first)
    if not t.active:  # a max_duration cut at that very tick restarts the debounce, once
        t.tick(first + cfg.debounce_s + MARGIN_S)
    assert t.active
