"""Reading a config: TOML in, every problem reported at once, secrets from file, environment or credentials.

Each value is checked against its field's type, range and choices (``agent.config.schema``), unknown and
moved keys are named with a hint, then the rules across fields (``agent.config.policy``) run; a config with
problems raises one :class:`ConfigError` listing them all.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import typing
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Type, TypeVar

from agent.config.field import API_KEY_CREDENTIAL, API_KEY_ENV, MASK, MQTT_PASSWORD_CREDENTIAL
from agent.config.policy import check_runnable, cross_checks
from agent.config.schema import Config
from agent.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib

T = TypeVar("T")

MOVED_KEYS = {
    "hume.url": "hume.v0.url",
    "hume.identify_faces": "hume.v0.identify_faces",
    "hume.prob_threshold": "hume.v0.prob_threshold",
    "hume.stream_window_ms": "hume.v0.stream_window_ms",
    "hume.language_granularity": "hume.v0.language_granularity",
    "hume.reconnect_after_s": "hume.v0.reconnect_after_s",
    "hume.backoff_initial_s": "hume.v0.backoff_initial_s",
    "hume.backoff_max_s": "hume.v0.backoff_max_s",
    "hume.v1_url": "hume.v1.url",
    "hume.v1_min_session_s": "hume.v1.min_session_s",
    "hume.v1_measurement_timer_ms": "hume.v1.measurement_timer_ms",
    "hume.v1_face_threshold": "hume.v1.face_threshold",
}
"""Keys of the flat ``[hume]`` table before each backend got its own; check-config says where each went."""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return {bool: "true/false", int: "integer", float: "number", str: "string"}.get(tp, str(tp))


def _check_scalar(path: str, value: Any, tp: Any, meta: Mapping[str, Any], problems: List[str]) -> Any:
    """Return the value converted to ``tp``, or append a problem and return None."""
    shown = MASK if meta.get("secret") else repr(value)
    ok = (
        isinstance(value, bool)
        if tp is bool
        else isinstance(value, int) and not isinstance(value, bool)
        if tp is int
        else isinstance(value, (int, float)) and not isinstance(value, bool)
        if tp is float
        else isinstance(value, tp)
    )
    if not ok:
        problems.append(f"{path} = {shown}: expected {_type_name(tp)}")
        return None
    if tp is float:
        value = float(value)
        if math.isnan(value):  # TOML allows nan, and nan passes every range check below
            problems.append(f"{path} = {shown}: expected a number, not nan")
            return None
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        problems.append(f"{path} = {shown}: must be one of {allowed}")
        return None
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        unit = f" {meta['unit']}" if meta.get("unit") else ""
        # A field may have only one bound (hume.reply_timeout_s: min 1, no max).
        bound = (
            f"between {lo:g} and {hi:g}" if lo is not None and hi is not None
            else f"at least {lo:g}" if lo is not None
            else f"at most {hi:g}"
        )  # fmt: skip
        problems.append(f"{path} = {shown}: must be {bound}{unit}")
        return None
    return value


def _build(cls: Type[T], data: Mapping[str, Any], prefix: str, problems: List[str]) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        moved = MOVED_KEYS.get(f"{prefix}{key}")
        if moved is not None:
            table, _, name = moved.rpartition(".")
            problems.append(f"{prefix}{key}: moved to {moved} (key {name!r} in a [{table}] table)")
        elif key not in fields:
            import difflib

            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = ", ".join(sorted(fields))
            problems.append(f"{prefix}{key}: unknown key ({hint}known here: {known})")
    values: Dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            continue
        path, value, tp = f"{prefix}{name}", data[name], hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                problems.append(f"{path}: expected a [{path}] table, got {value!r}")
                continue
            values[name] = _build(tp, value, f"{path}.", problems)  # type: ignore[arg-type]
        elif typing.get_origin(tp) is tuple:
            if not isinstance(value, list):
                problems.append(f"{path} = {value!r}: expected {_type_name(tp)}")
                continue
            item_tp = typing.get_args(tp)[0]
            items = [
                _check_scalar(f"{path}[{i}]", v, item_tp, f.metadata, problems) for i, v in enumerate(value)
            ]
            if all(i is not None for i in items):
                values[name] = tuple(items)
        else:
            checked = _check_scalar(path, value, tp, f.metadata, problems)
            if checked is not None:
                values[name] = checked
    return cls(**values)


def load_for_run(path: Optional[Path], environ: Optional[Mapping[str, str]] = None) -> Config:
    """:func:`load`, then :func:`check_runnable`: what ``run`` and ``check-config`` both call."""
    cfg = load(path, environ)
    check_runnable(cfg, "defaults" if path is None else str(path))
    return cfg


def _read_secret(explicit: str, env_name: Optional[str], credential: str, environ: Mapping[str, str]) -> str:
    if explicit:
        return explicit
    if env_name and environ.get(env_name):
        return environ[env_name]
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        cred = Path(cred_dir) / credential
        if cred.is_file():
            return cred.read_text(encoding="utf-8").strip()
    return ""


def from_dict(
    data: Mapping[str, Any], source: str = "config", environ: Optional[Mapping[str, str]] = None
) -> Config:
    """Validate a parsed TOML document; raise :class:`ConfigError` listing every problem."""
    problems: List[str] = []
    cfg = _build(Config, data, "", problems)
    if problems:
        raise ConfigError(problems, source)
    cross_checks(cfg, problems)
    if problems:
        raise ConfigError(problems, source)
    env = os.environ if environ is None else environ
    api_key = _read_secret(cfg.hume.api_key, API_KEY_ENV, API_KEY_CREDENTIAL, env)
    password = _read_secret(cfg.mqtt.password, None, MQTT_PASSWORD_CREDENTIAL, env)
    return dataclasses.replace(
        cfg,
        hume=dataclasses.replace(cfg.hume, api_key=api_key),
        mqtt=dataclasses.replace(cfg.mqtt, password=password),
    )


def load(path: Optional[Path], environ: Optional[Mapping[str, str]] = None) -> Config:
    """Load and validate a TOML config file; ``None`` means the embedded defaults."""
    if path is None:
        return from_dict({}, "defaults", environ)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"file not found: {path}"], str(path)) from None
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror}"], str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(path)) from None
    except UnicodeDecodeError as exc:  # tomllib decodes before it parses, and raises this unwrapped
        raise ConfigError([f"not UTF-8 (byte {exc.start}): TOML files must be UTF-8"], str(path)) from None
    return from_dict(data, str(path), environ)
