"""``hume-edge fleet`` against three real agents on one real mosquitto.

Three ``hume-edge run`` processes (kiosk-a and kiosk-b from one config, kiosk-c with one setting changed;
no camera, no microphone, so they cost next to nothing) publish their retained status and health. The
fleet view, run as the real command, must list all three with version and config fingerprint and flag
kiosk-c; after kiosk-b is SIGKILLed the broker publishes its ``offline`` will (MQTT 5 will delay 1 s), and
both a fresh ``hume-edge fleet --json`` and a running ``--watch`` show it offline.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

from agent.ops import identity
from tests.support.mosquitto import Broker, Subscriber, make_certs

EXE = Path(sys.executable).with_name("hume-edge")
START_TIMEOUT_S = 60.0
FLEET_TIMEOUT_S = 30.0
BASE_CONFIG = """\
device_id = "{device}"
[hume]
api_key = "test-key"
backend = "v1"
[hume.v1]
url = "ws://127.0.0.1:9"
[hume.v0]
url = "ws://127.0.0.1:9/v0/stream/models"
[camera]
source = "none"
[microphone]
source = "none"
[session]
mode = "command"
[summary]
top_k = {top_k}
[mqtt]
host = "127.0.0.1"
port = {port}
health_interval_s = 1
will_delay_s = 1
discovery = false
"""


class Kiosk:
    """One ``hume-edge run`` with its own state and runtime directories."""

    def __init__(self, workdir: Path, device: str, port: int, top_k: int) -> None:
        self.device = device
        self.dir = workdir / device
        self.dir.mkdir()
        self.config = self.dir / "config.toml"
        self.config.write_text(BASE_CONFIG.format(device=device, port=port, top_k=top_k))
        env = {k: v for k, v in os.environ.items() if k not in ("HUME_API_KEY", "NOTIFY_SOCKET")}
        env.update(STATE_DIRECTORY=str(self.dir / "state"), RUNTIME_DIRECTORY=str(self.dir / "run"))
        with open(self.dir / "agent.log", "wb") as log:
            self.proc = subprocess.Popen(
                [str(EXE), "run", "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.dir,
            )

    def log(self) -> str:
        return (self.dir / "agent.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def fleet_of_three(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], tmp_path: Path
) -> Iterator[Dict[str, Kiosk]]:
    kiosks = {
        name: Kiosk(tmp_path, name, mosquitto.port, top_k)
        for name, top_k in (("kiosk-a", 3), ("kiosk-b", 3), ("kiosk-c", 5))
    }
    sub = subscriber(mosquitto, ["hume-edge/+/health"])

    def all_reported(messages: List[Any]) -> bool:
        return {m.topic.split("/")[1] for m in messages if b'"identity"' in m.payload} == set(kiosks)

    try:
        assert sub.wait_for(all_reported, START_TIMEOUT_S), "\n".join(k.log() for k in kiosks.values())
        yield kiosks
    finally:
        for kiosk in kiosks.values():
            kiosk.stop()


def _fleet(port: int, *extra: str) -> Dict[str, Any]:
    proc = subprocess.run(
        [str(EXE), "fleet", "--host", "127.0.0.1", "--port", str(port), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=FLEET_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report: Dict[str, Any] = json.loads(proc.stdout)
    return report


def _rows(report: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {row["device"]: row for row in report["kiosks"]}


@pytest.mark.slow
def test_fleet_lists_three_agents_flags_the_odd_config_and_shows_a_killed_one_offline(
    mosquitto: Broker, subscriber: Callable[..., Subscriber], fleet_of_three: Dict[str, Kiosk]
) -> None:
    rows = _rows(_fleet(mosquitto.port))
    assert sorted(rows) == ["kiosk-a", "kiosk-b", "kiosk-c"]
    assert {row["state"] for row in rows.values()} == {"online"}
    assert {row["version"] for row in rows.values()} == {identity.agent_version()}
    a, b, c = (rows[k]["config_fingerprint"] for k in ("kiosk-a", "kiosk-b", "kiosk-c"))
    assert a == b != c
    assert [k for k, row in rows.items() if row["config_differs"]] == ["kiosk-c"]
    assert rows["kiosk-a"]["backend"] == "v1"
    assert rows["kiosk-a"]["queue_depth"] is not None

    watcher = subprocess.Popen(
        [str(EXE), "fleet", "--port", str(mosquitto.port), "--host", "127.0.0.1", "--watch", "--json",
         "--interval-s", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = json.loads(_readline(watcher, FLEET_TIMEOUT_S))
        assert _rows(first)["kiosk-b"]["state"] == "online"

        sub = subscriber(mosquitto, ["hume-edge/kiosk-b/status"])
        fleet_of_three["kiosk-b"].proc.send_signal(signal.SIGKILL)
        fleet_of_three["kiosk-b"].proc.wait(10)
        assert sub.wait_for(lambda ms: any(m.payload == b"offline" for m in ms), 30.0), "no offline will"

        report = _fleet(mosquitto.port)
        states = {k: row["state"] for k, row in _rows(report).items()}
        assert states == {"kiosk-a": "online", "kiosk-b": "offline", "kiosk-c": "online"}
        assert report["counts"] == {"online": 2, "stopped": 0, "offline": 1, "unknown": 0}

        deadline = time.monotonic() + FLEET_TIMEOUT_S
        while _rows(json.loads(_readline(watcher, FLEET_TIMEOUT_S)))["kiosk-b"]["state"] != "offline":
            assert time.monotonic() < deadline, "--watch never showed kiosk-b offline"
        watcher.send_signal(signal.SIGINT)
        # Read what it still prints: with a full pipe its exit would block flushing stdout (it printed every
        # 0.2 s while the steps above took seconds).
        _, err = watcher.communicate(timeout=10)
        assert watcher.returncode == 0, err
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(5)


def test_fleet_says_why_when_the_broker_cannot_be_read(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(EXE), "fleet", "--host", "127.0.0.1", "--port", "9", "--json"],
        capture_output=True,
        text=True,
        timeout=FLEET_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "MQTT broker 127.0.0.1:9 unreachable" in proc.stderr


def _readline(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The next line ``proc`` prints, waiting at most ``timeout_s``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout_s), f"no output within {timeout_s} s: {proc.stderr and proc.stderr.read()}"
    line = proc.stdout.readline()
    assert line, f"fleet --watch ended: {proc.stderr and proc.stderr.read()}"
    return line


def test_fleet_reads_a_tls_broker_with_the_agents_credentials_and_says_why_it_cannot(
    mosquitto_factory: Callable[..., Broker], tmp_path: Path
) -> None:
    """``--config`` brings the agents' TLS and login, the password from the systemd credential."""
    certs = make_certs(tmp_path / "pki")
    broker = mosquitto_factory(password=("fleet", "right"), tls=certs)
    for topic, payload in (
        ("hume-edge/kiosk-x/status", "online"),
        ("hume-edge/kiosk-x/health", json.dumps({"identity": {"version": "9.9.9"}})),
        ("hume-edge/kiosk-y/health", "{not json"),
    ):
        subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "--cafile", str(certs.ca),
             "-u", "fleet", "-P", "right", "-t", topic, "-m", payload, "-r", "-q", "1"],
            check=True, timeout=10, capture_output=True,
        )  # fmt: skip
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mqtt_password").write_text("right\n")

    def fleet(ca: Path, password: str) -> subprocess.CompletedProcess[str]:
        (creds / "mqtt_password").write_text(f"{password}\n")
        config = tmp_path / "fleet.toml"
        config.write_text(
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ntls = true\ntls_ca = "{ca}"\n'
            'username = "fleet"\n'
        )
        return subprocess.run(
            [str(EXE), "fleet", "--config", str(config), "--json"],
            capture_output=True, text=True, timeout=FLEET_TIMEOUT_S, check=False,
            env={**os.environ, "CREDENTIALS_DIRECTORY": str(creds)},
        )  # fmt: skip

    ok = fleet(certs.ca, "right")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert [(k["device"], k["state"], k["version"]) for k in report["kiosks"]] == [
        ("kiosk-x", "online", "9.9.9")
    ]
    assert report["ignored"]["bad_json"] == 1  # kiosk-y's garbage: counted, not shown, no crash

    wrong_ca = fleet(certs.other_ca, "right")
    assert wrong_ca.returncode == 1
    assert "certificate verify failed" in wrong_ca.stderr

    wrong_password = fleet(certs.ca, "wrong")
    assert wrong_password.returncode == 1
    assert "refused the connection" in wrong_password.stderr


@pytest.mark.slow
def test_the_shipped_acls_fleet_account_reads_every_kiosk(tmp_path: Path) -> None:
    """config/mosquitto/: the ``fleet`` account sees what the fleet view needs, logged in as itself."""
    from tests.support.shipped_broker import DEVICE, AclBroker, accounts

    broker = AclBroker(tmp_path / "broker")
    broker.broker.start()
    try:
        password = accounts()[DEVICE]
        for topic, payload in (
            ("status", "online"),
            ("health", json.dumps({"identity": {"version": "1.2.3"}})),
        ):
            subprocess.run(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-u", DEVICE, "-P", password,
                 "-t", f"hume-edge/{DEVICE}/{topic}", "-m", payload, "-r", "-q", "1"],
                check=True, timeout=10, capture_output=True,
            )  # fmt: skip
        creds = tmp_path / "credentials"
        creds.mkdir()
        (creds / "mqtt_password").write_text(accounts()["fleet"] + "\n")
        config = tmp_path / "fleet.toml"
        config.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "fleet"\n')
        proc = subprocess.run(
            [str(EXE), "fleet", "--config", str(config), "--json", "--expect", "kiosk-hall"],
            capture_output=True, text=True, timeout=FLEET_TIMEOUT_S, check=False,
            env={**os.environ, "CREDENTIALS_DIRECTORY": str(creds)},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        rows = _rows(report)
        assert (rows[DEVICE]["state"], rows[DEVICE]["version"]) == ("online", "1.2.3")
        assert (rows[DEVICE]["expected"], report["unexpected"]) == (False, [DEVICE])  # not in --expect
    finally:
        broker.broker.stop()
