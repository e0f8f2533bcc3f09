"""The shipped broker access rules (config/mosquitto/), enforced by a real mosquitto against the real agent.

The broker runs the settings of ``config/mosquitto/hume-edge.conf`` (its listeners and file paths replaced by
private ones), the ACL ``config/mosquitto/hume-edge.acl`` as shipped, and the accounts of
``config/mosquitto/passwords.example`` hashed by ``mosquitto_passwd -U`` plus one account the ACL never
names ("intruder"). The agent is ``hume-edge run`` as a process, logged in as its device id.

What a hostile account (the intruder, or a read-only dashboard turning hostile) must not do: publish a
command the agent obeys, read ``cmd/text``, take over the agent's client id, or change the agent's retained
``status`` and discovery. What the kiosk's own UI account must still do: start a session and feed
``cmd/text`` to Hume's language model.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from tests.support.emulator import TEST_KEY
from tests.support.mosquitto import Received, Subscriber
from tests.support.ports import free_port
from tests.support.processes import agent_process
from tests.support.toml_text import toml_text
from tests.support.waits import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "mosquitto"
DEVICE = "kiosk-lobby"  # the device the shipped ACL's example UI block names
PREFIX = f"hume-edge/{DEVICE}/"
WAIT_S = 20.0


def accounts() -> Dict[str, str]:
    """user -> password from the shipped example password file."""
    out: Dict[str, str] = {}
    for line in (SHIPPED / "passwords.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            user, _, password = line.partition(":")
            out[user] = password
    return out


def shipped_settings() -> List[str]:
    """The shipped broker settings, minus what names this machine's paths and ports."""
    local = ("listener", "certfile", "keyfile", "cafile", "password_file", "acl_file")
    lines = (SHIPPED / "hume-edge.conf").read_text(encoding="utf-8").splitlines()
    return [ln for ln in lines if ln.strip() and not ln.startswith("#") and not ln.startswith(local)]


class AclBroker:
    """mosquitto with the shipped settings and ACL on a free loopback port."""

    def __init__(self, workdir: Path) -> None:
        from agent.localbroker import LocalBroker

        workdir.mkdir(parents=True, exist_ok=True)
        pwfile = workdir / "passwd"
        users = dict(accounts(), intruder="intruder-pw")
        pwfile.write_text("".join(f"{u}:{p}\n" for u, p in users.items()), encoding="utf-8")
        subprocess.run(["mosquitto_passwd", "-U", str(pwfile)], check=True, capture_output=True, timeout=30)
        extra = [*shipped_settings(), f"password_file {pwfile}", f"acl_file {SHIPPED / 'hume-edge.acl'}"]
        self.broker = LocalBroker(workdir, port=free_port(), extra_config="\n".join(extra))
        self.host = self.broker.host
        self.port = self.broker.port


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[AclBroker]:
    b = AclBroker(tmp_path / "broker")
    b.broker.start()
    yield b
    b.broker.stop()


def client(broker: AclBroker, user: str, topics: List[str], **options: Any) -> Subscriber:
    password = options.pop("password", accounts().get(user, "intruder-pw"))
    sub = Subscriber(broker.host, broker.port, topics, username=user, password=password, **options)
    assert sub.connected.wait(10), f"{user} could not log in"
    return sub


def agent_toml(emulator_url: str, broker: AclBroker, workdir: Path) -> str:
    cfg = {
        "device_id": DEVICE,
        "hume": {"backend": "v0", "api_key": TEST_KEY, "models": ["language"], "v0": {"url": emulator_url}},
        "camera": {"source": "none"},
        "microphone": {"source": "none"},
        "session": {"mode": "command"},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "username": DEVICE,
            "password": accounts()[DEVICE],
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 1.0,
        },
        "outbox": {"path": str(workdir / "outbox.sqlite")},
    }
    return toml_text(cfg)


def topics_of(msgs: List[Received]) -> List[str]:
    return [m.topic for m in msgs]


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto-clients is not installed")
async def test_only_the_kiosks_own_accounts_can_command_it(
    emulator: Any, acl_broker: AclBroker, tmp_path: Path
) -> None:
    dashboard = client(acl_broker, "dashboard", ["hume-edge/#", "homeassistant/#"])
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(agent_toml(emulator.url, acl_broker, tmp_path), encoding="utf-8")
    env = dict(os.environ, RUNTIME_DIRECTORY=str(tmp_path))
    env.pop("HUME_API_KEY", None)
    log_path = tmp_path / "agent.log"
    proc = await agent_process(cfg_path, cwd=tmp_path, log=log_path, env=env)

    def log() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    try:
        online = await dashboard.until(
            lambda ms: any(m.topic == PREFIX + "status" and m.payload == b"online" for m in ms), WAIT_S
        )
        assert online, "the agent did not come online with its own account:\n" + log()
        assert await dashboard.until(lambda ms: any(m.topic.startswith("homeassistant/") for m in ms), WAIT_S)

        # The intruder: an account the ACL never names. It listens to everything, and tries the agent's
        # client id (the broker replaces it by the user name, so the agent is not knocked off).
        intruder = client(acl_broker, "intruder", ["#"], client_id=f"hume-edge-{DEVICE}")
        for topic, payload in [
            ("cmd/session", b"start"),
            ("cmd/text", b"visitor typed: my phone is 555-0100"),
            ("cmd/discovery", b""),
        ]:
            intruder.publish(PREFIX + topic, payload, retain=topic == "cmd/session")
        intruder.publish(PREFIX + "status", b"offline", retain=True)
        intruder.publish(f"homeassistant/device/{DEVICE}/config", b"{}", retain=True)
        # The dashboard account turning hostile: read-only, so its commands go nowhere either.
        dashboard.publish(PREFIX + "cmd/session", b"start")
        # Someone who knows the agent's user name but not its password is refused outright.
        impostor = Subscriber(
            acl_broker.host, acl_broker.port, ["#"], username=DEVICE, password="guess", client_id="x"
        )
        assert not impostor.connected.wait(1.0), "a wrong password for the agent's account was accepted"
        impostor.close()

        # Barrier: the kiosk UI sends an invalid command; once its cmd/result error is back, every earlier
        # publication (all acknowledged by the broker before this one was sent) has been routed or denied.
        ui = client(acl_broker, "kiosk-lobby-ui", [PREFIX + "cmd/result", PREFIX + "session"])
        ui.publish(PREFIX + "cmd/session", b"bogus")
        refused = await ui.until(
            lambda ms: any(m.topic.endswith("cmd/result") and m.json().get("ok") is False for m in ms), WAIT_S
        )
        assert refused, "the kiosk UI's command got no answer:\n" + log()
        assert PREFIX + "session" not in topics_of(dashboard.messages), "a hostile command started a session"
        assert not emulator.requests, "a hostile cmd/text reached Hume"
        assert not intruder.messages, f"intruder read: {topics_of(intruder.messages)}"

        # The kiosk UI's commands work: a session, then text for the language model.
        ui.publish(PREFIX + "cmd/session", b"start")
        assert await dashboard.until(lambda ms: any(m.topic == PREFIX + "session" for m in ms), WAIT_S)
        ui.publish(PREFIX + "cmd/text", b"I love this exhibition")
        assert await eventually(lambda: len(emulator.requests) >= 1, WAIT_S), "UI text never reached Hume"
        assert not any(m.topic.endswith("cmd/text") for m in dashboard.messages), "a dashboard read cmd/text"
        assert not intruder.messages, f"intruder read: {topics_of(intruder.messages)}"

        # What a dashboard connecting now reads as retained is still the agent's own state.
        fresh = client(acl_broker, "dashboard", [PREFIX + "status", f"homeassistant/device/{DEVICE}/config"])
        assert await fresh.until(lambda ms: len(ms) >= 2, WAIT_S)
        retained = {m.topic: m.payload for m in fresh.messages}
        assert retained[PREFIX + "status"] == b"online"
        assert "dev" in json.loads(retained[f"homeassistant/device/{DEVICE}/config"])
        assert "lost the MQTT connection" not in log_path.read_text(errors="replace"), log()
        for sub in (intruder, ui, fresh):
            sub.close()
    finally:
        dashboard.close()
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except asyncio.TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
