"""Generated config files through ``hume-edge check-config``: exit 0 or 78 with a message, never a traceback.

Hypothesis drives :func:`tests.support.bad_config.random_toml` (known sections and keys with values of every
TOML type, unknown keys and sections, truncated files, plain bytes) through the CLI in-process, where any
exception would be the traceback a user sees; a few hostile files also go through the real console script.
"""

from __future__ import annotations

import dataclasses
import math
import random
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import config as config_mod
from tests.support.bad_config import check_config_file, random_toml
from tests.support.processes import EXE

EX_CONFIG = 78


def _floats(obj: Any) -> Iterator[float]:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _floats(value)
        elif isinstance(value, float):
            yield value


@given(rng=st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_any_config_file_is_accepted_or_refused_with_a_reason(
    rng: random.Random, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_bytes(random_toml(rng))
    code, said = check_config_file(path)
    assert code in (0, EX_CONFIG), said
    if code == EX_CONFIG:
        assert said.startswith("error: "), said
        assert str(path) in said, said
    else:
        assert not any(math.isnan(v) for v in _floats(config_mod.load(path, environ={}))), said


@pytest.mark.parametrize(
    "key", ["session.grace_s", "summary.window_s", "hume.reply_timeout_s", "mqtt.reconnect_min_s"]
)
def test_nan_is_refused_naming_the_key(tmp_path: Path, key: str) -> None:
    """Regression: TOML's nan passed every range check (a nan grace_s meant a visit never ended)."""
    section, name = key.split(".")
    path = tmp_path / "config.toml"
    path.write_text(f"[{section}]\n{name} = nan\n", encoding="utf-8")
    code, said = check_config_file(path)
    assert code == EX_CONFIG, said
    assert f"{key} = nan: expected a number" in said


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe[hume]\n",  # not UTF-8 (a UTF-16 BOM)
        b"[mqtt]\nport = 99999999999999999999999\n",  # beyond TOML's 64-bit integers
        b"[hume]\nmodels = " + b"[" * 40 + b"]" * 40 + b"\n",
        b"[session]\ngrace_s = nan\n",
        b"[camera]\n" + b"width = 640\n" * 2,  # a key twice
        b"\x00" * 64,
    ],
    ids=["utf16", "int-overflow", "deep-array", "nan", "duplicate-key", "nul-bytes"],
)
def test_hostile_files_through_the_console_script(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    done = subprocess.run(
        [str(EXE), "check-config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == EX_CONFIG, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: "), done.stderr
