#!/usr/bin/env python3
"""Benchmark 8: CLI cold start (--version, check-config, status) as a ratio to a bare interpreter.

Each command is a fresh ``hume-edge ...`` process (the venv's console script), as systemd's
``ExecStartPre`` and an operator run it; the baseline is ``python -c pass`` from the same interpreter in
the same run. The figure is the child's CPU time (user + system, from ``os.wait4``), the median of several
runs: on a shared 2-core box wall time measures the neighbours, CPU time measures the imports. Before the
import rule (each sub-command's module imported only when it runs) ``--version`` cost 20x a bare
interpreter here.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import _common

_common.ensure_venv()

GOAL_RATIO = 3.0
EXAMPLE = _common.REPO / "config" / "hume-edge.example.toml"


def cpu_of(argv: List[str], env: Dict[str, str]) -> float:
    """CPU seconds (user + system) of one child process running ``argv``."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 3):  # status exits 3 when no agent runs: still a full cold start
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def median_cpu(argv: List[str], runs: int, env: Dict[str, str]) -> float:
    cpu_of(argv, env)  # warm the page cache, as a second start on a kiosk would be
    return statistics.median(cpu_of(argv, env) for _ in range(runs))


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    runs = 3 if args.quick else 15
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="hume-edge-bench-") as tmp:
        env = dict(os.environ, HUME_API_KEY="bench", RUNTIME_DIRECTORY=tmp)
        # Bytecode caching on, as on a kiosk (pip compiles the package at install). With
        # PYTHONDONTWRITEBYTECODE=1 (set on this machine) every start compiled agent/config again:
        # about a third of check-config's CPU was the compiler, not the agent.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        bare = median_cpu([py, "-c", "pass"], runs, env)
        commands: List[Tuple[str, List[str]]] = [
            ("--version", ["--version"]),
            ("check-config", ["check-config", str(EXAMPLE)]),
            ("status", ["status", "--path", str(Path(tmp) / "none.json")]),
        ]
        program = str(Path(py).parent / "hume-edge")  # the console script systemd and operators run
        measured = [(name, median_cpu([program, *cli], runs, env)) for name, cli in commands]
    table = _common.markdown(
        ["command", "CPU ms (median)", "ratio to bare python"],
        [["python -c pass", f"{bare * 1000:.0f}", "1.00x"]]
        + [[f"hume-edge {name}", f"{cpu * 1000:.0f}", f"{cpu / bare:.2f}x"] for name, cpu in measured],
    )
    details = f"{table}\n\nMedian of {runs} runs each (one warm-up run first), child CPU time from wait4."
    rows = [
        _common.row(
            "8 CLI start",
            f"hume-edge {name} CPU vs python -c pass",
            (f"{cpu * 1000:.0f} ms", f"{bare * 1000:.0f} ms", f"{cpu / bare:.2f}x"),
            f"<= {GOAL_RATIO:g}x",
            cpu / bare <= GOAL_RATIO,
        )
        for name, cpu in measured
    ]
    _common.finish(args, "Benchmark 8: CLI cold start", details, rows)


if __name__ == "__main__":
    main()
