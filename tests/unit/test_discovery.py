"""Home Assistant discovery: the payload, and its templates rendered with Jinja2 the way HA renders them.

How HA 2026.11 renders an MQTT entity's ``value_template`` (``Template.async_render_with_possible_json_value``
in ``homeassistant/helpers/template.py``; the MQTT sensor in ``components/mqtt/sensor.py``), emulated by
:func:`ha_render`:

* an ``ImmutableSandboxedEnvironment`` whose ``Undefined`` logs a warning whenever an undefined value is
  printed, iterated or tested for truth (so a template that touches a missing key spams HA's log: we
  record those and require none);
* variables ``value`` (the payload as text) and ``value_json`` (the parsed JSON, when it parses);
* the result is stripped; an MQTT sensor whose rendered state is the string ``None`` becomes ``unknown``
  (recorded against a real HA 2026.11), while ``0`` would be stored as a real reading; a sensor with
  a ``state_class`` must otherwise render a number.

Payloads are real ones: made by the Summarizer, the health module and the session messages.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from agent.config import MqttConfig, OutboxConfig, SummaryConfig
from agent.hume.types import HUME_MODELS, Measurement, Observation, Score
from agent.mqtt.discovery import (
    HA_STATE_MAX_CHARS,
    config_topic,
    discovery_config,
    node_id,
)
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from agent.ops.identity import agent_version
from agent.visit.session import END, START, SessionEvent
from agent.visit.summary import Summarizer

T0 = 1_790_000_000.0
BASE = "hume-edge/kiosk-1"
UNKNOWN = None
"""What HA shows for a sensor whose template rendered ``None``."""

WARNINGS: List[str] = []


class HaUndefined(jinja2.Undefined):
    """HA's logging Undefined: using a missing value logs a template warning (recorded here)."""

    def _warn(self) -> None:
        WARNINGS.append(self._undefined_message)

    def __str__(self) -> str:
        self._warn()
        return super().__str__()

    def __iter__(self) -> Any:
        self._warn()
        return super().__iter__()

    def __bool__(self) -> bool:
        self._warn()
        return super().__bool__()


ENV = ImmutableSandboxedEnvironment(undefined=HaUndefined)


def ha_render(template: str, payload: bytes) -> Optional[str]:
    """The entity state HA would set from ``payload`` (None = unknown); no template warning allowed."""
    value = payload.decode("utf-8")
    variables: Dict[str, Any] = {"value": value}
    with contextlib.suppress(ValueError):  # HA: no value_json when the payload is not JSON
        variables["value_json"] = json.loads(value)
    WARNINGS.clear()
    rendered = ENV.from_string(template).render(**variables).strip()
    assert not WARNINGS, f"HA would log template warnings: {WARNINGS}"
    return None if rendered == "None" else rendered


def wire(payload: Dict[str, Any], seq: int = 1) -> bytes:
    return json.dumps(dict(payload, seq=seq)).encode()


def visit_messages() -> Dict[str, List[bytes]]:
    """A visit with face, prosody and language summaries, then its end: payloads by topic, in order."""
    summ = Summarizer(SummaryConfig(top_k=3, window_s=5.0), "kiosk-1")
    out = summ.session_started(SessionEvent(START, "s1", 0.0, "presence"), T0)
    joy = (Score("Joy", 0.675), Score("Calmness", 0.2))
    summ.add(Observation("face", T0 + 1, (Measurement(joy, face_id="f0@1"),), session_id="s1"))
    summ.add(Observation("prosody", T0 + 1, (Measurement(joy, begin_s=0.0, end_s=1.0),), session_id="s1"))
    long_name = (Score("X" * 400, 0.9),)  # a label longer than HA accepts as a state
    summ.add(Observation("language", T0 + 2, (Measurement(long_name),), session_id="s1"))
    out += summ.flush(T0 + 5)
    out += summ.session_ended(SessionEvent(END, "s1", 9.0, "absence"), T0 + 9)
    by_topic: Dict[str, List[bytes]] = {}
    for seq, msg in enumerate(out):
        by_topic.setdefault(msg.topic, []).append(wire(msg.payload, seq))
    return by_topic


def live(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The components that are entities (not removal stubs)."""
    return {key: c for key, c in cfg["cmps"].items() if set(c) != {"p"}}


def test_ids_are_prefixed_hashed_and_unique_across_punctuation() -> None:
    dotted, underscored = (
        discovery_config(BASE, "kiosk.lobby", HUME_MODELS),
        discovery_config(BASE, "kiosk_lobby", HUME_MODELS),
    )
    assert node_id("kiosk.lobby") != node_id("kiosk_lobby") == "kiosk_lobby"
    assert node_id("kiosk.lobby").startswith("kiosk_lobby_")
    assert config_topic("homeassistant", "kiosk.lobby") != config_topic("homeassistant", "kiosk_lobby")
    # A plain id keeps its topic: the shipped ACL grants homeassistant/device/%u/config.
    assert config_topic("homeassistant", "kiosk-lobby") == "homeassistant/device/kiosk-lobby/config"
    ids = [{c["unique_id"] for c in live(cfg).values()} for cfg in (dotted, underscored)]
    assert not ids[0] & ids[1]
    assert dotted["dev"]["ids"] != underscored["dev"]["ids"]
    for cfg in (dotted, underscored):
        for key, component in live(cfg).items():
            assert key.startswith("hume_edge_")
            assert component["unique_id"] == key
    assert node_id("a/b+c#") == node_id("a/b+c#")  # stable
    assert node_id("a/b+c#").startswith("a_b_c__")


def test_an_upgrade_removes_the_components_of_agents_before_the_prefix() -> None:
    cfg = discovery_config(BASE, "kiosk-1", ("face",))
    for key in ("kiosk-1_face_emotion", "kiosk-1_language_score", "kiosk-1_queue"):
        assert cfg["cmps"][key] == {"p": "sensor"}
    assert cfg["cmps"]["kiosk-1_session"] == {"p": "binary_sensor"}
    assert cfg["dev"]["ids"] == ["hume-edge-kiosk-1"], "the same Home Assistant device as before"


def test_device_and_origin_carry_the_agent_version() -> None:
    cfg = discovery_config(BASE, "kiosk-1", ("face",))
    assert cfg["dev"]["sw_version"] == cfg["o"]["sw_version"] == agent_version()
    assert cfg["o"]["name"] == "hume-edge-agent"
    json.dumps(cfg)


def test_unconfigured_models_are_removal_stubs() -> None:
    cfg = discovery_config(BASE, "kiosk-1", ("face", "prosody"))
    prefix = f"hume_edge_{node_id('kiosk-1')}"
    for model in ("burst", "language"):
        for kind in ("emotion", "score"):
            assert cfg["cmps"][f"{prefix}_{model}_{kind}"] == {"p": "sensor"}, "the platform alone removes it"
    for model in ("face", "prosody"):
        assert cfg["cmps"][f"{prefix}_{model}_score"]["state_topic"] == f"{BASE}/summary/{model}"
    platforms = sorted(c["p"] for c in live(cfg).values())
    assert platforms == ["binary_sensor"] + ["sensor"] * 5


def test_templates_render_a_visit_then_unknown_after_it() -> None:
    cmps = discovery_config(BASE, "kiosk-1", ("face", "prosody", "language"))["cmps"]
    prefix = f"hume_edge_{node_id('kiosk-1')}"
    msgs = visit_messages()
    face_summary, face_idle = msgs["summary/face"]
    name, score = cmps[f"{prefix}_face_emotion"], cmps[f"{prefix}_face_score"]
    assert ha_render(name["value_template"], face_summary) == "Joy"
    assert ha_render(score["value_template"], face_summary) == "0.675"
    attributes = ha_render(name["json_attributes_template"], face_summary)
    assert attributes is not None
    assert json.loads(attributes)["top"][0] == {"name": "Joy", "score": 0.675}
    prosody_summary, prosody_idle = msgs["summary/prosody"]
    assert ha_render(cmps[f"{prefix}_prosody_emotion"]["value_template"], prosody_summary) == "Joy"
    language_summary, _ = msgs["summary/language"]
    rendered = ha_render(cmps[f"{prefix}_language_emotion"]["value_template"], language_summary)
    assert rendered == "X" * HA_STATE_MAX_CHARS

    # The visit ended: every per-model entity reads unknown, none reads 0.
    for model, idle in (("face", face_idle), ("prosody", prosody_idle)):
        assert json.loads(idle)["schema"] == "hume-edge/idle/1"
        assert ha_render(cmps[f"{prefix}_{model}_emotion"]["value_template"], idle) is UNKNOWN
        assert ha_render(cmps[f"{prefix}_{model}_score"]["value_template"], idle) is UNKNOWN
        assert ha_render(cmps[f"{prefix}_{model}_emotion"]["json_attributes_template"], idle) is not None

    session = cmps[f"{prefix}_session"]["value_template"]
    [start, end] = msgs["session"]
    assert (ha_render(session, start), ha_render(session, end)) == ("ON", "OFF")


@pytest.mark.parametrize(
    "payload",
    [
        {"schema": "hume-edge/summary/1", "model": "face", "faces": [], "faces_omitted": 0},
        {"schema": "hume-edge/summary/1", "model": "face", "faces": [{"face_id": "f", "top": []}]},
        {"schema": "hume-edge/summary/1", "model": "prosody", "top": []},
    ],
)
def test_no_face_or_no_emotion_is_unknown_never_zero(payload: Dict[str, Any]) -> None:
    cmps = discovery_config(BASE, "kiosk-1", ("face", "prosody"))["cmps"]
    prefix = f"hume_edge_{node_id('kiosk-1')}"
    model = payload["model"]
    assert ha_render(cmps[f"{prefix}_{model}_score"]["value_template"], wire(payload)) is UNKNOWN
    assert ha_render(cmps[f"{prefix}_{model}_emotion"]["value_template"], wire(payload)) is UNKNOWN


def test_queue_depth_and_availability_templates(tmp_path: Path) -> None:
    cfg = discovery_config(BASE, "kiosk-1", ("face",))
    prefix = f"hume_edge_{node_id('kiosk-1')}"
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    try:
        outbox.put_many([("summary/face", {"i": i}, False) for i in range(7)])
        health = Publisher(MqttConfig(), "kiosk-1", outbox).health_snapshot()
    finally:
        outbox.close()
    payload = json.dumps(health.to_json(), default=str).encode()
    assert ha_render(cfg["cmps"][f"{prefix}_queue"]["value_template"], payload) == "7"
    available = cfg["availability"][0]["value_template"]
    assert [ha_render(available, p) for p in (b"online", b"offline", b"stopped")] == [
        "online",
        "offline",
        "offline",
    ]
