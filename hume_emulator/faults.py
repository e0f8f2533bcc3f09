"""Scriptable outages of the emulator: what ``--fault NAME=VALUE`` and ``POST /_emulator/faults`` set.

Every value is validated where it is set (flag, JSON or attribute), with an error that names the fault and
what it allows, so a typo in a test or on a command line fails at once instead of scripting nothing.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

_FAULT_ALIASES = {"error": "error_code", "warning": "warning_code"}


@dataclasses.dataclass
class Faults:
    """Outages to script, changeable while the emulator runs (each connection reads them per message).

    close_after: close each connection with ``close_code`` right after its N-th reply (0: at once).
    delay_ms: extra delay before each reply. error_code: answer every request with this top-level error
    (e.g. E0300, out of credits). warning_code: answer with this warning, nested under its model when the
    request asked for that model, else top-level. refuse_for_s: refuse upgrades with ``refuse_status`` for
    this long, counted from when it is set. silent: read requests, never answer.
    """

    close_after: Optional[int] = None
    close_code: int = 1011
    delay_ms: float = 0.0
    error_code: Optional[str] = None
    warning_code: Optional[str] = None
    refuse_for_s: float = 0.0
    refuse_status: int = 503
    silent: bool = False
    _refuse_until: float = dataclasses.field(default=0.0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__setattr__("_refuse_until", time.monotonic() + self.refuse_for_s)

    def __setattr__(self, name: str, value: Any) -> None:
        """Every change is validated (a test setting ``faults.close_code = 1005`` fails right there)."""
        if name in _FAULT_RULES:
            value = _fault_value(name, value)
        super().__setattr__(name, value)
        if name == "refuse_for_s":
            super().__setattr__("_refuse_until", time.monotonic() + value)

    def refusing(self) -> bool:
        """Whether upgrades are being refused right now."""
        return time.monotonic() < self._refuse_until

    def to_obj(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def update(self, changes: Mapping[str, Any]) -> None:
        """Validate and apply ``changes`` (field names, or CLI spellings like ``close-after``, ``error``).

        Values may be typed (JSON) or strings (command line); all are checked before any is applied.
        """
        parsed: Dict[str, Any] = {}
        for raw_name, value in changes.items():
            name = raw_name.replace("-", "_")
            name = _FAULT_ALIASES.get(name, name)
            if name not in _FAULT_RULES:
                raise ValueError(f"unknown fault '{raw_name}'; known: {', '.join(sorted(_FAULT_RULES))}")
            parsed[name] = _fault_value(name, value)
        for name, value in parsed.items():
            setattr(self, name, value)


def _int_in(low: int, high: int, excluded: Tuple[int, ...] = ()) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        number = int(value)
        if not low <= number <= high or number in excluded:
            raise ValueError
        return number

    return convert


def _non_negative(value: Any) -> float:
    if isinstance(value, bool) or float(value) < 0:
        raise ValueError
    return float(value)


def _code(prefix: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(prefix + r"\d{4}", value):
            raise ValueError
        return value

    return convert


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    words = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False}
    return words[str(value).lower()]


_FAULT_RULES: Dict[str, Tuple[Callable[[Any], Any], str]] = {
    "close_after": (_int_in(0, 2**31), "an integer >= 0, or none"),
    "close_code": (_int_in(1000, 4999, (1004, 1005, 1006, 1015)), "a WebSocket close code 1000-4999 "
                   "(not 1004-1006, 1015)"),
    "delay_ms": (_non_negative, "a number >= 0"),
    "error_code": (_code("E"), "an error code like E0300, or none"),
    "warning_code": (_code("W"), "a warning code like W0103, or none"),
    "refuse_for_s": (_non_negative, "a number >= 0"),
    "refuse_status": (_int_in(400, 599), "an HTTP status 400-599"),
    "silent": (_flag, "true or false"),
}  # fmt: skip
"""Per fault: the converter of a typed (JSON) or string (command line) value, and what it allows."""
_OPTIONAL_FAULTS = ("close_after", "error_code", "warning_code")


def _fault_value(name: str, value: Any) -> Any:
    """Convert one fault value to its field's type, with an error that says what is allowed."""
    convert, allowed = _FAULT_RULES[name]
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
        if name in _OPTIONAL_FAULTS:
            return None
        if name == "silent":
            return True  # a bare "--fault silent" switches it on
        raise ValueError(f"fault '{name}' needs a value: {allowed}")
    try:
        return convert(value)
    except (ValueError, TypeError, KeyError):
        raise ValueError(f"fault '{name}' must be {allowed}, got {value!r}") from None
