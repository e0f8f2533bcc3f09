"""A real Prometheus (Debian's ``prometheus`` package) for the tests, on a free loopback port of its own.

Never the system's: the package's own service (port 9090, if its postinst started one) is left alone; this
one gets a port from ``tests/support/ports.py``, its own TSDB directory in the test's tmp dir, and the
config the test wrote. Queries go through the HTTP API (``/api/v1/query``), as Grafana's do.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from agent.hume.types import BackendStatus, LinkStatus
from agent.ops import metrics_model
from agent.ops.health import (
    CameraHealth,
    Health,
    MicrophoneHealth,
    MqttHealth,
    OutboxHealth,
    PrivacyHealth,
    ProcessHealth,
    ServiceHealth,
    SessionHealth,
    SummaryHealth,
)
from agent.ops.identity import Identity
from agent.visit.session import END_REASONS
from tests.support.ports import free_port
from tests.support.waits import wait_until

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="Debian's prometheus package is not installed (scripts/setup --dev installs it)",
)
START_TIMEOUT_S = 30.0


class Prometheus:
    """``prometheus --config.file CONFIG`` with its data under ``workdir``."""

    def __init__(self, workdir: Path, config: Path) -> None:
        self.workdir = workdir
        self.config = config
        self.port = free_port()
        self.log = workdir / "prometheus.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert PROMETHEUS is not None
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        if not wait_until(self._ready, START_TIMEOUT_S, interval_s=0.1):
            raise RuntimeError(f"prometheus did not become ready:\n{self.tail()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``'s ``data``; AssertionError with Prometheus' error otherwise."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> List[Dict[str, Any]]:
        """An instant query's result vector (a scalar comes back as one unlabelled sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: List[Dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str) -> Dict[str, float]:
        """``{labels as text: value}`` of an instant query."""
        return {
            ",".join(f"{k}={v}" for k, v in sorted(s["metric"].items())): float(s["value"][1])
            for s in self.query(expr)
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


# A health snapshot and the checks the metrics tests share (test_metrics.py, test_fleet_metrics.py).

NOW = 1_796_689_860.0


def health(**service: Any) -> Health:
    """A kiosk mid-visit on v1: 7 face summaries, 2 visits ended by absence, 3 queued messages."""
    hume = BackendStatus.of_links(
        "v1",
        (
            ("audio", LinkStatus("open", connects=1, sent=50, replies=5)),
            ("video", LinkStatus("auth_failed", last_error="401", connects=3, sent=30, replies=28)),
        ),
        {},
        (("billed_audio_ms", 12_000), ("billed_video_ms", 30_000), ("error_rate_limited", 4)),
    )
    defaults: Dict[str, Any] = {
        "device_id": "kiosk-1",
        "session": SessionHealth(active=True, id="s1", ended={**dict.fromkeys(END_REASONS, 0), "absence": 2}),
        "camera": CameraHealth(state="online", frames=100, frames_sent=30),
        "microphone": MicrophoneHealth(state="offline", audio_sent_ms=4200, audio_skipped_ms=800),
        "summaries": SummaryHealth(published={"face": 7, "prosody": 0}, last_at="2026-12-08T00:30:59.000Z"),
        "hume": hume,
        "identity": Identity(
            "0.1.0", "3.11.2", "Debian", "x86_64", "abcdef012345", "v1", ("face", "prosody"), NOW
        ),
        "privacy": PrivacyHealth(paused=False),
    }
    defaults.update(service)
    mqtt = MqttHealth("connected", "127.0.0.1:1883", "5", "c", None, 2, 0, 20, 0, 0, 0, 10.0, 131072, 0, 3, 1)
    outbox = OutboxHealth(
        3, 900, 0, {"rows": 1, "bytes": 0, "age": 0, "oversize": 0}, 1, "full", "x", None, 42.5
    )
    return Health(NOW, ProcessHealth(12.0, 3.5, 80.0, 81.0), ServiceHealth(**defaults), mqtt, outbox)


def values(samples: List[metrics_model.Sample]) -> Dict[str, float]:
    return {f"{s.name}{{{','.join(s.labels[1:])}}}": s.value for s in samples}


def promtool(body: bytes) -> str:
    if PROMTOOL is None:
        pytest.skip("promtool is not installed (scripts/setup --dev)")
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, check=False)
    return (proc.stdout + proc.stderr).decode() if proc.returncode else ""
