"""Shared plumbing of the benchmarks: the project's venv, result rows, tables, a broker, an emulator host.

Every benchmark measures its baseline and ours in the same run and reports ratios, because absolute times
on a shared machine drift from run to run while ratios measured side by side hold. Each script prints its
own detailed table and, with ``--json PATH``, writes its headline rows for ``scripts/bench/all``.

Only the standard library is imported at the top of this module: :func:`ensure_venv` must run before
anything from the venv is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
EMULATOR_HOST = Path(__file__).resolve().with_name("_emuhost.py")
API_KEY = "test-key"


def v1_billed_s(endpoint: str, received: Dict[str, int]) -> float:
    """Media-seconds Hume bills for one v1 session, from its ``session.closed`` ``received`` totals: the
    agent's own rule (its ``hume_edge_hume_billed_media_seconds_total`` counts the same)."""
    from agent.hume.pricing import v1_billed_s as billed  # noqa: PLC0415 - after ensure_venv

    return billed(endpoint, received)


def ensure_venv() -> None:
    """Re-run this script with the project's .venv interpreter if another one started it.

    Only when a benchmark is the program: a test that imports one (tests/unit/test_kioskday.py, also run
    in the Python 3.9 venv) keeps its own interpreter; an exec there replaced the pytest worker, and
    pytest-xdist saw every worker "not properly terminated", no test run.
    """
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if main is None or Path(main).resolve().parent != Path(__file__).resolve().parent:
        return
    if not VENV_PYTHON.exists():
        sys.exit(f"{VENV_PYTHON} is missing: run scripts/setup --dev first")
    if Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick", action="store_true", help="a few seconds only: checks the script, not the numbers"
    )
    p.add_argument("--json", type=Path, help="also write the headline rows here (for scripts/bench/all)")
    return p


# --------------------------------------------------------------------------------------------------
# Results


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def row(bench: str, metric: str, values: Sequence[str], goal: str, met: Optional[bool]) -> Dict[str, str]:
    """One headline row; ``values`` are (ours, baseline, ratio); ``met`` None for a figure without a goal."""
    ours, baseline, ratio = values
    return {
        "bench": bench,
        "metric": metric,
        "ours": ours,
        "baseline": baseline,
        "ratio": ratio,
        "goal": goal,
        "result": "" if met is None else verdict(met),
    }


HEADLINE_COLUMNS = ("bench", "metric", "ours", "baseline", "ratio", "goal", "result")


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def headline_table(rows: Sequence[Dict[str, str]]) -> str:
    return markdown(HEADLINE_COLUMNS, [[r[c] for c in HEADLINE_COLUMNS] for r in rows])


def finish(args: argparse.Namespace, title: str, details: str, rows: List[Dict[str, str]]) -> None:
    """Print the details and the headline rows; write the rows for ``all``; exit 0 (a missed goal is data)."""
    print(f"## {title}{' (--quick: numbers meaningless)' if args.quick else ''}\n")
    print(details + "\n")
    print(headline_table(rows) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows), encoding="utf-8")


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank: with few samples p99 is the maximum, not an interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


def cpu_s() -> float:
    """User + system CPU of this process, all threads (children are waited for separately)."""
    t = os.times()
    return t.user + t.system


def write_bytes(pid: Union[str, int] = "self") -> int:
    """Bytes a process caused to be written to storage (``write_bytes`` of /proc/<pid>/io: counted as
    pages are dirtied, before the device; an SD card sees the same)."""
    with open(f"/proc/{pid}/io", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError(f"no write_bytes in /proc/{pid}/io")


def rss_mb(pid: int) -> float:
    """Current resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# --------------------------------------------------------------------------------------------------
# The emulator in its own process, behind a byte-counting proxy


class EmulatorHost:
    """``_emuhost.py`` as a child: the v0 and v1 emulators plus a TCP proxy counting the bytes on the wire.

    In its own process so its CPU (decoding, face detection) never counts as the client's.
    """

    def __init__(self, detect: bool = True) -> None:
        """``detect=False``: the emulators find no faces (cheap; the bills and uploads stay the same)."""
        self.proc = subprocess.Popen(
            [sys.executable, str(EMULATOR_HOST)] + ([] if detect else ["--no-detect"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        ports = self._read()
        self.port = int(ports["proxy_port"])
        self.url = f"ws://127.0.0.1:{self.port}/v0/stream/models"
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _read(self) -> Dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the emulator host exited; see its stderr above")
        parsed: Dict[str, Any] = json.loads(line)
        return parsed

    def ask(self, command: str) -> Dict[str, Any]:
        """``stats`` (bytes both ways, requests, billed media of both APIs) or ``reset``."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> EmulatorHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(condition: Any, timeout: float, what: str, interval_s: float = 0.002) -> float:
    """Poll ``condition()`` until true; the monotonic time it became true. RuntimeError on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic()
