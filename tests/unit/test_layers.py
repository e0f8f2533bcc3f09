"""The import layers are import-linter contracts (``[tool.importlinter]`` in pyproject.toml); scripts/test
runs ``lint-imports``. These tests show the contracts hold on the tree and bite: an upward import (lazy,
inside a function) and an emulator import from what ``run`` loads each break a named contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")  # the dev extra: not in the Python 3.9 unit run's venv

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``tree`` with the repository's contracts."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the two packages and pyproject.toml to break on purpose."""
    for package in ("agent", "hume_emulator"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_a_lazy_upward_import_breaks_the_layers(tree: Path) -> None:
    errors = tree / "agent" / "errors.py"
    upward = "\n\ndef _upward() -> None:\n    from agent.service import run_agent\n"
    errors.write_text(errors.read_text() + upward)
    run = lint_imports(tree)
    assert run.returncode == 1, run.stdout
    assert "agent.errors is not allowed to import agent.service" in run.stdout
    assert "- agent.errors -> agent.service" in run.stdout


def test_a_pure_module_importing_an_adapter_breaks_its_package_contract(tree: Path) -> None:
    guard = tree / "agent" / "mqtt" / "guard.py"
    guard.write_text(guard.read_text() + "\n\ndef _io() -> None:\n    from agent.mqtt import outbox\n")
    run = lint_imports(tree)
    assert run.returncode == 1, run.stdout
    assert "agent.mqtt.guard is not allowed to import agent.mqtt.outbox" in run.stdout


def test_what_run_loads_never_reaches_the_emulators(tree: Path) -> None:
    session = tree / "agent" / "visit" / "session.py"
    session.write_text(session.read_text() + "\n\ndef _emu() -> None:\n    import hume_emulator.emulator\n")
    run = lint_imports(tree)
    assert run.returncode == 1, run.stdout
    assert "agent is not allowed to import hume_emulator" in run.stdout
    assert "agent.visit.session -> hume_emulator.emulator" in run.stdout


def test_a_new_module_must_be_placed_in_a_layer(tree: Path) -> None:
    (tree / "agent" / "stray.py").write_text('"""Placed nowhere."""\n')
    run = lint_imports(tree)
    assert run.returncode != 0
    assert "agent.stray" in run.stdout + run.stderr
