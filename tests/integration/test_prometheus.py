"""A real Prometheus scrapes real agents by every route the metrics take, with the shipped rules, and the
shipped dashboard's every query returns data.

Parts, all real: mosquitto; the Hume emulator (v0 and v1); kiosk-a (``hume-edge run``, v1, a synthetic
face, ``[metrics] listen`` and ``textfile_dir``); kiosk-b (v0, no camera or microphone: figures only);
``hume-edge fleet --metrics-listen`` on the broker; node_exporter's textfile collector on kiosk-a's
directory when Debian's ``prometheus-node-exporter`` is installed; and Prometheus with
``deploy/prometheus/prometheus.example.yml`` and ``hume-edge.rules.yml`` as shipped, except for the lines a
test must change (its targets' ports and 1 s intervals), which the test lists and asserts are the only
changes. Short intervals keep the test near 30 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from tests.support.mosquitto import Broker, Subscriber
from tests.support.ports import free_port
from tests.support.processes import Child, EmulatorProcess, port_open
from tests.support.prometheus import PROMTOOL, Prometheus, needs_prometheus
from tests.support.toml_text import toml_text
from tests.support.waits import wait_until

pytestmark = needs_prometheus

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "prometheus" / "prometheus.example.yml"
RULES = ROOT / "deploy" / "prometheus" / "hume-edge.rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "hume-edge-fleet.json"
EXE = Path(sys.executable).with_name("hume-edge")
NODE_EXPORTER = shutil.which("prometheus-node-exporter")
TIMEOUT_S = 30.0


def rewrite_example(text: str, fleet: int, agent: int, node: int) -> str:
    """The shipped example with only the test's changes: target ports, 1 s scrape and evaluation."""
    changes = {
        "  scrape_interval: 15s": "  scrape_interval: 1s",
        "  evaluation_interval: 15s": "  evaluation_interval: 1s",
        '"monitoring.example:9851"': f'"127.0.0.1:{fleet}"',
        '"kiosk-lobby.example:9852"': f'"127.0.0.1:{agent}"',
        '"kiosk-shop-1.example:9100"': f'"127.0.0.1:{node}"',
    }
    out = text
    for old, new in changes.items():
        assert text.count(old) == 1, old
        out = out.replace(old, new)
    changed = [a for a, b in zip(text.splitlines(), out.splitlines()) if a != b]
    assert len(changed) == len(changes)
    assert len(out.splitlines()) == len(text.splitlines())
    return out


class Kiosk(Child):
    """``hume-edge run`` with its own state and runtime directories."""

    def __init__(self, workdir: Path, device: str, settings: Dict[str, Any]) -> None:
        self.dir = workdir / device
        self.dir.mkdir()
        super().__init__(device, self.dir / "agent.log")
        config = self.dir / "config.toml"
        config.write_text(toml_text({"device_id": device, **settings}))
        env = {k: v for k, v in os.environ.items() if k not in ("HUME_API_KEY", "NOTIFY_SOCKET")}
        env.update(STATE_DIRECTORY=str(self.dir / "state"), RUNTIME_DIRECTORY=str(self.dir / "run"))
        self._spawn([str(EXE), "run", "--config", str(config)], env=env, cwd=self.dir)


def get(url: str) -> Optional[bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return bytes(resp.read())
    except OSError:
        return None


def promtool_check(body: bytes) -> str:
    """``promtool check metrics`` on ``body``: its complaints ("" when clean)."""
    assert PROMTOOL is not None
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, check=False)
    return (proc.stdout + proc.stderr).decode() if proc.returncode else ""


def dashboard_queries() -> List[str]:
    """Every PromQL expression of the shipped dashboard, and its device variable's query."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"])
    return exprs


def as_promql(expr: str) -> str:
    """Grafana's variables as Grafana would fill them for kiosk-a; ``label_values(m, l)`` reads ``m``."""
    expr = expr.replace("$device", "kiosk-a").replace("$__rate_interval", "1m")
    match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", expr)
    return match.group(1) if match else expr


@pytest.fixture
def fleet_setup(mosquitto: Broker, tmp_path: Path) -> Iterator[Dict[str, Any]]:
    emulator = EmulatorProcess(tmp_path, seed=7)
    emulator.start()
    common = {
        "hume": {"api_key": "test-key"},
        "microphone": {"source": "none"},
        "session": {"mode": "command"},
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "health_interval_s": 1, "will_delay_s": 1},
    }
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    agent_port, fleet_port, node_port = free_port(), free_port(), free_port()
    emu = f"ws://127.0.0.1:{emulator.port}"
    a = Kiosk(
        tmp_path,
        "kiosk-a",
        {
            **common,
            "hume": {"api_key": "test-key", "backend": "v1", "v1": {"url": emu, "min_session_s": 1.0}},
            "camera": {"source": "synthetic"},
            "summary": {"window_s": 1.0},
            "metrics": {"listen": f"127.0.0.1:{agent_port}", "textfile_dir": str(textfile)},
            "commands": {"privacy_per_hour": 1},  # the second cmd/privacy pause of the hour is refused
        },
    )
    b = Kiosk(
        tmp_path,
        "kiosk-b",
        {
            **common,
            "hume": {"api_key": "test-key", "backend": "v0", "v0": {"url": f"{emu}/v0/stream/models"}},
            "camera": {"source": "none"},
        },
    )
    fleet = Child("fleet", tmp_path / "fleet.log")
    fleet._spawn(
        [str(EXE), "fleet", "--host", "127.0.0.1", "--port", str(mosquitto.port),
         "--metrics-listen", f"127.0.0.1:{fleet_port}"]
    )  # fmt: skip
    node = Child("node_exporter", tmp_path / "node_exporter.log")
    if NODE_EXPORTER is not None:
        node._spawn(
            [NODE_EXPORTER, "--collector.disable-defaults", "--collector.textfile",
             f"--collector.textfile.directory={textfile}", f"--web.listen-address=127.0.0.1:{node_port}"]
        )  # fmt: skip
    config = tmp_path / "prometheus.yml"
    config.write_text(rewrite_example(EXAMPLE.read_text(), fleet_port, agent_port, node_port))
    shutil.copy(RULES, tmp_path / RULES.name)  # byte for byte, where the example's rule_files finds it
    prometheus = Prometheus(tmp_path, config)
    parts: List[Child] = [emulator, a, b, fleet, node]
    try:
        yield {
            "a": a, "b": b, "fleet": fleet, "prometheus": prometheus, "textfile": textfile,
            "agent_url": f"http://127.0.0.1:{agent_port}/metrics",
            "fleet_url": f"http://127.0.0.1:{fleet_port}/metrics",
            "node": NODE_EXPORTER is not None and wait_until(lambda: port_open(node_port), 10),
            "agent_port": agent_port,
        }  # fmt: skip
    finally:
        prometheus.stop()
        for part in reversed(parts):
            part.terminate()


def test_prometheus_scrapes_agent_fleet_and_textfile_with_the_shipped_rules_and_dashboard(
    fleet_setup: Dict[str, Any], mosquitto: Broker, subscriber: Any
) -> None:
    s = fleet_setup
    logs = lambda: "\n".join(p.tail(1500) for p in (s["a"], s["b"], s["fleet"]))  # noqa: E731
    sub: Subscriber = subscriber(mosquitto, ["hume-edge/kiosk-a/#"])

    def fleet_lists_both() -> bool:
        body = get(s["fleet_url"]) or b""
        return b'hume_edge_info{backend="v1"' in body and b'backend="v0",config' in body

    assert wait_until(lambda: get(s["agent_url"]) is not None, TIMEOUT_S), logs()
    assert wait_until(fleet_lists_both, TIMEOUT_S), logs()

    # A visit with summaries, counted by the agent.
    sub.publish("hume-edge/kiosk-a/cmd/session", b"start")
    assert sub.wait_for(lambda ms: any(m.topic.endswith("summary/face") for m in ms), TIMEOUT_S), logs()
    sub.publish("hume-edge/kiosk-a/cmd/session", b"end")

    def ended(ms: List[Any]) -> bool:
        return any(m.topic.endswith("/session") and b'"end"' in m.payload for m in ms)

    assert sub.wait_for(ended, TIMEOUT_S), logs()

    # Every exposition passes promtool, the agent's three routes and the fleet's.
    textfile = s["textfile"] / "hume_edge.prom"
    assert wait_until(textfile.exists, TIMEOUT_S)
    for name, body in (
        ("agent /metrics", get(s["agent_url"])),
        ("fleet /metrics", get(s["fleet_url"])),
        ("textfile", textfile.read_bytes()),
    ):
        assert body, name
        assert promtool_check(body) == "", f"{name}:\n{promtool_check(body)}"
    assert get(s["agent_url"].replace("/metrics", "/other")) is None  # 404: nothing else is served

    prom: Prometheus = s["prometheus"]
    prom.start()
    jobs = ["hume-edge", "hume-edge-fleet"] + (["node"] if s["node"] else [])

    def session_counted() -> bool:
        found = prom.values('hume_edge_sessions_total{device="kiosk-a",reason="command"}')
        return sorted(k.split("job=")[1].split(",")[0] for k, v in found.items() if v == 1) == sorted(jobs)

    assert wait_until(session_counted, TIMEOUT_S, interval_s=0.25), (prom.tail(), jobs)  # polling
    summaries = prom.values('hume_edge_summaries_total{device="kiosk-a",model="face",job="hume-edge"}')
    assert next(iter(summaries.values())) >= 1
    video = 'hume_edge_hume_billed_media_seconds_total{device="kiosk-a",job="hume-edge",modality="video"}'
    assert min(prom.values(video).values()) >= 10.0  # Hume bills a session 10 s at least
    assert prom.values('hume_edge_state{state="online"} == 1 and on (device) hume_edge_info{backend="v0"}')

    # cmd/privacy over its allowance (1 an hour here): pause, resume, pause again; the refusal is counted by
    # every route and the shipped alert fires, one per kiosk and source (#31).
    replies = lambda ms: [  # noqa: E731
        r for r in (m.json() for m in ms if m.topic.endswith("/cmd/result")) if r.get("command") == "privacy"
    ]
    for n, payload in enumerate((b"pause", b"resume", b"pause"), 1):
        sub.publish("hume-edge/kiosk-a/cmd/privacy", payload)
        assert sub.wait_for(lambda ms, n=n: len(replies(ms)) >= n, TIMEOUT_S), logs()
    assert [r["ok"] for r in replies(sub.messages)] == [True, True, False], replies(sub.messages)

    def refusal_counted() -> bool:
        found = prom.values('hume_edge_privacy_pauses_refused_total{device="kiosk-a",source="mqtt"}')
        return sorted(k.split("job=")[1].split(",")[0] for k, v in found.items() if v == 1) == sorted(jobs)

    assert wait_until(refusal_counted, TIMEOUT_S, interval_s=0.25), prom.tail()  # polling
    firing: Dict[str, float] = {}

    def refused_alert_firing() -> bool:
        firing.clear()
        firing.update(prom.values('ALERTS{alertname="HumeEdgePausesRefused",alertstate="firing"}'))
        return (
            len(firing) == 1
            and "device=kiosk-a" in next(iter(firing))
            and "source=mqtt" in next(iter(firing))
        )

    assert wait_until(refused_alert_firing, TIMEOUT_S, interval_s=0.25), firing  # polling

    # Every query of the shipped dashboard returns data (recording rules included).
    queries = [as_promql(e) for e in dashboard_queries()]
    assert len(queries) > 30
    empty: List[str] = []

    def all_answer() -> bool:
        empty[:] = [q for q in queries if not prom.query(q)]
        return not empty

    assert wait_until(all_answer, TIMEOUT_S, interval_s=0.5), f"no data for: {empty}"  # polling

    # A SIGKILLed agent: its alert is pending, by the broker's last will (fleet) and by the failed scrape.
    s["a"].signal(signal.SIGKILL)
    s["b"].signal(signal.SIGKILL)
    pending: Dict[str, float] = {}

    def down_alerts_pending() -> bool:
        pending.clear()
        pending.update(prom.values('ALERTS{alertname="HumeEdgeKioskDown",alertstate="pending"}'))
        keys = " ".join(pending)
        return "device=kiosk-a" in keys and "device=kiosk-b" in keys and f":{s['agent_port']}," in keys

    assert wait_until(down_alerts_pending, TIMEOUT_S, interval_s=0.25), pending  # polling
    assert not prom.values('ALERTS{alertname="HumeEdgeKioskDown",alertstate="firing"}')  # for: 5m
