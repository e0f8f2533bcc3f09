"""Home Assistant discovery: the payload, and its templates rendered with Jinja2 the way HA renders them.

How HA 2026.11 renders an MQTT entity's templates: ``tests/support/ha.py`` (:func:`ha_render`); a sensor
with a ``state_class`` must render a number or ``None`` (unknown).

Payloads are real ones: made by the Summarizer, the health module and the session messages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List

import pytest

from agent.config import HumeConfig, MqttConfig, OutboxConfig, SummaryConfig
from agent.hume.types import HUME_MODELS, V1_PUBLISHES, Measurement, Observation, Score, published_models
from agent.hume.v1.wire import AUDIO_MODEL, VIDEO_MODEL
from agent.messages import OutMessage
from agent.mqtt.discovery import (
    ENTITY_IDS_VERSION,
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
from tests.support.ha import ha_render

T0 = 1_790_000_000.0
BASE = "hume-edge/kiosk-1"
UNKNOWN = None
"""What HA shows for a sensor whose template rendered ``None``."""


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


def test_ids_are_hashed_and_unique_across_punctuation() -> None:
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
    for cfg, device in ((dotted, "kiosk.lobby"), (underscored, "kiosk_lobby")):
        for key, component in live(cfg).items():
            assert key.startswith(f"{node_id(device)}_")
            assert component["unique_id"] == key
    assert node_id("a/b+c#") == node_id("a/b+c#")  # stable
    assert node_id("a/b+c#").startswith("a_b_c__")


FIRST_RELEASE_IDS = {
    # unique_id -> the entity id Home Assistant made for it from the names of the time ("Hume edge
    # kiosk-1" + "Face top emotion"): the first release (e1a2b56's discovery), which kiosks run.
    **{
        f"kiosk-1_{model}_emotion": f"sensor.hume_edge_kiosk_1_{model}_top_emotion"
        for model in ("face", "prosody", "burst", "language")
    },
    **{
        f"kiosk-1_{model}_score": f"sensor.hume_edge_kiosk_1_{model}_top_emotion_score"
        for model in ("face", "prosody", "burst", "language")
    },
    "kiosk-1_session": "binary_sensor.hume_edge_kiosk_1_session_active",
    "kiosk-1_queue": "sensor.hume_edge_kiosk_1_outbox_queue_depth",
}


def test_entity_ids_are_a_versioned_contract() -> None:
    """Unique ids and entity ids are the first release's, pinned: a change here orphans dashboards,
    automations and long-term statistics, so it needs a new ENTITY_IDS_VERSION and an entry in the docs'
    "Changes that affect dashboards" (the ``_top_emotion`` -> ``_top_expression`` rename of version 2
    changed every unique id and so every entity)."""
    cfg = discovery_config(BASE, "kiosk-1", HUME_MODELS)
    pinned = {c["unique_id"]: c["default_entity_id"] for c in live(cfg).values()}
    assert (ENTITY_IDS_VERSION, pinned) == (3, FIRST_RELEASE_IDS)
    assert cfg["dev"]["ids"] == ["hume-edge-kiosk-1"], "the same Home Assistant device as ever"
    for key, component in live(cfg).items():
        assert key == component["unique_id"], "the component key is the unique id, as in the first release"
        domain, object_id = component["default_entity_id"].split(".")
        assert domain == component["p"]
        assert re.fullmatch(r"(?!_)[a-z0-9_]+(?<!_)", object_id), object_id
        assert "__" not in object_id
    # Names may change (what HA displays); ids may not.
    assert live(cfg)["kiosk-1_face_emotion"]["name"] == "Face top expression"


def test_an_upgrade_removes_the_components_of_the_withdrawn_prefixed_ids() -> None:
    cfg = discovery_config(BASE, "kiosk-1", ("face",))
    for key in (
        "hume_edge_kiosk-1_face_emotion",
        "hume_edge_kiosk-1_language_score",
        "hume_edge_kiosk-1_queue",
    ):
        assert cfg["cmps"][key] == {"p": "sensor"}
    assert cfg["cmps"]["hume_edge_kiosk-1_session"] == {"p": "binary_sensor"}


def test_device_and_origin_carry_the_agent_version() -> None:
    cfg = discovery_config(BASE, "kiosk-1", ("face",))
    assert cfg["dev"]["sw_version"] == cfg["o"]["sw_version"] == agent_version()
    assert cfg["o"]["name"] == "hume-edge-agent"
    json.dumps(cfg)


def test_unconfigured_models_are_removal_stubs() -> None:
    cfg = discovery_config(BASE, "kiosk-1", ("face", "prosody"))
    prefix = node_id("kiosk-1")
    for model in ("burst", "language"):
        for kind in ("emotion", "score"):
            assert cfg["cmps"][f"{prefix}_{model}_{kind}"] == {"p": "sensor"}, "the platform alone removes it"
    for model in ("face", "prosody"):
        assert cfg["cmps"][f"{prefix}_{model}_score"]["state_topic"] == f"{BASE}/state/{model}"
    platforms = sorted(c["p"] for c in live(cfg).values())
    assert platforms == ["binary_sensor"] + ["sensor"] * 5


def test_templates_render_a_visit_then_unknown_after_it() -> None:
    cmps = discovery_config(BASE, "kiosk-1", ("face", "prosody", "language"))["cmps"]
    prefix = node_id("kiosk-1")
    msgs = visit_messages()
    face_summary, face_idle = msgs["summary/face"]
    name, score = cmps[f"{prefix}_face_emotion"], cmps[f"{prefix}_face_score"]
    assert ha_render(name["value_template"], face_summary) == "joy", "one label case on every backend"
    assert ha_render(score["value_template"], face_summary) == "0.675"
    attributes = ha_render(name["json_attributes_template"], face_summary)
    assert attributes is not None
    assert json.loads(attributes)["top"][0] == {"name": "joy", "score": 0.675, "hume_name": "Joy"}
    prosody_summary, prosody_idle = msgs["summary/prosody"]
    assert ha_render(cmps[f"{prefix}_prosody_emotion"]["value_template"], prosody_summary) == "joy"
    language_summary, _ = msgs["summary/language"]
    rendered = ha_render(cmps[f"{prefix}_language_emotion"]["value_template"], language_summary)
    assert rendered == "x" * HA_STATE_MAX_CHARS

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
    prefix = node_id("kiosk-1")
    model = payload["model"]
    assert ha_render(cmps[f"{prefix}_{model}_score"]["value_template"], wire(payload)) is UNKNOWN
    assert ha_render(cmps[f"{prefix}_{model}_emotion"]["value_template"], wire(payload)) is UNKNOWN


def test_queue_depth_and_availability_templates(tmp_path: Path) -> None:
    cfg = discovery_config(BASE, "kiosk-1", ("face",))
    prefix = node_id("kiosk-1")
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


def test_every_entity_has_an_icon() -> None:
    for component in live(discovery_config(BASE, "kiosk-1", HUME_MODELS)).values():
        assert str(component.get("icon", "")).startswith("mdi:"), component["unique_id"]


def test_entities_read_live_state_never_the_replayable_stream() -> None:
    """Only ``state/...`` (never replayed) and the retained ``health`` / ``status``: ``summary/<model>`` and
    ``session`` carry a backlog after an outage, which HA would step through as if live."""
    cfg = discovery_config(BASE, "kiosk-1", HUME_MODELS)
    topics = set()
    for component in live(cfg).values():
        topics |= {component[k] for k in ("state_topic", "json_attributes_topic") if k in component}
    topics |= {a["topic"] for a in cfg["availability"]}
    assert topics == {f"{BASE}/state/{m}" for m in HUME_MODELS} | {
        f"{BASE}/state/session",
        f"{BASE}/health",
        f"{BASE}/status",
    }


def test_the_start_idle_and_the_empty_window_idle_render_unknown_without_warnings() -> None:
    cmps = discovery_config(BASE, "kiosk-1", ("face", "prosody"))["cmps"]
    summ = Summarizer(SummaryConfig(top_k=3, window_s=5.0), "kiosk-1")
    start_idle = OutMessage("state/face", summ.idle_at_start(("face",), T0)["state/face"])
    summ.session_started(SessionEvent(START, "s1", 0.0, "presence"), T0)
    summ.add(
        Observation("face", T0 + 1, (Measurement((Score("joy", 0.6),), face_id="f@1"),), session_id="s1")
    )
    [face] = summ.flush(T0 + 5)
    summ.add(Observation("face", T0 + 6, (), warning_code="W0103", session_id="s1"))
    [no_face] = summ.flush(T0 + 10)
    assert no_face.payload["reason"] == "no_face"
    name = cmps["kiosk-1_face_emotion"]
    states = [ha_render(name["value_template"], wire(m.payload)) for m in (start_idle, face, no_face)]
    assert states == [UNKNOWN, "joy", UNKNOWN], "the kiosk emptied: not the last face"
    for m in (start_idle, no_face):
        attributes = ha_render(name["json_attributes_template"], wire(m.payload))
        assert attributes is not None
        assert json.loads(attributes)["top"] == []


def test_the_docs_entity_table_is_what_discovery_announces() -> None:
    """docs/home-assistant.md lists each entity's id, unique id, topic and icon: the same as the config's."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "home-assistant.md").read_text(encoding="utf-8")
    table = text[text.index("| entity (entity id for device `kiosk-1`)") :].split("\n\n")[0].splitlines()[2:]
    rows = []
    for row in table:
        cells = [c.strip() for c in row.strip("|").split("|")]
        entity, unique, reads, icon = (re.findall(r"`([^`]+)`", c)[0] for c in cells)
        rows.append((entity, unique.replace("<node>", "kiosk-1"), reads, icon))
    cfg = discovery_config(BASE, "kiosk-1", HUME_MODELS)
    announced = set()
    for c in live(cfg).values():
        model = next((m for m in HUME_MODELS if f"_{m}_" in c["unique_id"]), "<model>")
        topic = c["state_topic"][len(BASE) + 1 :]
        announced.add((c["default_entity_id"], c["unique_id"], topic, c["icon"]))
        documented = {tuple(x.replace("<model>", model) for x in r) for r in rows}
        assert (c["default_entity_id"], c["unique_id"], topic, c["icon"]) in documented, c["unique_id"]
    assert len(announced) == len(rows) + 2 * (len(HUME_MODELS) - 1), "a documented entity is not announced"


def test_on_v1_only_models_that_can_have_a_reading_are_announced() -> None:
    """v1 has no burst model (its voice results are prosody): the default models' burst entity stayed
    ``unknown`` for ever beside a working prosody one. v0 announces each model as configured."""
    defaults = HumeConfig().models
    assert published_models("v1", defaults) == ("face", "prosody")
    assert published_models("v1", ("face", "burst")) == ("face", "prosody"), "burst asks for the voice"
    assert published_models("v0", defaults) == defaults
    assert set(V1_PUBLISHES.values()) == {AUDIO_MODEL, VIDEO_MODEL}
    cmps = discovery_config(BASE, "kiosk-1", published_models("v1", defaults))["cmps"]
    assert cmps["kiosk-1_burst_emotion"] == cmps["kiosk-1_burst_score"] == {"p": "sensor"}
    assert cmps["kiosk-1_prosody_emotion"]["state_topic"] == f"{BASE}/state/prosody"
