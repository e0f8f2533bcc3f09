"""mosquitto running ``config/mosquitto/`` as shipped: the conf, the ACL and the example password file.

What a broker admin does, and nothing else: copy ``passwords.example`` and hash it in place with
``mosquitto_passwd -U`` (the documented command), point ``hume-edge.conf`` at the files, start mosquitto
with it. The only changes to the shipped conf are :meth:`ShippedBroker.rewrites`: its two ports (the test
cannot bind 1883/8883, which another broker may hold) and its file paths; as root also ``user root``
appended (mosquitto otherwise drops to user ``mosquitto``, who cannot read a private temp dir).
:meth:`ShippedBroker.changes` diffs the written conf against the shipped one line by line and raises if
anything else differs. The ACL is read from the repository itself (byte for byte, not copied).

With ``mtls=True`` the optional ``hume-edge-mtls.conf`` (client certificates, the CN as user name) runs too,
laid out as on Debian: a main conf that says only ``include_dir`` (and ``user root`` as root), the two
rewritten files in that directory; :meth:`ShippedBroker.mtls_changes` proves its only changes are its port
and certificate paths.

:func:`listening` reads which addresses the broker's own sockets listen on, from ``/proc`` (no ``ss``
needed), so a test can prove nothing plaintext listens on a wildcard address.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.dev.localbroker import LocalBroker, mosquitto_executable
from agent.mqtt.broker_acl import ACCOUNT_NAME, UI_SUFFIX
from agent.mqtt.discovery import config_topic
from tests.support.mosquitto import Certs, make_certs
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "mosquitto"
SHIPPED_PLAIN_PORT, SHIPPED_TLS_PORT, SHIPPED_MTLS_PORT = 1883, 8883, 8884
MTLS_CONF = "hume-edge-mtls.conf"


def _rewritten(name: str, text: str, rewrites: List[Tuple[str, str]]) -> str:
    for old, new in rewrites:
        assert old in text, f"{name} no longer has {old!r}: update ShippedBroker's rewrites"
        text = text.replace(old, new)
    return text


def _changes(shipped_text: str, text: str, rewrites: List[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """(shipped line, written line) for every line that differs; raises on anything not a rewrite."""
    shipped, written = shipped_text.splitlines(), text.splitlines()
    assert len(shipped) == len(written), "the rewrite added or removed lines"
    allowed = {old.rstrip("\n"): new.rstrip("\n") for old, new in rewrites}
    diff = [(a, b) for a, b in zip(shipped, written) if a != b]
    for a, b in diff:
        assert allowed.get(a) == b, f"the test changed {a!r} into {b!r}: not a port or path rewrite"
    assert len(diff) == len(allowed), f"only {len(diff)} of {len(allowed)} rewrites applied"
    return diff


def example_accounts() -> Dict[str, str]:
    """user -> password, from the shipped ``passwords.example`` (``user:password`` lines)."""
    out: Dict[str, str] = {}
    for line in (SHIPPED / "passwords.example").read_text(encoding="utf-8").splitlines():
        user, sep, password = line.partition(":")
        assert sep, f"passwords.example: {line!r} is not user:password"
        out[user] = password
    return out


def mosquitto_version() -> str:
    """``2.0.11``: what ``mosquitto -h`` says of itself."""
    exe = mosquitto_executable()
    assert exe is not None, "mosquitto is not installed"
    proc = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=10, check=False)
    match = re.search(r"mosquitto version (\S+)", proc.stdout + proc.stderr)
    assert match, proc.stdout + proc.stderr
    return match.group(1)


def listening(pid: int) -> Set[Tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on, from /proc/PID/fd and /proc/net."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, width in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_addr, hex_port = local.split(":")
            raw = bytes.fromhex(hex_addr)
            # /proc/net/tcp prints each 32-bit word in host (little-endian) order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
            found.add((str(ipaddress.ip_address(packed)), int(hex_port, 16)))
    return found


class ShippedBroker:
    """The shipped conf, ACL and example accounts on a private mosquitto (``start()``/``stop()``)."""

    def __init__(
        self,
        workdir: Path,
        certs: Certs,
        extra_accounts: Optional[Mapping[str, str]] = None,
        *,
        mtls: bool = False,
    ) -> None:
        """``mtls``: ``hume-edge-mtls.conf`` too (its listener: client certificates, the CN as user name)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.accounts = example_accounts()
        self.password_file = workdir / "hume-edge.passwd"
        # docs/security.md's commands: cp passwords.example ... && mosquitto_passwd -U ...
        shutil.copyfile(SHIPPED / "passwords.example", self.password_file)
        self._passwd("-U", str(self.password_file))
        # Accounts a test adds (a hostile login), the way an admin adds one: mosquitto_passwd -b.
        for user, password in (extra_accounts or {}).items():
            self._passwd("-b", str(self.password_file), user, password)
            self.accounts[user] = password
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port()
        self.certs = certs
        self.mtls_port = free_port()
        self.shipped_text = (SHIPPED / "hume-edge.conf").read_text(encoding="utf-8")
        self.text = _rewritten("hume-edge.conf", self.shipped_text, self.rewrites())
        # As root mosquitto would drop to user "mosquitto", who cannot read a private temp dir.
        root = "user root\n" if os.geteuid() == 0 else ""
        self.mtls_shipped_text = (SHIPPED / MTLS_CONF).read_text(encoding="utf-8")
        self.mtls_text = _rewritten(MTLS_CONF, self.mtls_shipped_text, self.mtls_rewrites())
        if mtls:
            # Debian's layout: mosquitto.conf says `include_dir /etc/mosquitto/conf.d`, which holds both.
            conf_d = workdir / "conf.d"
            conf_d.mkdir(exist_ok=True)
            (conf_d / "hume-edge.conf").write_text(self.text, encoding="utf-8")
            (conf_d / MTLS_CONF).write_text(self.mtls_text, encoding="utf-8")
            whole = f"include_dir {conf_d}\n{root}"
        else:
            whole = self.text + root
        self.broker = LocalBroker(workdir, port=self.port, whole_config=whole)

    @staticmethod
    def _passwd(*args: str) -> None:
        exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode == 0, f"mosquitto_passwd {args[0]} failed: {proc.stdout}{proc.stderr}"

    def rewrites(self) -> List[Tuple[str, str]]:
        """(shipped text, what the test writes instead): ports and paths, nothing else."""
        return [
            (f"listener {SHIPPED_PLAIN_PORT} 127.0.0.1\n", f"listener {self.port} 127.0.0.1\n"),
            (f"listener {SHIPPED_TLS_PORT}\n", f"listener {self.tls_port}\n"),
            ("certfile /etc/mosquitto/certs/server.pem", f"certfile {self.certs.server_cert}"),
            ("keyfile /etc/mosquitto/certs/server.key", f"keyfile {self.certs.server_key}"),
            ("cafile /etc/mosquitto/certs/ca.pem", f"cafile {self.certs.ca}"),
            ("password_file /etc/mosquitto/hume-edge.passwd", f"password_file {self.password_file}"),
            ("acl_file /etc/mosquitto/hume-edge.acl", f"acl_file {SHIPPED / 'hume-edge.acl'}"),
        ]

    def mtls_rewrites(self) -> List[Tuple[str, str]]:
        """The same for ``hume-edge-mtls.conf``: its port and certificate paths (the test CA is the fleet
        CA)."""
        return [
            (f"listener {SHIPPED_MTLS_PORT}\n", f"listener {self.mtls_port}\n"),
            ("certfile /etc/mosquitto/certs/server.pem", f"certfile {self.certs.server_cert}"),
            ("keyfile /etc/mosquitto/certs/server.key", f"keyfile {self.certs.server_key}"),
            ("cafile /etc/mosquitto/certs/fleet-ca.pem", f"cafile {self.certs.ca}"),
        ]

    def changes(self) -> List[Tuple[str, str]]:
        """(shipped line, written line) for every line that differs; raises on anything not a rewrite."""
        return _changes(self.shipped_text, self.text, self.rewrites())

    def mtls_changes(self) -> List[Tuple[str, str]]:
        """The same for ``hume-edge-mtls.conf``."""
        return _changes(self.mtls_shipped_text, self.mtls_text, self.mtls_rewrites())

    def start(self) -> None:
        self.broker.start()

    def stop(self) -> None:
        self.broker.stop()

    @property
    def pid(self) -> int:
        pid = self.broker.pid
        assert pid is not None, "the broker is not running"
        return pid


DEVICE = "kiosk-lobby"
"""The first of the two example kiosks the shipped ACL names."""
HOSTILE = {"intruder": "intruder-pw", f"{DEVICE}/cmd": "slash-pw", f"{DEVICE}/+": "plus-pw", "+": "plus-pw"}


def accounts() -> Dict[str, str]:
    """user -> password of the shipped example accounts."""
    return example_accounts()


class AclBroker(ShippedBroker):
    """The shipped conf, ACL and accounts (plus :data:`HOSTILE`), TLS certificates made for the test."""

    def __init__(self, workdir: Path, *, mtls: bool = False) -> None:
        super().__init__(workdir, make_certs(workdir / "certs"), HOSTILE, mtls=mtls)


class Writer:
    """One login's MQTT 5 session: ``publish`` returns the broker's PUBACK reason for that message.

    With a password (``broker.accounts[user]``) on the plain loopback listener; with ``cert`` (certificate
    and key files) on the mTLS listener, where ``user`` is only what the client claims in its CONNECT.
    """

    def __init__(
        self,
        broker: ShippedBroker,
        user: str,
        *,
        cert: Optional[Tuple[Path, Path]] = None,
        password: str = "",
    ) -> None:
        self.acks: Dict[int, str] = {}
        self._cond = threading.Condition()
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="w-x", protocol=mqtt.MQTTv5)
        port = broker.port
        if cert is None:
            self.client.username_pw_set(user, password or broker.accounts[user])
        else:
            if user:
                self.client.username_pw_set(user, password or None)
            self.client.tls_set(ca_certs=str(broker.certs.ca), certfile=str(cert[0]), keyfile=str(cert[1]))
            port = broker.mtls_port
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.received: List[Tuple[str, bytes]] = []
        self._subacks: Dict[int, List[str]] = {}
        self.client.connect(broker.host, port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(10), f"{user or cert} could not log in"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            self.connected.set()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._cond:
            self.acks[mid] = str(reason)
            self._cond.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        with self._cond:
            self._subacks[mid] = [str(r) for r in reasons]
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._cond:
            self.received.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def subscribe(self, topic: str) -> str:
        """Subscribe (QoS 1); the broker's SUBACK reason."""
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None, f"not subscribed to {topic}"
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self._subacks, 10), f"no SUBACK for {topic}"
            return self._subacks[mid][0]

    def wait_for(self, topic: str, payload: bytes, timeout_s: float = 10.0) -> bool:
        """Whether ``payload`` on ``topic`` arrives within ``timeout_s``."""
        with self._cond:
            return self._cond.wait_for(lambda: (topic, payload) in self.received, timeout_s)

    def publish(self, topic: str, payload: bytes = b'{"fake": true}', retain: bool = True) -> str:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self._cond:
            assert self._cond.wait_for(lambda: info.mid in self.acks, 10), f"no PUBACK for {topic}"
            return self.acks[info.mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


FAKE_KIOSK_WRITES = (
    "status", "health", "summary/face", "session", "aggregate", "notice", "cmd/result",
    "cmd/session", "cmd/privacy", "cmd/text",
)  # fmt: skip
"""Everything a fake kiosk publishes, and the commands another account could send to a device."""
UI_MAY = {"cmd/session", "cmd/privacy", "cmd/text"}
KIOSKS = (DEVICE, "kiosk-hall")
"""The example kiosks the shipped ACL names."""


def fake_kiosk_topics(device: str) -> List[str]:
    """Every topic a fake ``device`` would publish, its commands and its Home Assistant discovery."""
    return [f"hume-edge/{device}/{t}" for t in FAKE_KIOSK_WRITES] + [config_topic("homeassistant", device)]


def try_writes(writer: Writer, user: str) -> Tuple[int, List[str]]:
    """Publish every fake-kiosk topic of both example kiosks and of a kiosk named after ``user`` (or
    ``fake-kiosk`` when that is no account name); (how many tried, the topics the broker accepted)."""
    own = user if ACCOUNT_NAME.match(user) else "fake-kiosk"
    accepted: List[str] = []
    tried = 0
    for device in sorted(set(KIOSKS) | {own}):
        for topic in fake_kiosk_topics(device):
            tried += 1
            reason = writer.publish(topic)
            assert reason in ("Success", "No matching subscribers", "Not authorized"), reason
            if reason != "Not authorized":
                accepted.append(topic)
    return tried, accepted


def own_writes(users: Iterable[str]) -> List[Tuple[str, str]]:
    """(user, topic) the shipped ACL should let through: a kiosk's agent its tree and discovery, a kiosk's
    UI account its commands, and nothing for anyone else."""
    out: List[Tuple[str, str]] = []
    for user in users:
        if user in KIOSKS:
            out += [(user, t) for t in fake_kiosk_topics(user)]
        elif user.endswith(UI_SUFFIX) and user[: -len(UI_SUFFIX)] in KIOSKS:
            kiosk = user[: -len(UI_SUFFIX)]
            out += [(user, f"hume-edge/{kiosk}/{t}") for t in FAKE_KIOSK_WRITES if t in UI_MAY]
    return out
