"""The shipped broker config (config/mosquitto/): the conf, the ACL and the example accounts, as shipped.

mosquitto runs ``hume-edge.conf`` with only its ports and file paths changed (``ShippedBroker.changes()``
proves it and the test prints the changes), the ACL ``hume-edge.acl`` byte for byte from the repository,
and ``passwords.example`` hashed by ``mosquitto_passwd -U`` as docs/security.md says, plus hostile accounts
added with ``mosquitto_passwd -b``: "intruder" (named nowhere) and names that escaped the old ``pattern``
lines (``kiosk-lobby/cmd``, ``kiosk-lobby/+``, ``+``).

What must hold: the conf starts on the mosquitto a kiosk or fleet server runs (Debian 12's 2.0.11 here;
the version is read and printed) and nothing plaintext listens on a wildcard address; no account but a
kiosk's own agent can publish anything a fake kiosk needs under that kiosk's tree or Home Assistant
discovery (each publication's MQTT 5 PUBACK says which); and against the real agent, a hostile account
cannot command it, read ``cmd/text``, take over its client id or change its retained state, while the
kiosk's own UI account still can start a session and feed ``cmd/text`` to Hume.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import signal
import ssl
import threading
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.emulator import TEST_KEY
from tests.support.mosquitto import Received, Subscriber
from tests.support.processes import agent_process
from tests.support.shipped_broker import (
    DEVICE,
    AclBroker,
    Writer,
    accounts,
    listening,
    mosquitto_version,
    own_writes,
    try_writes,
)
from tests.support.toml_text import toml_text
from tests.support.waits import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto-clients is not installed"),
]

OTHER = "kiosk-hall"
PREFIX = f"hume-edge/{DEVICE}/"
WAIT_S = 20.0


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[AclBroker]:
    b = AclBroker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def client(broker: AclBroker, user: str, topics: List[str], **options: Any) -> Subscriber:
    password = options.pop("password", broker.accounts[user])
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
        fresh = client(
            acl_broker,
            "dashboard",
            [PREFIX + "status", f"homeassistant/device/{DEVICE}/config", PREFIX + "state/language"],
        )
        assert await fresh.until(lambda ms: len(ms) >= 3, WAIT_S)
        retained = {m.topic: m.payload for m in fresh.messages}
        assert json.loads(retained[PREFIX + "state/language"])["model"] == "language", (
            "the live state HA reads"
        )
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


def test_the_shipped_conf_starts_and_nothing_plaintext_listens_on_a_wildcard_address(tmp_path: Path) -> None:
    """Debian 12's mosquitto 2.0.11 opened its implicit default listener (plaintext 1883, every interface)
    because a listener option came before the first ``listener`` line, and refused to start when the
    loopback listener wanted the same port (issue #30)."""
    version = mosquitto_version()
    broker = AclBroker(tmp_path / "broker")
    changes = broker.changes()
    print(f"mosquitto {version}; hume-edge.conf as shipped but for:")
    for old, new in changes:
        print(f"  {old}  ->  {new}")
    assert tuple(int(x) for x in version.split(".")[:2]) >= (2, 0), version
    broker.start()
    try:
        sockets = listening(broker.pid)
        print(f"listening: {sorted(sockets)}")
        wildcard = {(a, p) for a, p in sockets if ipaddress.ip_address(a).is_unspecified}
        assert {p for _, p in wildcard} <= {broker.tls_port}, f"plaintext on a wildcard address: {sockets}"
        assert {(a, p) for a, p in sockets if p == broker.port} == {("127.0.0.1", broker.port)}, sockets
        assert {p for _, p in sockets} == {broker.port, broker.tls_port}, sockets

        # The TLS listener speaks TLS, with the shipped accounts; the loopback one refuses anonymous logins.
        def login(port: int, user: str = "", password: str = "", tls: bool = False) -> Any:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
            if user:
                c.username_pw_set(user, password)
            if tls:
                c.tls_set(ca_certs=str(broker.certs.ca))
            try:
                c.connect(broker.host, port, keepalive=10)
            except (OSError, ssl.SSLError) as exc:
                return exc
            done = threading.Event()
            result: List[Any] = []
            c.on_connect = lambda *a: (result.append(a[3]), done.set())
            c.on_disconnect = lambda *a: done.set()
            c.loop_start()
            done.wait(10)
            c.loop_stop()
            c.disconnect()
            return result[0] if result else "no CONNACK"

        assert str(login(broker.tls_port, "dashboard", broker.accounts["dashboard"], tls=True)) == "Success"
        assert str(login(broker.tls_port, "dashboard", broker.accounts["dashboard"])) != "Success"
        assert str(login(broker.port, "fleet", broker.accounts["fleet"])) == "Success"
        assert str(login(broker.port)) == "Not authorized"
    finally:
        broker.stop()


def test_no_account_can_write_as_another_kiosk(acl_broker: AclBroker) -> None:
    """Every account kind of the shipped ACL, and names with '/' and '+', tries every write a fake kiosk needs
    under the example kiosk, the other kiosk and a kiosk named after itself: only a kiosk's own agent may
    write its tree and discovery, and its own UI account its commands (issue #31: with the old ``pattern``
    lines, dashboard, fleet and the UI account each published a whole fake kiosk, and ``kiosk-lobby/cmd``
    paused kiosk-lobby)."""
    allowed: List[Tuple[str, str]] = []
    tried = 0
    for user in acl_broker.accounts:
        writer = Writer(acl_broker, user)
        try:
            n, accepted = try_writes(writer, user)
        finally:
            writer.close()
        tried += n
        allowed += [(user, topic) for topic in accepted]
    print(f"{len(acl_broker.accounts)} accounts tried {tried} writes; {len(allowed)} allowed")
    assert sorted(allowed) == sorted(own_writes(acl_broker.accounts))
