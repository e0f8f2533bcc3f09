#!/usr/bin/env python3
"""Benchmark 9: what Prometheus metrics cost a kiosk, metrics on against off, in one run.

Two ``hume-edge run`` processes run side by side (same emulator, same broker, same moment, so the machine's
load hits both alike) on the defaults (synthetic face camera, espeak-ng voice, presence sessions, all
default models) with ``mqtt.health_interval_s = 5``. The second also has ``[metrics] listen`` and
``textfile_dir`` and is scraped once a second (15 times Prometheus' default rate: a stress, not a usual
load), and writes its textfile every 5 s. After the first summary of both and a warm-up, RSS (``VmRSS``)
is sampled once a second and CPU time (utime + stime from /proc) is read at the start and end of the
window. Reported: the steady RSS of each and the difference; the CPU share of one core of each and the
difference. Goals: at most +3 MB and +1 % of a core.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import _common

_common.ensure_venv()

from agent.dev.localbroker import LocalBroker  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.toml_text import toml_text  # noqa: E402

RSS_GOAL_MB = 3.0
CPU_GOAL_PCT = 1.0
SCRAPE_EVERY_S = 1.0


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def summaries(work: Path) -> bool:
    """Whether the agent's health says a summary was queued (its status file, no MQTT client needed)."""
    import json  # noqa: PLC0415

    try:
        body = json.loads((work / "status.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(body.get("summaries", {}).get("last_at"))


class Scraper(threading.Thread):
    """GET /metrics every ``SCRAPE_EVERY_S``, as Prometheus would (bytes and failures counted)."""

    def __init__(self, url: str) -> None:
        super().__init__(name="bench-scraper", daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.scrapes = 0
        self.failures = 0
        self.bytes = 0

    def run(self) -> None:
        while not self.stop.wait(SCRAPE_EVERY_S):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:
                    self.bytes += len(resp.read())
                self.scrapes += 1
            except OSError:
                self.failures += 1


def start_agent(work: Path, settings: Dict[str, Any]) -> subprocess.Popen[bytes]:
    work.mkdir()
    (work / "agent.toml").write_text(toml_text(settings), encoding="utf-8")
    env = dict(os.environ, RUNTIME_DIRECTORY=str(work))
    env.pop("HUME_API_KEY", None)
    exe = Path(sys.executable).with_name("hume-edge")
    with open(work / "agent.log", "wb") as log:
        return subprocess.Popen(
            [str(exe), "run", "--config", str(work / "agent.toml")], cwd=work, env=env, stderr=log
        )


def run(work: Path, quick: bool) -> Dict[str, Any]:
    warmup, steady_s = (1.0, 3.0) if quick else (15.0, 60.0)
    port = free_port()
    with _common.EmulatorHost() as emu, LocalBroker(work / "broker") as broker:
        agents: Dict[str, subprocess.Popen[bytes]] = {}
        scraper: Optional[Scraper] = None
        try:
            for side in ("off", "on"):
                settings: Dict[str, Any] = {
                    "device_id": f"bench-metrics-{side}",
                    "hume": {"api_key": _common.API_KEY, "v0": {"url": emu.url}, "v1": {"url": emu.base_url}},
                    "mqtt": {"host": broker.host, "port": broker.port, "health_interval_s": 5},
                    "outbox": {"path": str(work / side / "outbox.sqlite")},
                    "camera": {"source": "synthetic"},
                    "microphone": {"source": "speech"},
                }
                if side == "on":
                    (work / "textfile").mkdir()
                    settings["metrics"] = {
                        "listen": f"127.0.0.1:{port}",
                        "textfile_dir": str(work / "textfile"),
                    }
                agents[side] = start_agent(work / side, settings)
            for side in agents:
                _common.wait_until(lambda s=side: summaries(work / s), 120, f"a summary ({side})", 0.2)
            scraper = Scraper(f"http://127.0.0.1:{port}/metrics")
            scraper.start()
            time.sleep(warmup)  # scenario: the warm-up before measuring
            ticks = {side: cpu_ticks(p.pid) for side, p in agents.items()}
            rss: Dict[str, List[float]] = {side: [] for side in agents}
            started = time.monotonic()
            while time.monotonic() - started < steady_s:
                for side, proc in agents.items():
                    rss[side].append(_common.rss_mb(proc.pid))
                time.sleep(1.0)  # scenario: one RSS sample a second
            took = time.monotonic() - started
            hz = os.sysconf("SC_CLK_TCK")
            cpu_pct = {side: (cpu_ticks(p.pid) - ticks[side]) / hz / took * 100 for side, p in agents.items()}
        finally:
            if scraper is not None:
                scraper.stop.set()
            for proc in agents.values():
                proc.terminate()
            for proc in agents.values():
                proc.wait(30)
    textfile = work / "textfile" / "hume_edge.prom"
    return {
        "rss": {side: sum(v) / len(v) for side, v in rss.items()},
        "cpu_pct": cpu_pct,
        "scrapes": scraper.scrapes if scraper else 0,
        "failures": scraper.failures if scraper else 0,
        "scrape_bytes": scraper.bytes / max(1, scraper.scrapes) if scraper else 0,
        "textfile_bytes": textfile.stat().st_size if textfile.exists() else 0,
        "seconds": took,
    }


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="hume-edge-bench-metrics-") as tmp:
        r = run(Path(tmp), args.quick)
    rss, cpu = r["rss"], r["cpu_pct"]
    rss_added, cpu_added = rss["on"] - rss["off"], cpu["on"] - cpu["off"]
    details = (
        f"Over {r['seconds']:.0f} s side by side: RSS {rss['off']:.1f} MB off, {rss['on']:.1f} MB on "
        f"({rss_added:+.1f} MB); CPU {cpu['off']:.2f} % of a core off, {cpu['on']:.2f} % on "
        f"({cpu_added:+.2f} points). {r['scrapes']} scrapes ({r['failures']} failed) of "
        f"{r['scrape_bytes'] / 1024:.1f} KB each; the textfile is {r['textfile_bytes'] / 1024:.1f} KB. "
        "The CPU difference is within the noise of two processes on one machine unless well above 0.1 points."
    )
    rows = [
        _common.row(
            "9 metrics",
            "steady RSS, metrics on (scraped 1/s) vs off",
            (f"{rss['on']:.1f} MB", f"{rss['off']:.1f} MB", f"{rss_added:+.1f} MB"),
            f"<= +{RSS_GOAL_MB:g} MB",
            rss_added <= RSS_GOAL_MB,
        ),
        _common.row(
            "9 metrics",
            "CPU, share of one core, metrics on vs off",
            (f"{cpu['on']:.2f} %", f"{cpu['off']:.2f} %", f"{cpu_added:+.2f} points"),
            f"<= +{CPU_GOAL_PCT:g} % of a core",
            cpu_added <= CPU_GOAL_PCT,
        ),
    ]
    _common.finish(args, "Benchmark 9: Prometheus metrics on a kiosk", details, rows)


if __name__ == "__main__":
    main()
