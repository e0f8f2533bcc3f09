"""Certificate identities on the shipped broker: a CN with a slash is refused by our recipe, and powerless.

Issue #31: an account named ``kiosk-lobby/cmd`` paused kiosk-lobby under the old ``pattern`` ACL, and the
docs recommend the certificate's common name as the user name (``use_identity_as_username``). Here:

1. The documented recipe (docs/security.md's ``openssl req ... -subj "/CN=<device id>"``) cannot make a
   certificate named ``kiosk-lobby/cmd`` (openssl refuses the subject), and ``hume-edge broker-acl`` refuses
   the name as a kiosk.
2. Made by hand anyway (``-subj '/CN=kiosk-lobby\\/cmd'``, signed by the fleet CA), it logs in on the mTLS
   listener of the shipped ``hume-edge-mtls.conf`` beside ``hume-edge.conf`` (both as shipped: only ports and
   paths change, and the test prints and checks each change) with the shipped ACL byte for byte, and can do
   nothing: every write a fake kiosk needs under either example kiosk or its discovery, every command topic,
   is refused (MQTT 5 PUBACK "Not authorized"), and it reads nothing, not even ``cmd/text``. It claims
   to be ``kiosk-lobby`` in its CONNECT, with kiosk-lobby's real password: the CN wins. The same for the other
   names that once escaped a pattern (``+``, ``#``, ``kiosk-lobby/+``...). Certificates named as every shipped
   account kind get exactly what that account gets with a password (``own_writes``).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from agent.mqtt.broker_acl import problems
from tests.support.shipped_broker import (
    DEVICE,
    ROOT,
    AclBroker,
    Writer,
    accounts,
    own_writes,
    try_writes,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto-clients is not installed"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
]

SLASHED = f"{DEVICE}/cmd"
HOSTILE_CNS = (SLASHED, f"{DEVICE}/cmd/privacy", f"{DEVICE}/+", f"{DEVICE}/#", "+", "#", "intruder")
"""Common names no account has: a '/' (or '+', '#') that once escaped ``pattern write hume-edge/%u/#``."""


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    return subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def documented_csr_command(device: str) -> List[str]:
    """docs/security.md's per-kiosk ``openssl req`` line with ``device`` as the CN (the files it writes keep
    the documented names, so a '/' can only fail in the subject)."""
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    line = next(
        x for x in text.splitlines() if x.startswith('openssl req -newkey rsa:2048 -nodes -subj "/CN=')
    )
    args = shlex.split(line)
    subj = args.index("-subj") + 1
    assert args[subj] == f"/CN={DEVICE}", line
    args[subj] = f"/CN={device}"
    return args


def common_name(cert: Path) -> str:
    """The certificate's subject CN as issued (openssl's multiline form escapes neither '/' nor '+')."""
    out = openssl("x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "multiline", cwd=cert.parent)
    assert out.returncode == 0, out.stderr
    names = [
        x.split("=", 1)[1].strip() for x in out.stdout.splitlines() if x.strip().startswith("commonName")
    ]
    assert len(names) == 1, out.stdout
    return names[0]


def hand_made_cert(ca_dir: Path, index: int, cn: str) -> Tuple[Path, Path]:
    """What someone with the fleet CA's key could make: any CN, '/' and '+' escaped for ``-subj``."""
    stem = f"client{index}"
    subject = "/CN=" + cn.replace("\\", "\\\\").replace("/", "\\/").replace("+", "\\+")
    for args in (
        ("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
         "-keyout", f"{stem}.key", "-out", f"{stem}.csr"),
        ("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-out", f"{stem}.pem"),
    ):  # fmt: skip
        done = openssl(*args, cwd=ca_dir)
        assert done.returncode == 0, done.stderr
    cert = ca_dir / f"{stem}.pem"
    assert common_name(cert) == cn, "openssl issued another name than asked for"
    return cert, ca_dir / f"{stem}.key"


@pytest.fixture
def mtls_broker(tmp_path: Path) -> Iterator[AclBroker]:
    b = AclBroker(tmp_path / "broker", mtls=True)
    print("hume-edge.conf as shipped but for:")
    for old, new in b.changes():
        print(f"  {old}  ->  {new}")
    print("hume-edge-mtls.conf as shipped but for:")
    for old, new in b.mtls_changes():
        print(f"  {old}  ->  {new}")
    b.start()
    yield b
    b.stop()


def test_the_documented_recipe_and_broker_acl_refuse_a_name_with_a_slash(tmp_path: Path) -> None:
    def run(args: List[str]) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
        return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)

    done = run(documented_csr_command(SLASHED))
    said = done.stderr.strip().splitlines()[-1:]
    print(f"{shlex.join(documented_csr_command(SLASHED))}: exit {done.returncode}: {said}")
    assert done.returncode != 0, "the documented recipe made a request for a CN with '/'"
    assert "Missing '=' after RDN type string 'cmd'" in done.stderr
    assert not (tmp_path / f"{DEVICE}.csr").exists()
    # The same recipe for a valid device id works: the refusal above is the subject's, not openssl failing.
    ok = run(documented_csr_command("kiosk-hall"))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / f"{DEVICE}.csr").exists()
    for cn in HOSTILE_CNS[:-1]:
        assert problems([cn], "hume-edge", "homeassistant"), f"broker-acl accepted kiosk {cn!r}"


def test_a_certificate_named_with_a_slash_is_powerless_under_the_shipped_acl(mtls_broker: AclBroker) -> None:
    ca_dir = mtls_broker.certs.ca.parent
    shipped = [user for user in accounts() if user not in HOSTILE_CNS]
    assert {DEVICE, f"{DEVICE}-ui", "dashboard", "fleet"} <= set(shipped), shipped
    certs = {cn: hand_made_cert(ca_dir, i, cn) for i, cn in enumerate([*shipped, *HOSTILE_CNS])}

    allowed: List[Tuple[str, str]] = []
    tried = 0
    for cn, cert in certs.items():
        # A hostile certificate claims to be the kiosk, with its real password: ignored, the CN counts.
        claim = (DEVICE, accounts()[DEVICE]) if cn in HOSTILE_CNS else ("", "")
        writer = Writer(mtls_broker, claim[0], cert=cert, password=claim[1])
        try:
            n, accepted = try_writes(writer, cn)
        finally:
            writer.close()
        tried += n
        allowed += [(cn, topic) for topic in accepted]
    print(f"{len(certs)} certificates tried {tried} writes; {len(allowed)} allowed")
    hostile = [(cn, t) for cn, t in allowed if cn in HOSTILE_CNS]
    assert not hostile, f"certificates no account has wrote: {hostile}"
    assert sorted(allowed) == sorted(own_writes(certs)), "a certificate got more (or less) than its account"

    # Reading: the hostile names listen to everything and to kiosk-lobby's commands; the kiosk's UI sends
    # cmd/text and cmd/privacy, which the kiosk (its own certificate) receives and nobody else.
    kiosk = Writer(mtls_broker, "", cert=certs[DEVICE])
    ui = Writer(mtls_broker, "", cert=certs[f"{DEVICE}-ui"])
    listeners = {cn: Writer(mtls_broker, DEVICE, cert=certs[cn]) for cn in HOSTILE_CNS}
    try:
        assert kiosk.subscribe(f"hume-edge/{DEVICE}/cmd/#") == "Granted QoS 1"
        subacks = {}
        for cn, listener in listeners.items():
            subacks[cn] = [listener.subscribe("#"), listener.subscribe(f"hume-edge/{DEVICE}/cmd/#")]
        print(f"SUBACKs of the hostile names: {subacks}")
        sent = [
            (f"hume-edge/{DEVICE}/cmd/text", b"visitor typed: 555-0100"),
            (f"hume-edge/{DEVICE}/cmd/privacy", b"pause"),
        ]
        for topic, payload in sent:
            assert ui.publish(topic, payload, retain=False) in ("Success", "No matching subscribers")
        for topic, payload in sent:
            assert kiosk.wait_for(topic, payload), f"the kiosk did not get {topic}"
        # The kiosk got both, so the broker has routed them: whatever a listener was to get, it has.
        read = {cn: listener.received for cn, listener in listeners.items() if listener.received}
        assert not read, f"hostile certificates read: {read}"
    finally:
        for client in (kiosk, ui, *listeners.values()):
            client.close()
