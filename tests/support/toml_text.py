"""The agent's config file from a dict, as the tests and benchmarks write it (the one writer; tomllib reads).

Top-level keys first, then ``[section]`` and ``[section.table]`` (two levels: all the agent's config has).
Values are written as JSON, which is TOML for the strings, numbers, booleans and arrays a config holds.
"""

from __future__ import annotations

import json
from typing import Any, List, Mapping


def toml_text(data: Mapping[str, Any]) -> str:
    """``{"device_id": "k1", "mqtt": {"port": 1883}, "hume": {"v0": {"url": ...}}}`` as TOML text."""
    lines: List[str] = [f"{key} = {json.dumps(value)}" for key, value in data.items() if not _table(value)]
    for section, values in data.items():
        if not _table(values):
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items() if not _table(v)]
        for name, table in values.items():
            if _table(table):
                lines.append(f"[{section}.{name}]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _table(value: Any) -> bool:
    return isinstance(value, dict)
