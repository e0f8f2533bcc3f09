"""The visit recorder (agent.visit.recorder): messages queued with their checkpoints; a crash recovered."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from agent.config import SessionConfig, SummaryConfig
from agent.hume.types import Measurement, Observation, Score
from agent.messages import OutMessage
from agent.visit.recorder import SESSION_STATE_PREFIX, VisitRecorder
from agent.visit.session import SessionEvent

Queued = List[Tuple[List[OutMessage], Dict[str, Optional[str]]]]


def recorder(queued: Queued, boundaries: Optional[List[str]] = None, stored: bool = True) -> VisitRecorder:
    def queue(msgs: List[OutMessage], state: Dict[str, Optional[str]]) -> bool:
        queued.append((list(msgs), dict(state)))
        return stored

    def boundary(ev: SessionEvent) -> None:
        if boundaries is not None:
            boundaries.append(f"{ev.kind}:{len(queued)}")

    return VisitRecorder(
        SessionConfig(mode="command"),
        SummaryConfig(),
        "kiosk1",
        queue,
        models=("face", "prosody"),
        per_face=True,
        wall=lambda: 1_800_000_000.0,
        on_boundary=boundary,
    )


def test_a_visit_is_queued_with_its_checkpoint_and_the_checkpoint_leaves_with_its_end() -> None:
    queued: Queued = []
    boundaries: List[str] = []
    rec = recorder(queued, boundaries)
    rec.apply(rec.sessions.command(0.0, "start"))
    sid = rec.sessions.session_id
    assert sid is not None
    msgs, state = queued[0]
    assert [m.topic for m in msgs] == ["session"]
    assert list(state) == [SESSION_STATE_PREFIX + sid]
    assert state[SESSION_STATE_PREFIX + sid]  # the running aggregate, as a document
    rec.apply(rec.sessions.command(5.0, "end"))
    msgs, state = queued[-1]
    assert "session" in [m.topic for m in msgs]
    assert state == {SESSION_STATE_PREFIX + sid: None}  # deleted in the same transaction as the end
    # The boundary callback runs before each event's messages are queued (the notice goes first).
    assert boundaries == ["start:0", "end:1"]


def test_a_checkpoint_the_outbox_could_not_store_is_not_deleted_later() -> None:
    queued: Queued = []
    rec = recorder(queued, stored=False)  # disk full
    rec.apply(rec.sessions.command(0.0, "start"))
    assert len(queued[0][1]) == 1  # the start tried to write its checkpoint
    rec.apply(rec.sessions.command(5.0, "end"))
    assert queued[-1][1] == {}, "nothing to delete: it was never stored"


def test_a_session_left_open_by_a_crash_is_ended_as_interrupted_by_the_next_start() -> None:
    first: Queued = []
    crashed = recorder(first)
    crashed.apply(crashed.sessions.command(0.0, "start"))
    checkpoints = {k: v for k, v in first[0][1].items() if v is not None}

    second: Queued = []
    rec = recorder(second)
    assert rec.recover(checkpoints) == 1
    msgs, state = second[0]
    ends = [m.payload for m in msgs if m.topic == "session"]
    assert [e["event"] for e in ends] == ["end"]
    assert ends[0]["reason"] == "interrupted"
    assert state == {key: None for key in checkpoints}


def test_an_unreadable_checkpoint_still_gets_its_end() -> None:
    queued: Queued = []
    rec = recorder(queued)
    key = SESSION_STATE_PREFIX + "s-broken"
    assert rec.recover({key: "{not json"}) == 1
    msgs, state = queued[0]
    assert [m.payload["event"] for m in msgs if m.topic == "session"] == ["end"]
    assert state == {key: None}


def test_shutdown_ends_the_open_session() -> None:
    queued: Queued = []
    rec = recorder(queued)
    rec.apply(rec.sessions.command(0.0, "start"))
    rec.shutdown(3.0)
    ends = [
        m.payload for msgs, _ in queued for m in msgs if m.topic == "session" and m.payload["event"] == "end"
    ]
    assert [e["reason"] for e in ends] == ["shutdown"]
    assert not rec.sessions.active


def test_an_open_sessions_checkpoint_is_rewritten_at_most_once_a_minute() -> None:
    """Flash: a rewrite every 5 s window cost a few KB per message; a crash may lose at most a minute of
    the interrupted session's aggregate (its windows' own summaries were queued)."""
    queued: Queued = []
    wall = [1_800_000_000.0]

    def queue(msgs: List[OutMessage], state: Dict[str, Optional[str]]) -> bool:
        queued.append((list(msgs), dict(state)))
        return True

    rec = VisitRecorder(
        SessionConfig(mode="command"), SummaryConfig(), "kiosk1", queue,
        models=("face",), per_face=True, wall=lambda: wall[0],
    )  # fmt: skip
    rec.apply(rec.sessions.command(0.0, "start"))
    key = SESSION_STATE_PREFIX + str(rec.sessions.session_id)
    assert key in queued[-1][1]  # written at the start
    written = []
    for window in range(1, 25):  # two minutes of 5 s windows, each with a message
        wall[0] += 5.0
        rec.publish([OutMessage("summary/face", {"n": window})])
        if key in queued[-1][1]:
            written.append(window)
    assert written == [12, 24]  # 60 s after the start, then 60 s after that
    wall[0] -= 3600.0  # a wall clock stepped back an hour (a Pi's first NTP sync): due at once
    rec.publish([OutMessage("summary/face", {"n": 0})])
    assert key in queued[-1][1]
    rec.apply(rec.sessions.command(200.0, "end"))
    assert queued[-1][1] == {key: None}  # deleted with the end, whenever it comes


def test_a_models_first_reading_rewrites_the_checkpoint_so_a_crash_idles_it() -> None:
    """Within the minute, a change in what shows a reading is written at once: a checkpoint written only at
    the start listed no model, so a visit killed in its first minute ended with no idle message and its
    last face stayed on ``state/face`` (test_session_lifecycle's SIGKILL)."""
    queued: Queued = []
    wall = [1_800_000_000.0]

    def queue(msgs: List[OutMessage], state: Dict[str, Optional[str]]) -> bool:
        queued.append((list(msgs), dict(state)))
        return True

    rec = VisitRecorder(
        SessionConfig(mode="command"), SummaryConfig(window_s=5.0), "kiosk1", queue,
        models=("face",), per_face=True, wall=lambda: wall[0],
    )  # fmt: skip
    rec.apply(rec.sessions.command(0.0, "start"))
    key = SESSION_STATE_PREFIX + str(rec.sessions.session_id)
    face = Measurement((Score("joy", 0.7),), face_id="face_0@abc123")
    rec.add(Observation("face", wall[0] + 1, (face,), session_id=rec.sessions.session_id))
    wall[0] += 5.0
    rec.flush()
    checkpoint = queued[-1][1].get(key)
    assert checkpoint is not None, "the first reading rewrites the checkpoint within the minute"
    after_crash = VisitRecorder(
        SessionConfig(mode="command"), SummaryConfig(), "kiosk1", queue,
        models=("face",), per_face=True, wall=lambda: wall[0] + 30,
    )  # fmt: skip
    after_crash.recover({key: checkpoint})
    ending = [(m.topic, m.payload["schema"]) for m in queued[-1][0]]
    assert ending[-1] == ("summary/face", "hume-edge/idle/1"), ending
