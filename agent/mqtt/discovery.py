"""Home Assistant MQTT discovery, device-based: one retained ``{discovery_prefix}/device/<node>/config``.

One message describes the whole kiosk (``dev``), who announced it (``o``) and its entities (``cmps``), so
Home Assistant creates or removes them together. Entities read the agent's own topics; nothing is
published twice for Home Assistant's sake:

* per summarised model: ``sensor`` top expression (state = its name, at most 255 characters, the full top list
  as JSON attributes) and ``sensor`` its score, both from the retained live state ``state/<model>`` (the
  model's latest summary or idle message; the face summary lists faces, the others have ``top``,
  ``agent/visit/summary.py``, and the templates read either);
* ``binary_sensor`` session active, from the retained live state ``state/session`` (the latest session
  start / end);
* ``sensor`` queue depth, from the retained ``health`` message (``outbox.depth``).

**Live state, not the stream.** Entities never read ``summary/<model>`` or ``session``: those carry a
backlog after an outage (``replay``), which HA would step through in a fraction of a second as if live
(two queued visits: the session on and off twice, the face sensor nine values, the recorder's statistics
fed replayed scores). The ``state/...`` topics hold only what the agent produced last, are retained (a late
subscriber, or HA after its birth message, reads the present from the broker with nothing re-sent) and
are published again at every connect (a broker restarted without persistence gets them back).

Availability is the retained ``status`` topic; only ``online`` counts as available (``offline`` from the
last will and ``stopped`` from a clean exit both mean unavailable).

Home Assistant behaviour this relies on (HA 2026.11, recorded against a real instance; see
``tests/unit/test_discovery.py``, which renders every template with Jinja2 as HA does):

* **Removal needs the platform alone.** A component left out of a new config stays alive with its last
  value; only ``{"p": "sensor"}`` removes it. So every model the agent can run (``HUME_MODELS``) is always
  listed: configured ones in full, the others as removal stubs. Stubs for components that never existed
  are harmless, and keeping them means a kiosk that dropped ``language`` two upgrades ago still cleans up.
* **A rendered ``None`` is unknown.** A template that renders the string ``None`` makes an MQTT sensor
  ``unknown``; ``0`` would be recorded as a real reading. The templates render ``None`` whenever there is
  no top expression: a face message without faces, a model's ``idle`` message (``hume-edge/idle/1``, sent
  when the visit ends), anything else without ``top``. So per-model sensors read ``unknown`` between
  visits, and an idle message, not a timer, decides it: ``expire_after`` would either blank a sensor in
  the middle of a quiet visit or keep the last visitor's expressions on screen for its whole period, and
  availability per entity would bring the previous visitor's values back when the next visit starts.
* **Ids are a contract** (:data:`ENTITY_IDS_VERSION`, pinned by ``tests/unit/test_discovery.py``; every
  change is listed in the docs' "Changes that affect dashboards"). A new ``unique_id`` is a new entity to
  HA: dashboards and automations lose it and its long-term statistics are orphaned. ``unique_id`` and
  component keys are ``<node>_<model>_emotion``, ``<node>_<model>_score``, ``<node>_session`` and
  ``<node>_queue``, as in the first release; ``default_entity_id`` pins the entity id a new install gets
  (``sensor.hume_edge_<device>_face_top_emotion`` ...) to the one that release got from the names of the
  time, so renaming an entity (``top emotion`` -> ``top expression``) changes what HA displays, never an
  id. Version 2 (0.1.0 builds of late November 2026) had prefixed every id with ``hume_edge_``, which
  re-created every entity under a new id; its components are listed as removal stubs, and HA, when a
  removed unique id comes back, gives it back its old entity id and history. ``<node>`` (also the
  discovery topic level, which HA restricts to ``[A-Za-z0-9_-]``) is the device id itself when it has only
  those characters, and otherwise the id with the rest replaced by ``_`` plus 6 hex digits of SHA-256 of
  the raw id, so ``kiosk.lobby`` (``kiosk_lobby_<hash>``) and ``kiosk_lobby`` get different entities and
  different topics. A plain id keeps its topic (the shipped broker ACL grants
  ``homeassistant/device/%u/config``). For an id with other characters the old topic may be another
  device's, so it is left alone (docs).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Dict, Sequence

from agent.hume.types import HUME_MODELS
from agent.messages import SESSION_STATE_TOPIC, state_topic
from agent.ops.identity import agent_version

HOMEPAGE = "https://github.com/hume-edge/hume-edge-agent"
HA_STATE_MAX_CHARS = 255
"""Home Assistant refuses a sensor state longer than this."""
ENTITY_IDS_VERSION = 3
"""The unique ids and entity ids below, as a versioned contract (see the module doc): 1 the first release,
2 the ``hume_edge_`` prefix (withdrawn), 3 = 1's ids kept, entity ids pinned with ``default_entity_id``."""
ID_HASH_CHARS = 6
"""Hex digits of SHA-256 of the raw device id in every id: 24 bits, so two device ids that reduce to the
same characters collide by chance about once in 16 million pairs."""

# The top list of a summary: ``top`` for most models, the first (most measured) face's ``top`` for face,
# and an empty list for anything else (an idle message). Every key is tested with ``is defined`` before it
# is used: HA logs a template warning each time a missing key is printed or tested for truth.
_TOP = (
    "{% set t = value_json.top if value_json.top is defined else "
    "(value_json.faces[0].top if value_json.faces is defined and value_json.faces else []) %}"
)


def _reduced(device_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", device_id) or "device"


def node_id(device_id: str) -> str:
    """The device's id in discovery: the id itself, or reduced plus a short hash of it (see module doc)."""
    reduced = _reduced(device_id)
    if reduced == device_id:
        return device_id
    return f"{reduced}_{hashlib.sha256(device_id.encode('utf-8')).hexdigest()[:ID_HASH_CHARS]}"


def entity_slug(device_id: str) -> str:
    """The device's part of entity ids, as HA made it from the device name ``Hume edge <device id>``."""
    return re.sub(r"[^a-z0-9]+", "_", f"hume edge {device_id}".lower()).strip("_")


def config_topic(discovery_prefix: str, device_id: str) -> str:
    """Where the device's discovery config is published (retained)."""
    return f"{discovery_prefix}/device/{node_id(device_id)}/config"


def discovery_config(base: str, device_id: str, models: Sequence[str]) -> Dict[str, Any]:
    """The device discovery payload; ``base`` is ``{topic_prefix}/{device_id}``."""
    node = node_id(device_id)
    slug = entity_slug(device_id)
    version = agent_version()
    # Version 2's keys (the withdrawn hume_edge_ prefix): removal stubs (see module doc).
    withdrawn = f"hume_edge_{node}"
    cmps: Dict[str, Dict[str, Any]] = {
        f"{withdrawn}_{model}_{kind}": {"p": "sensor"}
        for model in HUME_MODELS
        for kind in ("emotion", "score")
    }
    cmps[f"{withdrawn}_session"] = {"p": "binary_sensor"}
    cmps[f"{withdrawn}_queue"] = {"p": "sensor"}
    for model in HUME_MODELS:
        emotion, score = f"{node}_{model}_emotion", f"{node}_{model}_score"
        if model not in models:
            cmps[emotion] = cmps[score] = {"p": "sensor"}  # removal (see module doc)
            continue
        state = f"{base}/{state_topic(model)}"
        cmps[emotion] = {
            "p": "sensor",
            "name": f"{model.capitalize()} top expression",
            "unique_id": emotion,
            "default_entity_id": f"sensor.{slug}_{model}_top_emotion",
            "state_topic": state,
            "value_template": _TOP + f"{{{{ t[0].name[:{HA_STATE_MAX_CHARS}] if t else None }}}}",
            "json_attributes_topic": state,
            "json_attributes_template": _TOP
            + "{{ {'top': t, 'session': value_json.session if value_json.session is defined else None}"
            " | tojson }}",
            "icon": "mdi:emoticon-outline",
        }
        cmps[score] = {
            "p": "sensor",
            "name": f"{model.capitalize()} top expression score",
            "unique_id": score,
            "default_entity_id": f"sensor.{slug}_{model}_top_emotion_score",
            "state_topic": state,
            "value_template": _TOP + "{{ t[0].score if t else None }}",
            "state_class": "measurement",
            "suggested_display_precision": 2,
            "icon": "mdi:gauge",
        }
    cmps[f"{node}_session"] = {
        "p": "binary_sensor",
        "name": "Session active",
        "unique_id": f"{node}_session",
        "default_entity_id": f"binary_sensor.{slug}_session_active",
        "state_topic": f"{base}/{SESSION_STATE_TOPIC}",
        "value_template": "{{ 'ON' if value_json.event == 'start' else 'OFF' }}",
        "device_class": "occupancy",
        "icon": "mdi:account-eye",
    }
    cmps[f"{node}_queue"] = {
        "p": "sensor",
        "name": "Outbox queue depth",
        "unique_id": f"{node}_queue",
        "default_entity_id": f"sensor.{slug}_outbox_queue_depth",
        "state_topic": f"{base}/health",
        "value_template": "{{ value_json.outbox.depth }}",
        "unit_of_measurement": "messages",
        "state_class": "measurement",
        "entity_category": "diagnostic",
        "icon": "mdi:tray-full",
    }
    return {
        "dev": {
            "ids": [f"hume-edge-{node}"],  # as before the prefix: a plain id keeps its HA device
            "name": f"Hume edge {device_id}",
            "mf": "hume-edge-agent",
            "mdl": "kiosk agent",
            "sw_version": version,
        },
        "o": {"name": "hume-edge-agent", "sw_version": version, "url": HOMEPAGE},
        "availability": [
            {
                "topic": f"{base}/status",
                "value_template": "{{ 'online' if value == 'online' else 'offline' }}",
            }
        ],
        "qos": 1,
        "cmps": cmps,
    }
