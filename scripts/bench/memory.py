#!/usr/bin/env python3
"""Benchmarks 5 and 6: the agent's RSS at steady state and through a broker outage, then the backlog drain.

``hume-edge run --config`` runs as its own process on the defaults (synthetic face camera, espeak-ng voice,
presence sessions, all default models) against the emulator (another process) and a private mosquitto,
with two changes: ``summary.window_s = 0.5`` so summaries come ten times faster than by default (the
accelerated outage), and ``mqtt.reconnect_max_s = 2`` so the reconnect after a minute of outage is
not a backoff lottery (the drain rate is what is measured, not the backoff policy).

1. Steady state: RSS (``VmRSS`` from /proc) once a second after the first summary and a warm-up.
2. Outage: mosquitto stopped for a minute; summaries keep going to the durable outbox. Growth = RSS at
   the end of the outage minus the steady mean.
3. Drain: mosquitto restarted on the same port with a subscriber; the time from the first to the last
   backlog message at the subscriber gives the drain rate, compared with paho's in-memory queue (the
   ceiling of benchmark 3) publishing as many messages to the same broker, timed the same way at the
   subscriber.
4. The path a Pi runs: the camera adapter plus the presence check, at the real defaults (summary
   window included). picamera2 does not run here, so OpenCV's adapter plays the synthetic visitor from
   an MJPEG file as the stand-in; beside it, the same agent with ``camera.source = "none"`` shows what
   the camera path (OpenCV for decoding and the Haar presence check) adds.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Set

import _common

_common.ensure_venv()

import _mqtt  # noqa: E402

from agent.dev.localbroker import LocalBroker  # noqa: E402
from tests.support.toml_text import toml_text  # noqa: E402

DEVICE = "bench-memory"
STEADY_GOAL_MB = 60.0
GROWTH_GOAL_MB = 5.0


def outbox_seqs(path: Path) -> Set[int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return {int(s) for (s,) in db.execute("SELECT seq FROM messages")}
    finally:
        db.close()


def mean(values: List[float]) -> float:
    return sum(values) / len(values)


def sample(pid: int, seconds: float) -> List[float]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(_common.rss_mb(pid))
        time.sleep(1.0)
    return out


def scene_video(path: Path, seconds: float = 20.0, fps: float = 10.0) -> None:
    """The synthetic visitor as an MJPEG file: what the OpenCV camera adapter plays, standing in for a
    Pi's camera (a benchmark file in a temporary folder; the agent itself never writes media)."""
    import cv2  # noqa: PLC0415 - only for writing the stand-in video

    from agent.capture.synthetic import SyntheticCamera  # noqa: PLC0415

    camera = SyntheticCamera(640, 480, fps)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    for k in range(int(seconds * fps)):
        out.write(camera.render(k / fps))
    out.release()


def steady_rss(work: Path, camera: Dict[str, Any], quick: bool) -> List[float]:
    """Steady RSS of the agent with ``camera`` settings (presence check on, all default models)."""
    warmup, steady_s = (1.0, 2.0) if quick else (10.0, 10.0)
    work.mkdir()
    with _common.EmulatorHost() as emu, LocalBroker(work / "broker") as broker:
        cfg = toml_text(
            {
                "device_id": DEVICE,
                "hume": {"api_key": _common.API_KEY, "v0": {"url": emu.url}, "v1": {"url": emu.base_url}},
                "mqtt": {"host": broker.host, "port": broker.port},
                "outbox": {"path": str(work / "outbox.sqlite")},
                "camera": camera,
                "microphone": {"source": "speech"},
            }
        )
        (work / "agent.toml").write_text(cfg, encoding="utf-8")
        env = dict(os.environ, RUNTIME_DIRECTORY=str(work))
        env.pop("HUME_API_KEY", None)
        exe = Path(sys.executable).with_name("hume-edge")
        with open(work / "agent.log", "wb") as log:
            agent = subprocess.Popen(
                [str(exe), "run", "--config", str(work / "agent.toml")], cwd=work, env=env, stderr=log
            )
            sub = _mqtt.SeqSubscriber(broker.host, broker.port, DEVICE)
            try:
                _common.wait_until(lambda: bool(sub.times), 90, "the first summary", 0.1)
                time.sleep(warmup)
                return sample(agent.pid, steady_s)
            finally:
                sub.close()
                agent.terminate()
                agent.wait(30)


def run(work: Path, quick: bool) -> Dict[str, Any]:
    warmup, steady_s, outage_s = (1.0, 2.0, 4.0) if quick else (10.0, 10.0, 60.0)
    outbox = work / "outbox.sqlite"
    with _common.EmulatorHost() as emu, LocalBroker(work / "broker") as broker:
        cfg = toml_text(
            {
                "device_id": DEVICE,
                "hume": {"api_key": _common.API_KEY, "v0": {"url": emu.url}, "v1": {"url": emu.base_url}},
                "camera": {"source": "synthetic"},
                "microphone": {"source": "speech"},
                "mqtt": {"host": broker.host, "port": broker.port, "reconnect_max_s": 2.0},
                "outbox": {"path": str(outbox)},
                "summary": {"window_s": 0.5},
            }
        )
        (work / "agent.toml").write_text(cfg, encoding="utf-8")
        env = dict(os.environ, RUNTIME_DIRECTORY=str(work))
        env.pop("HUME_API_KEY", None)
        exe = Path(sys.executable).with_name("hume-edge")
        log = open(work / "agent.log", "wb")  # noqa: SIM115 - closed below, after the process
        agent = subprocess.Popen(
            [str(exe), "run", "--config", str(work / "agent.toml")], cwd=work, env=env, stderr=log
        )
        sub = _mqtt.SeqSubscriber(broker.host, broker.port, DEVICE)
        try:
            try:
                _common.wait_until(lambda: bool(sub.times), 90, "the first summary", 0.1)
            except RuntimeError:
                sys.stderr.write((work / "agent.log").read_text(errors="replace")[-3000:])
                raise
            time.sleep(warmup)
            steady = sample(agent.pid, steady_s)
            window = sub.window
            sub.close()
            broker.stop()
            outage = sample(agent.pid, outage_s)
            backlog = outbox_seqs(outbox)
            broker.start()
            restarted = time.monotonic()
            sub = _mqtt.SeqSubscriber(broker.host, broker.port, DEVICE)
            got_all = _common.wait_until(
                lambda: backlog <= set(sub.times), 30, "the backlog at the subscriber", 0.01
            )
            drained = {s: sub.times[s] for s in backlog}
            sub.close()
            sub = _mqtt.SeqSubscriber(broker.host, broker.port, DEVICE)
            n = len(backlog)
            _mqtt.ceiling(broker.host, broker.port, n, window or 20, DEVICE)
            _common.wait_until(lambda: set(range(n)) <= set(sub.times), 30, "the ceiling's messages", 0.01)
            ceiling = [sub.times[i] for i in range(n)]
        finally:
            sub.close()
            agent.terminate()
            agent.wait(30)
            log.close()
    first, last = min(drained.values()), max(drained.values())
    return {
        "steady": steady,
        "outage": outage,
        "outage_s": outage_s,
        "backlog": len(backlog),
        "reconnect_s": first - restarted,
        "drain_s": max(last - first, 1e-6),
        "all_s": got_all - restarted,
        "ceiling_s": max(max(ceiling) - min(ceiling), 1e-6),
        "window": window or 20,
    }


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="hume-edge-bench-") as tmp:
        r = run(Path(tmp), args.quick)
        video = Path(tmp) / "visitor.avi"
        scene_video(video)
        pi_path = steady_rss(Path(tmp) / "pi", {"source": "opencv", "device": str(video)}, args.quick)
        no_camera = steady_rss(Path(tmp) / "none", {"source": "none"}, args.quick)
    steady_mean = sum(r["steady"]) / len(r["steady"])
    steady_max = max(r["steady"])
    growth = r["outage"][-1] - steady_mean
    peak_growth = max(r["outage"]) - steady_mean
    rate = r["backlog"] / r["drain_s"]
    ceiling_rate = r["backlog"] / r["ceiling_s"]
    details = "\n".join(
        [
            _common.markdown(
                ["phase", "figure"],
                [
                    ["steady RSS (mean / max)", f"{steady_mean:.1f} / {steady_max:.1f} MB"],
                    [f"outage ({r['outage_s']:g} s)", f"{r['backlog']} messages queued durably"],
                    [
                        "RSS growth at the end of the outage (peak)",
                        f"{growth:+.2f} MB ({peak_growth:+.2f} MB)",
                    ],
                    ["broker back -> first backlog message", f"{r['reconnect_s']:.2f} s (reconnect backoff)"],
                    ["first -> last backlog message", f"{r['drain_s'] * 1000:.0f} ms = {rate:,.0f} msg/s"],
                    [
                        "(a) paho in memory, same count, first -> last at the subscriber",
                        f"{r['ceiling_s'] * 1000:.0f} ms = {ceiling_rate:,.0f} msg/s",
                    ],
                ],
            ),
            "",
            f"In-flight window {r['window']} (as the agent's health reports it). RSS samples once a second: "
            f"steady {', '.join(f'{v:.1f}' for v in r['steady'])}; "
            f"outage last {', '.join(f'{v:.1f}' for v in r['outage'][-5:])} MB.",
        ]
    )
    headline = [
        _common.row(
            "5 memory", "steady RSS, all default models",
            (f"{steady_mean:.1f} MB", "", ""), f"<= {STEADY_GOAL_MB:g} MB", steady_max <= STEADY_GOAL_MB,
        ),
        _common.row(
            "5 memory", "steady RSS, Pi path (OpenCV file camera + presence)",
            (f"{mean(pi_path):.1f} MB", f"{mean(no_camera):.1f} MB (no camera)", ""),
            f"<= {STEADY_GOAL_MB:g} MB", max(pi_path) <= STEADY_GOAL_MB,
        ),
        _common.row(
            "5 memory", f"RSS growth over a {r['outage_s']:g} s broker outage",
            (f"{growth:+.2f} MB ({r['backlog']} queued)", "", ""), f"<= {GROWTH_GOAL_MB:g} MB",
            growth <= GROWTH_GOAL_MB,
        ),
        _common.row(
            "6 drain", "backlog to the broker after the outage",
            (f"{rate:,.0f} msg/s", f"{ceiling_rate:,.0f} msg/s (a)", f"{rate / ceiling_rate:.2f}x"),
            "(no goal)", None,
        ),
    ]  # fmt: skip
    _common.finish(args, "Benchmarks 5-6: memory through a broker outage, and the drain", details, headline)


if __name__ == "__main__":
    main()
