"""mosquitto running ``config/mosquitto/`` as shipped: the conf, the ACL and the example password file.

What a broker admin does, and nothing else: copy ``passwords.example`` and hash it in place with
``mosquitto_passwd -U`` (the documented command), point ``hume-edge.conf`` at the files, start mosquitto
with it. The only changes to the shipped conf are :meth:`ShippedBroker.rewrites`: its two ports (the test
cannot bind 1883/8883, which another broker may hold) and its file paths; as root also ``user root``
appended (mosquitto otherwise drops to user ``mosquitto``, who cannot read a private temp dir).
:meth:`ShippedBroker.changes` diffs the written conf against the shipped one line by line and raises if
anything else differs. The ACL is read from the repository itself (byte for byte, not copied).

:func:`listening` reads which addresses the broker's own sockets listen on, from ``/proc`` (no ``ss``
needed), so a test can prove nothing plaintext listens on a wildcard address.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Set, Tuple

from agent.dev.localbroker import LocalBroker, mosquitto_executable
from tests.support.mosquitto import Certs, make_certs
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "mosquitto"
SHIPPED_PLAIN_PORT, SHIPPED_TLS_PORT = 1883, 8883


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
        self, workdir: Path, certs: Certs, extra_accounts: Optional[Mapping[str, str]] = None
    ) -> None:
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
        self.shipped_text = (SHIPPED / "hume-edge.conf").read_text(encoding="utf-8")
        self.text = self.shipped_text
        for old, new in self.rewrites():
            assert old in self.text, f"hume-edge.conf no longer has {old!r}: update ShippedBroker.rewrites"
            self.text = self.text.replace(old, new)
        if os.geteuid() == 0:
            self.text += "user root\n"
        self.broker = LocalBroker(workdir, port=self.port, whole_config=self.text)

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

    def changes(self) -> List[Tuple[str, str]]:
        """(shipped line, written line) for every line that differs; raises on anything not a rewrite."""
        shipped, written = self.shipped_text.splitlines(), self.text.splitlines()
        if os.geteuid() == 0:
            assert written[-1] == "user root", written[-1]
            written = written[:-1]
        assert len(shipped) == len(written), "the rewrite added or removed lines"
        allowed = {old.rstrip("\n"): new.rstrip("\n") for old, new in self.rewrites()}
        diff = [(a, b) for a, b in zip(shipped, written) if a != b]
        for a, b in diff:
            assert allowed.get(a) == b, f"the test changed {a!r} into {b!r}: not a port or path rewrite"
        assert len(diff) == len(allowed), f"only {len(diff)} of {len(allowed)} rewrites applied"
        return diff

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

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, make_certs(workdir / "certs"), HOSTILE)
