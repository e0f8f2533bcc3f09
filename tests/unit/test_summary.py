"""Summarizer: windows, faces, language, aggregates and late replies, with plain observations."""

from __future__ import annotations

from typing import Dict, List, Optional

import pytest

from agent.config import SummaryConfig
from agent.hume.types import Measurement, Observation, Score
from agent.messages import OutMessage, utc_iso
from agent.visit.session import END, START, SessionEvent
from agent.visit.stats import MAX_FACES_LISTED, sentiment_summary, smooth, top_k
from agent.visit.summary import Summarizer

T0 = 1_790_000_000.0  # wall clock of the session start


def scores(**named: float) -> tuple:  # type: ignore[type-arg]
    return tuple(Score(name.replace("_", " "), value) for name, value in named.items())


def obs(
    model: str, at: float, *ms: Measurement, session: Optional[str] = "s1", warning: Optional[str] = None
) -> Observation:
    return Observation(model, T0 + at, tuple(ms), warning_code=warning, session_id=session)


def started(summ: Summarizer, sid: str = "s1", at: float = 100.0, wall: float = T0) -> List[OutMessage]:
    return summ.session_started(SessionEvent(START, sid, at, "presence"), wall)


def ended(summ: Summarizer, sid: str = "s1", at: float = 130.0, wall: float = T0 + 30) -> List[OutMessage]:
    return summ.session_ended(SessionEvent(END, sid, at, "absence"), wall)


def by_topic(msgs: List[OutMessage]) -> Dict[str, List[dict]]:  # type: ignore[type-arg]
    out: Dict[str, List[dict]] = {}  # type: ignore[type-arg]
    for m in msgs:
        out.setdefault(m.topic, []).append(m.payload)
    return out


def test_window_means_top_k_and_time_fields() -> None:
    summ = Summarizer(SummaryConfig(top_k=2, window_s=5.0), "kiosk-1")
    start = started(summ)
    assert [(m.topic, m.retain, m.payload["event"]) for m in start] == [("session", True, "start")]
    summ.add(obs("prosody", 1.0, Measurement(scores(joy=0.8, anger=0.1, awe=0.5), begin_s=0.0, end_s=1.0)))
    summ.add(obs("prosody", 2.0, Measurement(scores(joy=0.4, anger=0.1, awe=0.5), begin_s=1.0, end_s=2.0)))
    assert summ.flush(T0 + 4.9) == []
    [msg] = summ.flush(T0 + 5.0)
    p = msg.payload
    assert msg.topic == "summary/prosody"
    assert not msg.retain
    assert "seq" not in p
    assert p["top"] == [{"name": "joy", "score": 0.6}, {"name": "awe", "score": 0.5}]
    assert p["ts"] == utc_iso(T0 + 2.0)
    assert p["captured"] == {"first": utc_iso(T0 + 1.0), "last": utc_iso(T0 + 2.0)}
    assert p["window"] == {"start": utc_iso(T0), "end": utc_iso(T0 + 5.0)}
    assert p["stream"] == {"begin_s": 0.0, "end_s": 2.0}
    assert (p["device"], p["session"], p["measurements"], p["warnings"]) == ("kiosk-1", "s1", 2, 0)
    # The next window is empty: silence for a whole window ends the voice reading, once.
    [silence] = summ.flush(T0 + 10.0)
    assert (silence.topic, silence.state) == ("summary/prosody", "state/prosody")
    assert (silence.payload["schema"], silence.payload["reason"]) == ("hume-edge/idle/1", "silence")
    assert summ.flush(T0 + 15.0) == []


def test_face_summary_lists_faces_by_id_and_caps_them() -> None:
    summ = Summarizer(SummaryConfig(top_k=1), "kiosk-1")
    started(summ)
    for i in range(MAX_FACES_LISTED + 2):
        repeats = 2 if i < MAX_FACES_LISTED else 1  # the last two faces have fewer measurements
        for _ in range(repeats):
            summ.add(obs("face", 1.0, Measurement(scores(joy=0.5, calmness=0.2), face_id=f"face_{i:02d}")))
    summ.add(obs("face", 1.5, warning="W0103"))
    [msg] = summ.flush(T0 + 10)
    faces = msg.payload["faces"]
    assert [f["face_id"] for f in faces] == [f"face_{i:02d}" for i in range(MAX_FACES_LISTED)]
    assert faces[0] == {"face_id": "face_00", "measurements": 2, "top": [{"name": "joy", "score": 0.5}]}
    assert msg.payload["faces_omitted"] == 2
    assert msg.payload["warnings"] == 1
    assert "top" not in msg.payload


def test_face_without_id_is_unknown() -> None:
    summ = Summarizer(SummaryConfig(), "kiosk-1")
    started(summ)
    summ.add(obs("face", 1.0, Measurement(scores(joy=0.5))))
    [msg] = summ.flush(T0 + 10)
    assert [f["face_id"] for f in msg.payload["faces"]] == ["unknown"]


def test_language_sentiment_and_toxicity() -> None:
    summ = Summarizer(SummaryConfig(), "kiosk-1")
    started(summ)
    sentiment = tuple(Score(str(level), 1.0 if level == 7 else 0.0) for level in range(1, 10))
    other = tuple(Score(str(level), 1.0 if level == 3 else 0.0) for level in range(1, 10))
    tox = (Score("toxic", 0.2), Score("insult", 0.0))
    summ.add(obs("language", 1.0, Measurement(scores(joy=0.3), text="hi", sentiment=sentiment, toxicity=tox)))
    summ.add(obs("language", 2.0, Measurement(scores(joy=0.1), text="bye", sentiment=other, toxicity=tox)))
    [msg] = summ.flush(T0 + 10)
    assert msg.payload["sentiment"]["expected"] == 5.0
    assert msg.payload["sentiment"]["distribution"]["7"] == 0.5
    assert msg.payload["toxicity"] == {"insult": 0.0, "toxic": 0.2}


def test_sentiment_summary_math() -> None:
    assert sentiment_summary({"1": 0.0, "9": 0.0}) is None
    assert sentiment_summary({"bogus": 1.0}) is None
    assert sentiment_summary({"1": 1.0, "9": 3.0}) == {"expected": 7.0, "distribution": {"1": 1.0, "9": 3.0}}


def test_smoothing_blends_windows_and_resets_per_session() -> None:
    summ = Summarizer(SummaryConfig(top_k=1, smoothing=0.5), "kiosk-1")
    started(summ)
    summ.add(obs("burst", 1.0, Measurement(scores(joy=1.0))))
    assert summ.flush(T0 + 5)[0].payload["top"] == [{"name": "joy", "score": 1.0}]
    summ.add(obs("burst", 6.0, Measurement(scores(joy=0.0))))
    assert summ.flush(T0 + 10)[0].payload["top"] == [{"name": "joy", "score": 0.5}]
    ended(summ)
    started(summ, "s2", wall=T0 + 40)
    summ.add(obs("burst", 41.0, Measurement(scores(joy=0.2)), session="s2"))
    assert summ.flush(T0 + 45)[0].payload["top"] == [{"name": "joy", "score": 0.2}]


def test_session_end_flushes_aggregates_and_ends_in_order() -> None:
    summ = Summarizer(SummaryConfig(top_k=2), "kiosk-1")
    started(summ)
    summ.add(obs("face", 1.0, Measurement(scores(joy=0.9, anger=0.1), face_id="a")))
    assert len(summ.flush(T0 + 6)) == 1
    summ.add(obs("face", 7.0, Measurement(scores(joy=0.1, anger=0.3), face_id="b")))
    summ.add(obs("face", 8.0, warning="W0103"))
    summ.add(obs("prosody", 9.0, warning="W0105"))
    msgs = ended(summ)
    # prosody only warned (no summary): only face gets an idle message.
    assert [m.topic for m in msgs] == ["summary/face", "aggregate", "session", "summary/face"]
    agg, end, idle = msgs[1].payload, msgs[2].payload, msgs[3].payload
    assert (idle["schema"], idle["model"], idle["reason"], idle["session"]) == (
        "hume-edge/idle/1",
        "face",
        "absence",
        "s1",
    )
    assert not msgs[3].retain
    assert agg["duration_s"] == 30.0
    assert (agg["started"], agg["ended"], agg["reason"]) == (utc_iso(T0), utc_iso(T0 + 30), "absence")
    assert agg["ts"] == utc_iso(T0 + 9.0)
    assert agg["captured"] == {"first": utc_iso(T0 + 1.0), "last": utc_iso(T0 + 9.0)}
    assert agg["models"]["face"] == {
        "measurements": 2,
        "warnings": 1,
        "top": [{"name": "joy", "score": 0.5}, {"name": "anger", "score": 0.2}],
    }
    assert agg["models"]["prosody"] == {"measurements": 0, "warnings": 1, "top": []}
    assert msgs[2].retain
    assert (end["event"], end["reason"], end["duration_s"], end["started"]) == (
        "end",
        "absence",
        30.0,
        utc_iso(T0),
    )


def test_empty_session_still_has_an_aggregate() -> None:
    summ = Summarizer(SummaryConfig(), "kiosk-1")
    started(summ)
    [agg, end] = ended(summ)
    assert agg.payload["models"] == {}
    assert agg.payload["ts"] == utc_iso(T0 + 30)
    assert "captured" not in agg.payload
    assert end.payload["event"] == "end"


def test_a_window_with_no_face_publishes_nothing() -> None:
    """Only "no face" warnings in a window: no face summary, so no score a dashboard could take as 0."""
    summ = Summarizer(SummaryConfig(window_s=5.0), "kiosk-1")
    started(summ)
    summ.add(obs("face", 1.0, warning="W0103"))
    summ.add(obs("face", 2.0, warning="W0103"))
    assert summ.flush(T0 + 6) == []
    assert [m.topic for m in ended(summ)] == ["aggregate", "session"]


def test_checkpoint_recovers_what_was_published_as_an_interrupted_end() -> None:
    summ = Summarizer(SummaryConfig(top_k=2, window_s=5.0), "kiosk-1")
    started(summ)
    assert list(summ.checkpoints(T0)) == ["s1"]
    summ.add(obs("face", 1.0, Measurement(scores(joy=0.9, anger=0.1), face_id="a")))
    summ.add(obs("language", 2.0, Measurement(scores(joy=0.5), sentiment=scores(**{"5": 1.0}))))
    published = summ.flush(T0 + 6)
    assert [m.topic for m in published] == ["summary/face", "summary/language"]
    checkpoint = summ.checkpoints(T0 + 6)["s1"]

    # A new process (the old one was killed): only the checkpoint survives.
    fresh = Summarizer(SummaryConfig(top_k=2, window_s=5.0), "kiosk-1")
    msgs = fresh.recover("s1", checkpoint, T0 + 100)
    assert [m.topic for m in msgs] == ["aggregate", "session", "summary/face", "summary/language"]
    agg, end = msgs[0].payload, msgs[1].payload
    assert (agg["reason"], agg["started"], agg["ended"], agg["duration_s"]) == (
        "interrupted",
        utc_iso(T0),
        utc_iso(T0 + 6),
        6.0,
    )
    assert agg["models"]["face"]["top"] == [{"name": "joy", "score": 0.9}, {"name": "anger", "score": 0.1}]
    assert agg["models"]["language"]["sentiment"]["expected"] == 5.0
    assert (end["event"], end["reason"], end["ts"], end["duration_s"]) == (
        "end",
        "interrupted",
        utc_iso(T0 + 100),
        6.0,
    )
    assert msgs[1].retain
    assert fresh.stats()["open_sessions"] == 0

    # The same session ended normally has the same aggregate models: the checkpoint is lossless.
    normal = ended(summ)
    assert normal[0].payload["models"] == agg["models"]
    assert summ.checkpoints(T0 + 40) == {}


@pytest.mark.parametrize(
    "checkpoint",
    ["", "{", "[]", '{"v": 99}', '{"v": 1, "started": "x", "at": 1, "published": [], "totals": {}}',
     '{"v": 1, "started": 1, "at": 2, "published": [], "totals": {"face": {"measurements": 1}}}'],
)  # fmt: skip
def test_an_unreadable_checkpoint_is_named(checkpoint: str) -> None:
    with pytest.raises(ValueError, match="checkpoint of session s9 is unreadable"):
        Summarizer(SummaryConfig(), "kiosk-1").recover("s9", checkpoint, T0)


def test_late_and_idle_replies_never_reach_another_session() -> None:
    summ = Summarizer(SummaryConfig(), "kiosk-1")
    started(summ)
    ended(summ)
    started(summ, "s2", wall=T0 + 40)
    summ.add(obs("prosody", 29.0, Measurement(scores(joy=1.0)), session="s1"))  # late reply
    summ.add(obs("prosody", 41.0, Measurement(scores(joy=1.0)), session=None))  # streamed while idle
    assert summ.flush(T0 + 50) == []
    assert summ.stats() == {"open_sessions": 1, "dropped_late": 1, "dropped_idle": 1}


def test_a_session_kept_open_after_the_next_started_gets_its_own_replies() -> None:
    summ = Summarizer(SummaryConfig(), "kiosk-1")
    started(summ)
    started(summ, "s2", wall=T0 + 31)
    summ.add(obs("prosody", 29.0, Measurement(scores(joy=1.0)), session="s1"))
    summ.add(obs("prosody", 32.0, Measurement(scores(anger=1.0)), session="s2"))
    tops = {m.payload["session"]: m.payload["top"] for m in ended(summ) if "top" in m.payload}
    assert tops == {"s1": [{"name": "joy", "score": 1.0}]}
    [s2] = [m for m in summ.flush(T0 + 40) if m.payload["session"] == "s2"]
    assert s2.payload["top"] == [{"name": "anger", "score": 1.0}]


def test_misuse_is_named() -> None:
    with pytest.raises(ValueError, match="device_id"):
        Summarizer(SummaryConfig(), "")
    summ = Summarizer(SummaryConfig(), "kiosk-1")
    with pytest.raises(ValueError, match="expected 'start'"):
        summ.session_started(SessionEvent(END, "s1", 0.0, "absence"), T0)
    with pytest.raises(ValueError, match="session s1 is not open"):
        ended(summ)
    started(summ)
    with pytest.raises(ValueError, match="already open"):
        started(summ)
    with pytest.raises(ValueError, match="expected 'end'"):
        summ.session_ended(SessionEvent(START, "s1", 0.0, "presence"), T0)
    with pytest.raises(ValueError, match=r"observation model 'smell': must be one of face, prosody"):
        summ.add(obs("smell", 1.0))


def test_helpers() -> None:
    assert utc_iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert top_k({"b": 0.5, "a": 0.5, "c": 0.9}, 2) == [
        {"name": "c", "score": 0.9},
        {"name": "a", "score": 0.5},
    ]
    assert smooth(None, {"a": 0.4}, 0.9) == {"a": 0.4}
    assert smooth({"a": 1.0, "gone": 1.0}, {"a": 0.0, "new": 0.5}, 0.25) == {"a": 0.25, "new": 0.5}


def readings(msgs: List[OutMessage]) -> List[tuple]:  # type: ignore[type-arg]
    """(model, summary or the idle's reason) of each message on a summary topic, with its state topic."""
    out = []
    for m in msgs:
        if m.topic.startswith("summary/"):
            p = m.payload
            assert m.state == f"state/{p['model']}", "every reading also sets its live state"
            out.append((p["model"], p.get("reason", "summary")))
    return out


def test_an_empty_window_ends_a_face_or_voice_reading_once_and_language_keeps_its_own() -> None:
    """A window without a face publishes the face's idle (not the last face on screen for the rest of the
    visit), and a whole window of silence the voice models'; once per reading; the end's idle messages
    then cover only what still shows a reading."""
    summ = Summarizer(SummaryConfig(top_k=2, window_s=5.0), "kiosk-1")
    started(summ)
    summ.add(obs("face", 1.0, Measurement(scores(joy=0.9), face_id="a")))
    summ.add(obs("prosody", 1.0, Measurement(scores(joy=0.5))))
    summ.add(obs("language", 1.0, Measurement(scores(joy=0.5))))
    assert readings(summ.flush(T0 + 5)) == [
        ("face", "summary"),
        ("prosody", "summary"),
        ("language", "summary"),
    ]
    summ.add(obs("face", 6.0, warning="W0103"))  # frames went out, no face came back
    summ.add(obs("prosody", 7.0, Measurement(scores(calm=0.5))))
    assert readings(summ.flush(T0 + 10)) == [("face", "no_face"), ("prosody", "summary")]
    assert readings(summ.flush(T0 + 15)) == [("prosody", "silence")]
    assert summ.flush(T0 + 20) == [], "one idle per reading, not one per empty window"
    summ.add(obs("face", 21.0, Measurement(scores(joy=0.7), face_id="a")))
    assert readings(summ.flush(T0 + 25)) == [("face", "summary")]
    end = ended(summ, wall=T0 + 27)
    assert readings(end) == [("face", "absence"), ("language", "absence")], "no idle for a model already idle"
    assert end[1].state == "state/session"


def test_labels_are_lower_case_on_both_backends_with_humes_spelling_kept() -> None:
    """v1 labels are lower case, v0's capitalised: an automation on ``state == 'joy'`` broke when the backend
    changed. Every published name is lower case; v0's own spelling rides along as ``hume_name``."""
    summ = Summarizer(SummaryConfig(top_k=3, window_s=5.0), "kiosk-1")
    started(summ)
    summ.add(obs("prosody", 1.0, Measurement(scores(Joy=0.8, Surprise_positive=0.4, calm=0.6))))
    [msg] = summ.flush(T0 + 5)
    assert msg.payload["top"] == [
        {"name": "joy", "score": 0.8, "hume_name": "Joy"},
        {"name": "calm", "score": 0.6},
        {"name": "surprise positive", "score": 0.4, "hume_name": "Surprise positive"},
    ]
    aggregate = ended(summ)[0].payload
    assert aggregate["models"]["prosody"]["top"][0] == {"name": "joy", "score": 0.8, "hume_name": "Joy"}


def test_the_start_idles_say_no_model_has_a_reading() -> None:
    states = Summarizer(SummaryConfig(), "kiosk-1").idle_at_start(("face", "prosody"), T0)
    assert {topic: (p["model"], p["reason"], "session" in p, "seq" in p) for topic, p in states.items()} == {
        "state/face": ("face", "start", False, False),
        "state/prosody": ("prosody", "start", False, False),
    }
