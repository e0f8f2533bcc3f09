"""Home Assistant MQTT discovery, device-based: one retained ``{discovery_prefix}/device/<id>/config``.

One message describes the whole kiosk (``dev``), who announced it (``o``) and its entities (``cmps``), so
Home Assistant creates or removes them together. Entities read the agent's own topics; nothing is
published twice for Home Assistant's sake:

* per summarised model: ``sensor`` top emotion (state = its name, at most 255 characters, the full top list
  as JSON attributes) and ``sensor`` its score, both from ``summary/<model>``; the face summary lists faces,
  the others have ``top`` (``agent/summary.py``), and the templates read either;
* ``binary_sensor`` session active, from the retained ``session`` message (``event`` start / end);
* ``sensor`` queue depth, from the retained ``health`` message (``outbox.depth``).

Availability is the retained ``status`` topic; only ``online`` counts as available (``offline`` from the
last will and ``stopped`` from a clean exit both mean unavailable).
"""

from __future__ import annotations

import re
from typing import Any, Dict, Sequence

ORIGIN = {"name": "hume-edge-agent", "url": "https://github.com/hume-edge/hume-edge-agent"}
HA_STATE_MAX_CHARS = 255
"""Home Assistant refuses a sensor state longer than this."""

# The top list of a summary: ``top`` for most models, the first (most measured) face's ``top`` for face.
_TOP = (
    "{% set t = value_json.top if value_json.top is defined else "
    "(value_json.faces[0].top if value_json.faces else []) %}"
)


def node_id(device_id: str) -> str:
    """The device id reduced to what a discovery topic level allows (letters, digits, ``_``, ``-``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", device_id) or "device"


def config_topic(discovery_prefix: str, device_id: str) -> str:
    """Where the device's discovery config is published (retained)."""
    return f"{discovery_prefix}/device/{node_id(device_id)}/config"


def discovery_config(base: str, device_id: str, models: Sequence[str]) -> Dict[str, Any]:
    """The device discovery payload; ``base`` is ``{topic_prefix}/{device_id}``."""
    node = node_id(device_id)
    cmps: Dict[str, Dict[str, Any]] = {}
    for model in models:
        state = f"{base}/summary/{model}"
        cmps[f"{node}_{model}_emotion"] = {
            "p": "sensor",
            "name": f"{model.capitalize()} top emotion",
            "unique_id": f"{node}_{model}_emotion",
            "state_topic": state,
            "value_template": _TOP + f"{{{{ (t[0].name if t else 'none')[:{HA_STATE_MAX_CHARS}] }}}}",
            "json_attributes_topic": state,
            "json_attributes_template": _TOP + "{{ {'top': t, 'session': value_json.session} | tojson }}",
            "icon": "mdi:emoticon-outline",
        }
        cmps[f"{node}_{model}_score"] = {
            "p": "sensor",
            "name": f"{model.capitalize()} top emotion score",
            "unique_id": f"{node}_{model}_score",
            "state_topic": state,
            "value_template": _TOP + "{{ t[0].score if t else 0 }}",
            "state_class": "measurement",
            "suggested_display_precision": 2,
        }
    cmps[f"{node}_session"] = {
        "p": "binary_sensor",
        "name": "Session active",
        "unique_id": f"{node}_session",
        "state_topic": f"{base}/session",
        "value_template": "{{ 'ON' if value_json.event == 'start' else 'OFF' }}",
        "device_class": "occupancy",
    }
    cmps[f"{node}_queue"] = {
        "p": "sensor",
        "name": "Outbox queue depth",
        "unique_id": f"{node}_queue",
        "state_topic": f"{base}/health",
        "value_template": "{{ value_json.outbox.depth }}",
        "unit_of_measurement": "messages",
        "state_class": "measurement",
        "entity_category": "diagnostic",
    }
    return {
        "dev": {
            "ids": [f"hume-edge-{node}"],
            "name": f"Hume edge {device_id}",
            "mf": "hume-edge-agent",
            "mdl": "kiosk agent",
        },
        "o": ORIGIN,
        "availability": [
            {
                "topic": f"{base}/status",
                "value_template": "{{ 'online' if value == 'online' else 'offline' }}",
            }
        ],
        "qos": 1,
        "cmps": cmps,
    }
