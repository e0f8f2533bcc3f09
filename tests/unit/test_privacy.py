"""The privacy pause, the notice gate, per-part status and the deployment-context guard, as plain data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import jsonschema
import pytest

from agent import cli, config
from agent.config import CommandsConfig, SummaryConfig
from agent.errors import EX_CONFIG, ConfigError
from agent.hume.types import Measurement, Observation, Score
from agent.mqtt.guard import CommandGuard
from agent.ops import parts
from agent.privacy.state import NOTICE_SCHEMA, NoticeGate, PauseControl
from agent.visit.session import START, SessionEvent
from agent.visit.summary import SCHEMA_PATH, Summarizer

T0 = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pause_resume_and_the_maximum() -> None:
    p = PauseControl(max_pause_s=60)
    assert [e.kind for e in p.pause(0.0, "page")] == ["paused"]
    assert p.paused
    assert p.remaining_s(10.0) == 50.0
    assert p.pause(30.0, "mqtt") == []  # sent again: no second event, and the maximum is not restarted
    assert p.remaining_s(30.0) == 30.0
    assert p.tick(59.0) == []
    ev = p.tick(60.0)
    assert [(e.kind, e.source) for e in ev] == [("resumed", "max")]
    assert not p.paused
    assert p.remaining_s(91.0) is None
    assert p.resume(92.0, "mqtt") == []  # resuming while running changes nothing
    assert [e.kind for e in p.toggle(93.0, "button")] == ["paused"]
    assert [(e.kind, e.source) for e in p.toggle(94.0, "button")] == [("resumed", "button")]
    assert p.pauses == 2


def test_a_visitors_pause_is_ended_by_a_visitors_button_or_the_maximum_not_by_mqtt() -> None:
    """The kiosk UI's account could silently resume a visitor's pause (#31)."""
    for source in ("page", "button"):
        p = PauseControl(300.0)
        p.pause(0.0, source)
        assert p.resume_refusal("mqtt") is not None
        assert "only the kiosk's button or the maximum (300 s)" in (p.resume_refusal("mqtt") or "")
        assert p.command(1.0, "resume", "mqtt") == []
        assert p.paused
        p.pause(2.0, "mqtt")  # an operator pausing too does not take the visitor's pause over
        assert p.command(3.0, "resume", "mqtt") == []
        assert [e.kind for e in p.toggle(4.0, "button")] == ["resumed"]  # the button again ends it
    p = PauseControl(300.0)
    p.pause(0.0, "page")
    assert [e.source for e in p.tick(300.0)] == ["max"]
    p.pause(400.0, "mqtt")  # an operator's pause: any control ends it
    assert p.resume_refusal("mqtt") is None
    assert [e.kind for e in p.command(401.0, "resume", "mqtt")] == ["resumed"]


def test_the_page_may_begin_at_most_page_pauses_per_hour_and_says_when_it_may_again() -> None:
    """Any local process could POST /pause at every automatic resume and hold the kiosk paused for good
    (#31): now the page begins at most ``page_pauses_per_hour`` pauses in any hour, a refusal says why and
    when, and a page pause while paused neither extends nor counts."""
    p = PauseControl(max_pause_s=300.0, page_pauses_per_hour=3)
    now = 0.0
    for _ in range(3):  # three visitors in a row each get their pause
        assert p.pause_refusal(now, "page") is None
        assert [e.kind for e in p.pause(now, "page")] == ["paused"]
        assert p.pause(now + 100.0, "page") == []  # a script re-pausing: not extended ...
        assert p.remaining_s(now + 100.0) == 200.0
        assert p.pause_refusal(now + 100.0, "page") is None  # ... and nothing to refuse
        now += 300.0
        assert [e.source for e in p.tick(now)] == ["max"]  # the automatic resume
    # Right at the automatic resume: refused until the first pause (at 0) is an hour old.
    refused = p.pause_refusal(now, "page")
    assert refused is not None
    assert refused.retry_after_s == 3600.0 - 900.0
    assert "used 3 times within the last hour" in refused.reason
    assert "privacy.page_pauses_per_hour = 3" in refused.reason
    assert "again in 45 min" in refused.reason
    assert p.pause(now, "page") == []
    assert not p.paused
    assert p.refused == {"page": 1, "mqtt": 0}
    assert p.pauses == 3
    # The other controls are not limited by the page's allowance: an operator, the physical button.
    assert p.pause_refusal(now, "mqtt") is None
    assert p.pause_refusal(now, "button") is None
    assert [e.kind for e in p.toggle(now, "button")] == ["paused"]
    assert [e.kind for e in p.toggle(now + 1.0, "button")] == ["resumed"]
    assert p.pause_refusal(3599.0, "page") is not None
    assert p.pause_refusal(3600.0, "page") is None  # the first is an hour old
    # A script pausing at every chance, for a day: never paused more than 3 x 300 s of any hour.
    starts = []
    now = 3600.0
    while now < 3600.0 * 25:
        refusal = p.pause_refusal(now, "page")
        if refusal is not None:
            now += refusal.retry_after_s
            continue
        p.pause(now, "page")
        starts.append(now)
        now += 300.0
        p.tick(now)
    assert len(starts) == 24 * 3
    for i, start in enumerate(starts):
        assert sum(1 for s in starts[i:] if s < start + 3600.0) <= 3
    with pytest.raises(ValueError, match="page_pauses_per_hour 0: must be >= 1"):
        PauseControl(300.0, page_pauses_per_hour=0)


def test_a_day_of_a_script_re_pausing_over_mqtt_gets_at_most_its_share_of_any_hour() -> None:
    """``cmd/privacy`` had a token bucket (6 an hour, starting full) and a pause while paused restarted the
    maximum (#31): a script holding a broker login kept the kiosk paused for about the whole first hour,
    re-sending ``pause`` just before each maximum. The command's whole path, as the agent takes it: the
    command guard, then the pause state machine (``agent.hub`` vets with :meth:`PauseControl.refuse`, the
    same rule). A day in 10 s steps; the script sends ``pause`` whenever not paused, and again whenever a
    pause has less than 30 s left. Never more than 6 starts in any hour, never a pause longer than 300 s,
    never more than 1800 s paused in any hour, the first included."""
    clock = Clock()
    guard = CommandGuard(CommandsConfig(), clock)  # commands.privacy_per_hour = 6 by default
    p = PauseControl(max_pause_s=300.0)
    step_s = 10.0
    t0 = clock.now
    starts: List[float] = []
    paused_steps: List[int] = []
    longest_s = 0.0
    extended: List[float] = []
    began: Optional[float] = None
    while clock.now < t0 + 86400.0:
        now = clock.now
        p.tick(now)
        if began is not None and not p.paused:
            longest_s, began = max(longest_s, now - began), None
        left = p.remaining_s(now)
        if left is None or left < 30.0:
            if guard.budget("privacy", "pause") is None and p.pause(now, "mqtt"):
                starts.append(now)
                began = now
            if left is not None and p.remaining_s(now) != left:
                extended.append(now)
        paused_steps.append(1 if p.paused else 0)
        clock.now += step_s
    per_hour = int(3600.0 / step_s)
    paused_s = [step_s * sum(paused_steps[i : i + per_hour]) for i in range(len(paused_steps) - per_hour)]
    assert paused_s[0] <= 1800.0, f"paused {paused_s[0]:.0f} s of the first hour"
    assert max(paused_s) <= 1800.0, f"paused {max(paused_s):.0f} s of some hour"
    assert extended == []
    assert longest_s <= 300.0
    for i, start in enumerate(starts):
        assert sum(1 for s in starts[i:] if s < start + 3600.0) <= 6, f"more than 6 starts after {start}"
    assert len(starts) == 24 * 6  # and the script got every pause the rule allows
    assert p.refused["mqtt"] > 0
    assert p.refused["page"] == 0


def test_page_and_mqtt_each_have_their_own_allowance() -> None:
    """One rule, an allowance each (see ``PauseControl``): a broker account spending cmd/privacy's pauses
    leaves the visitor's button working, and the other way round; a refusal names its own setting."""
    p = PauseControl(max_pause_s=300.0, page_pauses_per_hour=2, mqtt_pauses_per_hour=1)
    assert p.pause(0.0, "mqtt")
    p.tick(300.0)
    refused = p.refuse(300.0, "mqtt")
    assert refused is not None
    assert refused.reason == (
        "cmd/privacy pause was used 1 times within the last hour, as often as this kiosk allows "
        "(commands.privacy_per_hour = 1); it can pause again in 55 min"
    )
    assert refused.retry_after_s == 3300.0
    assert p.pause(300.0, "page")  # the visitor's button still works
    assert p.pause(310.0, "mqtt") == []  # already paused: not refused, not counted, not extended
    assert p.remaining_s(310.0) == 290.0
    assert p.refused == {"page": 0, "mqtt": 1}
    off = PauseControl(max_pause_s=300.0, mqtt_pauses_per_hour=0)
    refused = off.refuse(0.0, "mqtt")
    assert refused is not None
    assert refused.reason == "cmd/privacy pause is off on this kiosk (commands.privacy_per_hour = 0)"
    assert off.pause(0.0, "page")


def test_pause_refuses_unknown_actions_and_sources() -> None:
    p = PauseControl(60)
    with pytest.raises(ValueError, match="must be one of pause, resume"):
        p.command(0.0, "stop", "mqtt")
    with pytest.raises(ValueError, match="must be one of mqtt, page, button"):
        p.pause(0.0, "telnet")
    assert not p.paused


def test_notice_gates_media_until_the_broker_acks_it() -> None:
    gate = NoticeGate("We measure expressions.", "kiosk")
    assert not gate.media_allowed(broker_connected=True)
    msg = gate.update(True, "s1", 1000.0)
    assert msg is not None
    assert msg.retain
    assert msg.topic == "notice"
    assert msg.payload["schema"] == NOTICE_SCHEMA
    assert msg.payload["active"] is True
    assert msg.payload["since"] == "1970-01-01T00:16:40.000Z"
    assert msg.payload["session"] == "s1"
    assert not gate.media_allowed(True)  # not even queued yet
    gate.queued(7)
    assert not gate.media_allowed(True)  # queued, broker up, no PUBACK yet
    gate.delivered(6)
    assert not gate.media_allowed(True)  # an ack for another row
    gate.delivered(7)
    assert gate.media_allowed(True)
    assert gate.state().published
    assert gate.update(True, "s1", 1001.0) is None  # nothing changed
    off = gate.update(False, None, 1002.0)
    assert off is not None
    assert off.payload["active"] is False
    assert off.payload["since"] is None
    assert not gate.media_allowed(True)
    assert not gate.media_allowed(False)


def test_broker_down_rule_is_durably_queued() -> None:
    gate = NoticeGate("t", "kiosk")
    gate.update(True, "s1", 0.0)
    assert not gate.media_allowed(broker_connected=False)  # not stored: no record, nothing sent
    gate.queued(-1)  # the outbox refused it (disk full)
    assert not gate.media_allowed(False)
    gate.update(False, None, 1.0)
    gate.update(True, "s2", 2.0)
    gate.queued(9)
    assert gate.media_allowed(broker_connected=False)
    assert not gate.media_allowed(broker_connected=True)  # reconnected: wait for its PUBACK


def test_a_new_visit_is_a_new_notice() -> None:
    gate = NoticeGate("t", "kiosk")
    gate.update(True, "s1", 0.0)
    gate.queued(1)
    gate.delivered(1)
    msg = gate.update(True, "s2", 5.0)  # always mode rolled over
    assert msg is not None
    assert msg.payload["session"] == "s2"
    assert not gate.media_allowed(True)
    assert gate.notices == 2


def test_part_states() -> None:
    assert parts.capture_state(configured=True, lost=False, paused=False) == "online"
    assert parts.capture_state(configured=True, lost=True, paused=False) == "offline"
    assert parts.capture_state(configured=True, lost=True, paused=True) == "disabled"
    assert parts.capture_state(configured=False, lost=False, paused=False) == "disabled"
    assert parts.hume_state(True) == "online"
    assert parts.hume_state(False) == "offline"
    assert parts.topic("camera") == "status/camera"
    with pytest.raises(ValueError, match="camera, microphone, hume"):
        parts.topic("speaker")


@pytest.mark.parametrize("context", ["workplace", "education"])
def test_prohibited_contexts_are_refused_citing_the_article(context: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict({"privacy": {"deployment_context": context}}, environ={})
    (problem,) = err.value.problems
    assert f"privacy.deployment_context = {context!r}" in problem
    assert "Art. 5(1)(f)" in problem
    assert "privacy.medical_or_safety_reason" in problem
    cfg = config.from_dict(
        {
            "privacy": {
                "deployment_context": context,
                "medical_or_safety_reason": "fatigue alerts for drivers",
            }
        },
        environ={},
    )
    assert cfg.privacy.deployment_context == context


def test_defaults_need_no_privacy_keys_and_other_contexts_pass() -> None:
    assert config.from_dict({}, environ={}).privacy.deployment_context == "public"
    for context in ("retail", "event", "research"):
        config.from_dict({"privacy": {"deployment_context": context}}, environ={})
    with pytest.raises(ConfigError, match="must be one of 'public'"):
        config.from_dict({"privacy": {"deployment_context": "school"}}, environ={})


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "kiosk.local"])
def test_page_must_bind_loopback(host: str) -> None:
    with pytest.raises(ConfigError, match="must be a loopback address"):
        config.from_dict({"privacy": {"page_host": host}}, environ={})
    for ok in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert config.is_loopback(ok)


def test_gpio_pins_must_differ_and_notice_must_say_something() -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict(
            {"privacy": {"gpio_button_pin": 17, "gpio_led_pin": 17, "notice_text": "  "}}, environ={}
        )
    assert len(err.value.problems) == 2


def test_check_config_exits_78_for_a_workplace_and_0_with_the_exception(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUME_API_KEY", "k")  # check-config also asks for what run needs
    path = tmp_path / "c.toml"
    path.write_text('[privacy]\ndeployment_context = "workplace"\n', encoding="utf-8")
    assert cli.main(["check-config", str(path)]) == EX_CONFIG
    assert "EU AI Act, Art. 5(1)(f)" in capsys.readouterr().err
    path.write_text(
        '[privacy]\ndeployment_context = "workplace"\nmedical_or_safety_reason = "operator fatigue"\n',
        encoding="utf-8",
    )
    assert cli.main(["check-config", str(path)]) == 0
    assert 'deployment_context = "workplace"' in capsys.readouterr().out


def test_without_per_face_detail_face_summaries_carry_one_aggregate_list() -> None:
    summ = Summarizer(SummaryConfig(top_k=1), "kiosk", per_face=False)
    summ.session_started(SessionEvent(START, "s1", 0.0, "presence"), T0)
    for face, joy in (("face_0", 0.8), ("face_1", 0.4)):
        m = Measurement((Score("joy", joy), Score("calmness", 0.1)), face_id=face)
        summ.add(Observation("face", T0 + 1, (m,), session_id="s1"))
    [msg] = summ.flush(T0 + 10)
    assert "faces" not in msg.payload
    assert msg.payload["top"] == [{"name": "joy", "score": 0.6}]
    assert "face_0" not in json.dumps(msg.payload)
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(dict(msg.payload, seq=1))
