"""Every message the agent publishes validates against the shipped JSON Schema, and the schema has teeth.

Sequenced messages (summary, session, aggregate) are checked after adding ``seq`` as the outbox does;
each is checked against the root schema and against the definition whose ``x-topic`` matches its topic.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import config
from agent.config import MqttConfig, OutboxConfig, SessionConfig, SummaryConfig
from agent.hume.types import MODELS, Measurement, Observation, Score
from agent.hume.v0.protocol import EXPRESSIONS, TOXICITY_CATEGORIES
from agent.messages import OutMessage
from agent.mqtt.commands import CommandError, parse_command
from agent.mqtt.outbox import Outbox, utc_iso
from agent.mqtt.publisher import Publisher
from agent.ops import identity
from agent.ops.health import ServiceHealth
from agent.visit.session import SessionEvent, SessionTracker
from agent.visit.summary import SCHEMA_PATH, Summarizer

SCHEMA: Dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
ROOT = jsonschema.Draft202012Validator(SCHEMA)
SEQUENCED = ("summary", "session", "aggregate", "idle")
T0 = 1_790_000_000.0


def definition(name: str) -> jsonschema.Draft202012Validator:
    root = {k: v for k, v in SCHEMA.items() if k != "oneOf"}
    return jsonschema.Draft202012Validator({**root, "$ref": f"#/$defs/{name}"})


def definition_for_topic(topic: str, payload: Optional[Dict[str, Any]] = None) -> str:
    """The definition whose ``x-topic`` matches; where several share a topic, the one whose ``schema``
    constant the payload names (``summary/face`` carries summaries and idle messages)."""
    matches = []
    for name, d in SCHEMA["$defs"].items():
        pattern = d.get("x-topic")
        if pattern and re.fullmatch(re.sub(r"\\\{[a-z_]+\\\}", "[a-z]+", re.escape(pattern)), topic):
            matches.append(str(name))
    if len(matches) > 1 and payload is not None:
        matches = [
            n for n in matches if SCHEMA["$defs"][n]["properties"]["schema"]["const"] == payload["schema"]
        ]
    assert len(matches) == 1, f"x-topic definitions matching {topic!r}: {matches}"
    return matches[0]


def check_published(msgs: List[OutMessage], first_seq: int = 0) -> None:
    for seq, msg in enumerate(msgs, first_seq):
        assert "seq" not in msg.payload, "the outbox stamps seq, not the summarizer"
        body = json.loads(json.dumps(msg.payload))  # what goes on the wire
        body.setdefault("seq", seq)
        ROOT.validate(body)
        name = definition_for_topic(msg.topic, body)
        assert name in SEQUENCED
        definition(name).validate(body)


def test_the_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


# --------------------------------------------------------------------------------------------------
# Random scenarios through the real tracker and summarizer

unit = st.floats(0.0, 1.0)
maybe_range = st.one_of(st.none(), st.tuples(st.floats(0, 100), st.floats(0, 10)))


@st.composite
def measurements(draw: st.DrawFn, model: str) -> Measurement:
    emotions = draw(st.dictionaries(st.sampled_from(EXPRESSIONS), unit, max_size=5))
    span = draw(maybe_range)
    sentiment = toxicity = None
    if model == "language":
        levels = draw(st.dictionaries(st.sampled_from([str(i) for i in range(1, 10)]), unit))
        sentiment = tuple(Score(n, p) for n, p in levels.items()) or None
        tox = draw(st.dictionaries(st.sampled_from(TOXICITY_CATEGORIES), unit))
        toxicity = tuple(Score(n, p) for n, p in tox.items()) or None
    return Measurement(
        emotions=tuple(Score(n, s) for n, s in emotions.items()),
        face_id=draw(st.sampled_from([None, "unknown", "face_0", "face_1"])) if model == "face" else None,
        begin_s=None if span is None else span[0],
        end_s=None if span is None else span[0] + span[1],
        sentiment=sentiment,
        toxicity=toxicity,
    )


@st.composite
def observation_ops(draw: st.DrawFn) -> Tuple[str, str, Tuple[Measurement, ...], Optional[str], str]:
    model = draw(st.sampled_from(MODELS))
    ms = tuple(draw(st.lists(measurements(model), max_size=3)))
    warning = "W0103" if not ms and draw(st.booleans()) else None
    return ("obs", model, ms, warning, draw(st.sampled_from(["current"] * 4 + ["previous", "none"])))


scenario_ops = st.one_of(
    st.tuples(st.just("presence"), st.booleans()),
    st.tuples(st.just("voice"), st.booleans()),
    st.tuples(st.just("cmd"), st.sampled_from(["start", "end"])),
    st.tuples(st.just("tick")),
    *[observation_ops()] * 4,  # mostly replies: they are what summaries are made of
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(["presence", "always", "command"]),
    summary=st.builds(SummaryConfig, top_k=st.integers(1, 53), window_s=st.floats(0.5, 20), smoothing=unit),
    script=st.lists(st.tuples(st.floats(0, 10), scenario_ops), max_size=60),
)
def test_every_message_of_a_random_scenario_validates(
    mode: str, summary: SummaryConfig, script: List[Tuple[float, Tuple[Any, ...]]]
) -> None:
    counter = itertools.count()
    tracker = SessionTracker(
        SessionConfig(mode=mode, max_session_s=30.0), new_id=lambda: f"{next(counter):032x}"
    )
    summ = Summarizer(summary, "kiosk-1")
    out: List[OutMessage] = []
    previous: List[str] = []

    def apply(events: List[SessionEvent], wall: float) -> None:
        for ev in events:
            if ev.kind == "start":
                out.extend(summ.session_started(ev, wall))
            else:
                out.extend(summ.session_ended(ev, wall))
                previous.append(ev.session_id)

    now = 0.0
    for dt, op in script:
        now += dt
        wall = T0 + now
        if op[0] == "presence":
            apply(tracker.observe(now, presence=op[1]), wall)
        elif op[0] == "voice":
            apply(tracker.observe(now, voice=op[1]), wall)
        elif op[0] == "cmd":
            apply(tracker.command(now, op[1]), wall)
        elif op[0] == "tick":
            apply(tracker.tick(now), wall)
        else:
            _, model, ms, warning, whose = op
            sid = {
                "current": tracker.session_id,
                "previous": previous[-1] if previous else None,
                "none": None,
            }
            summ.add(Observation(model, wall - 0.2, ms, warning_code=warning, session_id=sid[whose]))
        out.extend(summ.flush(wall))
    # A SIGKILL here: the next start ends each open session from its checkpoint (reason interrupted).
    fresh = Summarizer(summary, "kiosk-1")
    for sid, checkpoint in summ.checkpoints(T0 + now).items():
        out.extend(fresh.recover(sid, checkpoint, T0 + now + 60))
    # Or a clean stop (reason shutdown).
    apply(tracker.shutdown(now + 1), T0 + now + 1)
    check_published(out)


# --------------------------------------------------------------------------------------------------
# The schema rejects what it should


def sample_summary() -> Dict[str, Any]:
    summ = Summarizer(SummaryConfig(), "kiosk-1")
    summ.session_started(SessionEvent("start", "s1", 0.0, "presence"), T0)
    summ.add(
        Observation(
            "prosody", T0 + 1, (Measurement((Score("Joy", 0.5),), begin_s=0, end_s=1),), session_id="s1"
        )
    )
    [msg] = summ.flush(T0 + 10)
    return dict(msg.payload, seq=7)


def test_a_sample_summary_is_valid() -> None:
    ROOT.validate(sample_summary())


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda p: p.pop("seq"), "seq is required"),
        (lambda p: p.update(seq=-1), "seq is >= 0"),
        (lambda p: p.update(seq=1.5), "seq is an integer"),
        (lambda p: p.pop("ts"), "ts is required"),
        (lambda p: p.update(ts="2026-11-24 21:00:00"), "ts is ISO-8601 UTC"),
        (lambda p: p.update(schema="hume-edge/summary/2"), "an unknown version"),
        (lambda p: p.update(extra=1), "no unknown fields"),
        (lambda p: p["top"][0].update(score=1.5), "scores are in [0, 1]"),
        (lambda p: p.update(model="smell"), "a known model"),
        (lambda p: p.update(faces=[]), "faces only for the face model"),
        (lambda p: p.pop("device"), "device is required"),
    ],
)
def test_the_schema_rejects(change: Any, why: str) -> None:
    payload = copy.deepcopy(sample_summary())
    change(payload)
    assert not ROOT.is_valid(payload), why


def test_idle_messages_of_empty_windows_and_of_the_start() -> None:
    summ = Summarizer(SummaryConfig(window_s=5.0), "kiosk-1")
    start = summ.idle_at_start(("face", "prosody"), T0)
    assert sorted(start) == ["state/face", "state/prosody"]
    for payload in start.values():
        definition("live_state").validate(payload)
        assert not ROOT.is_valid(payload), "not a sequenced message: it is never queued"
    summ.session_started(SessionEvent("start", "s1", 0.0, "presence"), T0)
    summ.add(Observation("face", T0 + 1, (Measurement((Score("Joy", 0.5),), face_id="f"),), session_id="s1"))
    check_published(summ.flush(T0 + 5))
    no_face = summ.flush(T0 + 10)
    assert [m.payload["reason"] for m in no_face] == ["no_face"]
    check_published(no_face)
    assert not definition("live_state").is_valid(dict(start["state/face"], session="s1"))
    definition("live_state").validate(dict(no_face[0].payload, seq=3))
    assert not ROOT.is_valid(dict(no_face[0].payload, seq=1, session=None))
    assert not ROOT.is_valid(dict(no_face[0].payload, seq=1, reason="bored"))


def test_end_reasons_and_idle_messages() -> None:
    summ = Summarizer(SummaryConfig(), "kiosk-1")
    summ.session_started(SessionEvent("start", "s1", 0.0, "presence"), T0)
    summ.add(Observation("face", T0 + 1, (Measurement((Score("Joy", 0.5),), face_id="f"),), session_id="s1"))
    summ.flush(T0 + 10)
    recovered = Summarizer(SummaryConfig(), "kiosk-1").recover("s1", summ.checkpoints(T0 + 10)["s1"], T0 + 99)
    ended = summ.session_ended(SessionEvent("end", "s1", 12.0, "shutdown"), T0 + 12)
    for msgs, reason in ((recovered, "interrupted"), (ended, "shutdown")):
        check_published(msgs)
        assert [(m.topic, m.payload["reason"]) for m in msgs] == [
            ("aggregate", reason),
            ("session", reason),
            ("summary/face", reason),
        ]
    bare = Summarizer(SummaryConfig(), "kiosk-1").recover("s3", Summarizer.bare_checkpoint(T0), T0 + 1)
    check_published(bare)
    assert [m.topic for m in bare][:3] == ["aggregate", "session", "summary/face"]
    idle = dict(ended[-1].payload, seq=9)
    definition("idle").validate(idle)
    assert not ROOT.is_valid(dict(idle, reason="presence")), "an idle message carries an end reason"
    assert not ROOT.is_valid(dict(idle, top=[])), "an idle message has no scores"
    start = dict(
        summ.session_started(SessionEvent("start", "s2", 20.0, "presence"), T0 + 20)[0].payload, seq=10
    )
    assert not ROOT.is_valid(dict(start, reason="shutdown")), "shutdown is not a start reason"


def test_session_end_needs_its_duration_and_an_end_reason() -> None:
    summ = Summarizer(SummaryConfig(), "kiosk-1")
    [start] = summ.session_started(SessionEvent("start", "s1", 0.0, "presence"), T0)
    end = summ.session_ended(SessionEvent("end", "s1", 5.0, "absence"), T0 + 5)[-1]
    ROOT.validate(dict(end.payload, seq=2))
    assert not ROOT.is_valid(dict(end.payload, seq=2, reason="presence"))
    assert not ROOT.is_valid({k: v for k, v in dict(end.payload, seq=2).items() if k != "duration_s"})
    assert not ROOT.is_valid(dict(start.payload, seq=1, duration_s=3.0))


# --------------------------------------------------------------------------------------------------
# Messages the MQTT publisher sends directly (no seq): status, health, cmd/result


def test_status_payloads() -> None:
    for text in (b"online", b"offline", b"stopped"):
        definition("status").validate(text.decode("utf-8"))
    assert not definition("status").is_valid("running")


def test_command_results() -> None:
    ok = parse_command("session", b'{"action": "start"}')
    definition("cmd_result").validate({"ok": True, **ok.describe(), "ts": utc_iso(time.time())})
    definition("cmd_result").validate(
        {"ok": True, **parse_command("discovery", b"").describe(), "ts": utc_iso(T0)}
    )
    for name, payload in (("session", b"pause"), ("reboot", b"now")):
        with pytest.raises(CommandError) as err:
            parse_command(name, payload)
        definition("cmd_result").validate({"ok": False, "error": str(err.value), "ts": utc_iso(T0)})
    busy = {"ok": False, **ok.describe(), "error": "busy: too many commands pending", "ts": utc_iso(T0)}
    definition("cmd_result").validate(busy)
    assert not definition("cmd_result").is_valid({"ok": False, "ts": utc_iso(T0)})


def test_health_snapshot(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    try:
        ident = identity.collect(config.Config(), started_at=T0)
        publisher = Publisher(
            MqttConfig(), "kiosk-1", outbox, health=lambda: ServiceHealth(device_id="kiosk-1", identity=ident)
        )
        body = json.loads(json.dumps(publisher.health_snapshot().to_json()))
        definition("health").validate(body)
        assert body["identity"]["config_fingerprint"] == identity.config_fingerprint(config.Config())
    finally:
        outbox.close()
