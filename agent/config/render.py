"""The effective config as TOML (``hume-edge check-config``): each key with its doc, secrets masked."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, List, Tuple

from agent.config.field import MASK
from agent.config.policy import redact_url
from agent.config.schema import Config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        # A TOML basic string: JSON's escapes (\\ \" \n \t \uXXXX ...) are TOML's, so a notice_text with a
        # newline stays one valid line; TOML also forbids a raw DEL, which JSON leaves as it is.
        return json.dumps(value).replace("\x7f", "\\u007f")
    return repr(value)


def iter_settings(obj: Any, prefix: str = "") -> typing.Iterator[Tuple[str, Any, dataclasses.Field[Any]]]:
    """Yield (dotted key, value, field) for every leaf setting, depth first."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from iter_settings(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value, f


def render(cfg: Config) -> str:
    """The effective config as TOML, secrets masked, each key with its documentation."""
    lines: List[str] = []
    section = ""
    for key, value, f in iter_settings(cfg):
        head, _, name = key.rpartition(".")
        if head != section:
            section = head
            lines.append(f"\n[{section}]")
        shown = MASK if f.metadata.get("secret") and value else value
        if isinstance(shown, str) and "://" in shown:
            shown = redact_url(shown)
        unit = f" [{f.metadata['unit']}]" if f.metadata.get("unit") else ""
        lines.append(f"{name} = {_toml_value(shown)}  # {f.metadata.get('doc', '')}{unit}")
    return "\n".join(lines).lstrip("\n") + "\n"
