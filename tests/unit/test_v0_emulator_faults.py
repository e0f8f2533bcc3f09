"""Fault and settings parsing: what ``--fault`` and ``POST /_emulator/faults`` accept and refuse."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, List

import pytest

from hume_emulator.emulator import API_KEYS_ENV, EmulatorSettings, Faults, add_arguments, settings_from_args


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    settings, faults = settings_from_args(parse())
    assert settings == EmulatorSettings()
    assert settings.api_keys == ("test-key",)
    assert settings.idle_timeout_s == 60.0
    assert faults == Faults()
    assert not faults.refusing()


def test_keys_from_a_file_and_the_environment_not_only_argv(tmp_path: Path) -> None:
    """A key on the command line shows in ``ps`` to every local user (#31)."""
    keys = tmp_path / "keys"
    keys.write_text("# one a line\nfile-key-1\n\nfile-key-2\n", encoding="utf-8")
    environ = {API_KEYS_ENV: "env-key-1, env-key-2"}
    settings, _ = settings_from_args(parse("--api-key-file", str(keys)), environ)
    assert settings.api_keys == ("file-key-1", "file-key-2", "env-key-1", "env-key-2")
    settings, _ = settings_from_args(parse("--api-key", "argv-key"), environ)
    assert settings.api_keys == ("argv-key", "env-key-1", "env-key-2")
    assert settings_from_args(parse(), {})[0].api_keys == ("test-key",)
    with pytest.raises(ValueError, match="--api-key-file"):
        settings_from_args(parse("--api-key-file", str(tmp_path / "missing")), {})


def test_every_flag() -> None:
    settings, faults = settings_from_args(
        parse("--api-key", "a", "--api-key", "b", "--latency-ms", "20", "--seed", "9",
              "--idle-timeout-s", "5",
              "--fault", "close-after=3", "--fault", "close-code=4000", "--fault", "delay-ms=250",
              "--fault", "error=E0300", "--fault", "warning=W0103", "--fault", "refuse-for-s=20",
              "--fault", "refuse-status=429", "--fault", "silent")
    )  # fmt: skip
    assert settings == EmulatorSettings(api_keys=("a", "b"), latency_ms=20.0, seed=9, idle_timeout_s=5.0)
    assert faults == Faults(3, 4000, 250.0, "E0300", "W0103", 20.0, 429, True)
    assert faults.refusing()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"close_after": -1}, "close_after' must be an integer >= 0"),
        ({"close_after": 1.5}, "close_after' must be an integer >= 0"),
        ({"close_code": 1006}, "WebSocket close code"),
        ({"close_code": 5000}, "WebSocket close code"),
        ({"delay_ms": "-1"}, "delay_ms' must be a number >= 0"),
        ({"delay_ms": True}, "delay_ms' must be a number >= 0"),
        ({"error": "W0103"}, "an error code like E0300"),
        ({"warning": "E0300"}, "a warning code like W0103"),
        ({"refuse_status": 200}, "an HTTP status 400-599"),
        ({"silent": "maybe"}, "silent' must be true or false"),
        ({"close_code": None}, "needs a value"),
        ({"nap": 1}, "unknown fault 'nap'"),
    ],
)
def test_bad_values_are_refused_naming_what_is_allowed(changes: Dict[str, Any], message: str) -> None:
    faults = Faults()
    with pytest.raises(ValueError, match=message):
        faults.update(changes)
    assert faults == Faults()


def test_nothing_is_applied_when_one_value_is_bad() -> None:
    faults = Faults()
    with pytest.raises(ValueError):
        faults.update({"error": "E0300", "delay-ms": "-5"})
    assert faults.error_code is None


def test_direct_assignment_is_validated_too() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="WebSocket close code"):
        faults.close_code = 1005
    faults.error_code = None
    faults.refuse_for_s = 30
    assert faults.refusing()
    faults.refuse_for_s = 0
    assert not faults.refusing()


@pytest.mark.parametrize(
    "kwargs",
    [{"api_keys": ()}, {"api_keys": ("",)}, {"latency_ms": -1}, {"idle_timeout_s": 0}],
)
def test_settings_are_checked(kwargs: Dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EmulatorSettings(**kwargs)


@pytest.mark.parametrize("argv", [["--fault", "close-code"], ["--fault", "delay-ms="]])
def test_fault_flags_without_needed_values(argv: List[str]) -> None:
    with pytest.raises(ValueError, match="needs a value"):
        settings_from_args(parse(*argv))


def test_optional_faults_are_cleared_with_none() -> None:
    faults = Faults(error_code="E0300", close_after=2)
    faults.update({"error": "none", "close-after": None})
    assert faults == Faults()
