"""How a config field is declared: :func:`setting` keeps each field's documentation, unit and range in
its ``metadata``, so validation, ``check-config`` and the example-file test read one source; and the names of
the secrets (masked wherever a config is shown)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

MASK = "********"
API_KEY_ENV = "HUME_API_KEY"
API_KEY_CREDENTIAL = "hume_api_key"
MQTT_PASSWORD_CREDENTIAL = "mqtt_password"


def setting(
    default: Any,
    doc: str,
    *,
    unit: str = "",
    min: Optional[float] = None,
    max: Optional[float] = None,
    choices: Optional[Tuple[Any, ...]] = None,
    secret: bool = False,
) -> Any:
    """Declare a config field with its documentation and the values it allows."""
    meta = {"doc": doc, "unit": unit, "min": min, "max": max, "choices": choices, "secret": secret}
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=lambda: tuple(default), metadata=meta)
    # Secrets stay out of repr(): a config object in a log line or a traceback must not leak them.
    return dataclasses.field(default=default, metadata=meta, repr=not secret)
