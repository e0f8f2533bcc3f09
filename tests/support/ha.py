"""Home Assistant's MQTT entities, as far as the tests need them: templates rendered as HA renders them.

How HA 2026.11 renders an MQTT entity's ``value_template`` (``Template.async_render_with_possible_json_value``
in ``homeassistant/helpers/template.py``; the MQTT sensor in ``components/mqtt/sensor.py``), emulated by
:func:`ha_render`:

* an ``ImmutableSandboxedEnvironment`` whose ``Undefined`` logs a warning whenever an undefined value is
  printed, iterated or tested for truth (so a template that touches a missing key spams HA's log: we
  record those and require none);
* variables ``value`` (the payload as text) and ``value_json`` (the parsed JSON, when it parses);
* the result is stripped; an MQTT sensor whose rendered state is the string ``None`` becomes ``unknown``
  (recorded against a real HA 2026.11), while ``0`` would be stored as a real reading.

:class:`Entities` folds the messages a subscriber received (in arrival order) through a device discovery
config the way HA's entities take them: each message on an entity's ``state_topic`` renders a new state.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Dict, List, Mapping, Optional, Sequence

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

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


class Entities:
    """The state history of every entity of one discovery config (component key -> states, None = unknown)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.components = {k: c for k, c in config["cmps"].items() if set(c) != {"p"}}
        self.history: Dict[str, List[Optional[str]]] = {key: [] for key in self.components}

    def take(self, topic: str, payload: bytes) -> None:
        """One message, as HA's MQTT client hands it to the entities subscribed to its topic."""
        for key, component in self.components.items():
            if component.get("state_topic") == topic:
                state = ha_render(str(component.get("value_template", "{{ value }}")), payload)
                if not self.history[key] or self.history[key][-1] != state:
                    self.history[key].append(state)  # HA records a state only when it changes

    def take_all(self, messages: Sequence[Any]) -> Entities:
        for m in messages:
            self.take(m.topic, m.payload)
        return self

    def states(self) -> Dict[str, Optional[str]]:
        """Each entity's current state (None: unknown, as before any message)."""
        return {key: (h[-1] if h else None) for key, h in self.history.items()}
