"""Home Assistant MQTT discovery, device-based: one retained ``{discovery_prefix}/device/<node>/config``.

One message describes the whole kiosk (``dev``), who announced it (``o``) and its entities (``cmps``), so
Home Assistant creates or removes them together. Entities read the agent's own topics; nothing is
published twice for Home Assistant's sake:

* per summarised model: ``sensor`` top expression (state = its name, at most 255 characters, the full top list
  as JSON attributes) and ``sensor`` its score, both from ``summary/<model>``; the face summary lists faces,
  the others have ``top`` (``agent/visit/summary.py``), and the templates read either;
* ``binary_sensor`` session active, from the retained ``session`` message (``event`` start / end);
* ``sensor`` queue depth, from the retained ``health`` message (``outbox.depth``).

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
* **Ids.** ``unique_id`` and component keys are ``hume_edge_<node>_...``. ``<node>`` (also the discovery
  topic level, which HA restricts to ``[A-Za-z0-9_-]``) is the device id itself when it has only those
  characters, and otherwise the id with the rest replaced by ``_`` plus 6 hex digits of SHA-256 of the raw
  id, so ``kiosk.lobby`` (``kiosk_lobby_<hash>``) and ``kiosk_lobby`` get different entities and different
  topics. A plain id keeps its topic (the shipped broker ACL grants ``homeassistant/device/%u/config``);
  agents before the ``hume_edge_`` prefix used the bare node as component key there, and those keys are
  listed as removal stubs, so an upgrade replaces the old entities instead of leaving them behind. For an
  id with other characters the old topic may be another device's, so it is left alone
  (docs/home-assistant.md).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Dict, Sequence

from agent.hume.types import HUME_MODELS
from agent.ops.identity import agent_version

HOMEPAGE = "https://github.com/hume-edge/hume-edge-agent"
HA_STATE_MAX_CHARS = 255
"""Home Assistant refuses a sensor state longer than this."""
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


def config_topic(discovery_prefix: str, device_id: str) -> str:
    """Where the device's discovery config is published (retained)."""
    return f"{discovery_prefix}/device/{node_id(device_id)}/config"


def discovery_config(base: str, device_id: str, models: Sequence[str]) -> Dict[str, Any]:
    """The device discovery payload; ``base`` is ``{topic_prefix}/{device_id}``."""
    node = node_id(device_id)
    prefix = f"hume_edge_{node}"
    version = agent_version()
    # Keys of agents before the prefix: removal stubs (see module doc).
    cmps: Dict[str, Dict[str, Any]] = {
        f"{node}_{model}_{kind}": {"p": "sensor"} for model in HUME_MODELS for kind in ("emotion", "score")
    }
    cmps[f"{node}_session"] = {"p": "binary_sensor"}
    cmps[f"{node}_queue"] = {"p": "sensor"}
    for model in HUME_MODELS:
        emotion, score = f"{prefix}_{model}_emotion", f"{prefix}_{model}_score"
        if model not in models:
            cmps[emotion] = cmps[score] = {"p": "sensor"}  # removal (see module doc)
            continue
        state = f"{base}/summary/{model}"
        # The ids keep the old word: a new unique_id would orphan every existing Home Assistant entity.
        cmps[emotion] = {
            "p": "sensor",
            "name": f"{model.capitalize()} top expression",
            "unique_id": emotion,
            "state_topic": state,
            "value_template": _TOP + f"{{{{ t[0].name[:{HA_STATE_MAX_CHARS}] if t else None }}}}",
            "json_attributes_topic": state,
            "json_attributes_template": _TOP + "{{ {'top': t, 'session': value_json.session} | tojson }}",
            "icon": "mdi:emoticon-outline",
        }
        cmps[score] = {
            "p": "sensor",
            "name": f"{model.capitalize()} top expression score",
            "unique_id": score,
            "state_topic": state,
            "value_template": _TOP + "{{ t[0].score if t else None }}",
            "state_class": "measurement",
            "suggested_display_precision": 2,
        }
    cmps[f"{prefix}_session"] = {
        "p": "binary_sensor",
        "name": "Session active",
        "unique_id": f"{prefix}_session",
        "state_topic": f"{base}/session",
        "value_template": "{{ 'ON' if value_json.event == 'start' else 'OFF' }}",
        "device_class": "occupancy",
    }
    cmps[f"{prefix}_queue"] = {
        "p": "sensor",
        "name": "Outbox queue depth",
        "unique_id": f"{prefix}_queue",
        "state_topic": f"{base}/health",
        "value_template": "{{ value_json.outbox.depth }}",
        "unit_of_measurement": "messages",
        "state_class": "measurement",
        "entity_category": "diagnostic",
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
