"""Each benchmark script runs end to end in its ``--quick`` mode and prints its headline table.

Only that it works is checked: the numbers of a few seconds on a shared machine mean nothing, and no test
asserts a wall-clock time.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from agent.dev.localbroker import mosquitto_executable

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench"
HEADLINE = "| bench | metric | ours | baseline | ratio | goal | result |"

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.skipif(mosquitto_executable() is None, reason="mosquitto is not installed"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]


def bench_scripts() -> List[str]:
    """The scripts ``scripts/bench/all`` runs (its ``SCRIPTS``), read without importing it: it re-executes
    itself in the venv on import."""
    tree = ast.parse((BENCH / "_all.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SCRIPTS" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("scripts/bench/_all.py has no SCRIPTS")


@pytest.mark.parametrize("script", bench_scripts())
def test_benchmark_prints_its_table(script: str, tmp_path: Path) -> None:
    if script == "outbox.py" and importlib.util.find_spec("persistqueue") is None:
        pytest.skip("persist-queue is not installed (pip install -e '.[bench]')")
    rows_path = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--json", str(rows_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert HEADLINE in done.stdout, done.stdout
    rows = json.loads(rows_path.read_text(encoding="utf-8"))
    assert rows
    for row in rows:
        assert row["result"] in ("met", "MISSED", ""), row
        assert row["ours"], row
