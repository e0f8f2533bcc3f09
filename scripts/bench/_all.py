#!/usr/bin/env python3
"""Runs each benchmark script, then prints the machine and one combined table (see ``scripts/bench/all``)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import _common

_common.ensure_venv()

SCRIPTS = (
    "media.py",
    "outbox.py",
    "latency.py",
    "memory.py",
    "kioskday.py",
    "flash.py",
    "cli.py",
    "metrics.py",
    "orglimit.py",
)


def cpu_model() -> str:
    """``model name`` (x86), else ``Model`` / ``Hardware`` (a Raspberry Pi's lines)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
    except OSError:
        fields = {}
    fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
    for key in ("model name", "model", "hardware"):
        if fields.get(key) and not fields[key].isdigit():
            return fields[key]
    return platform.processor() or platform.machine()


def machine() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=_common.REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"Machine: {os.cpu_count()} CPUs, {cpu_model()}, {platform.system()} {platform.release()} "
        f"({platform.machine()}), Python {platform.python_version()}; commit {commit or '?'}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC."
    )


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    rows: List[Dict[str, str]] = []
    started = time.monotonic()
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="hume-edge-bench-") as tmp:
        for script in SCRIPTS:
            out = Path(tmp) / f"{script}.json"
            cmd = [sys.executable, str(here / script), "--json", str(out)] + (
                ["--quick"] if args.quick else []
            )
            print(f"### {script}", file=sys.stderr, flush=True)
            done = subprocess.run(cmd, stdout=sys.stderr, check=False)
            if done.returncode != 0 or not out.exists():
                rows.append(_common.row(script, "the script failed", ("", "", ""), "", False))
                continue
            rows.extend(json.loads(out.read_text(encoding="utf-8")))
    took = time.monotonic() - started
    print(f"## Benchmarks{' (--quick: numbers meaningless)' if args.quick else ''}\n")
    print(machine() + f" All benchmarks took {took:.0f} s.\n")
    print(_common.headline_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows), encoding="utf-8")


if __name__ == "__main__":
    main()
