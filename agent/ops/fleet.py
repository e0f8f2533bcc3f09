"""``hume-edge fleet``: every kiosk on a broker, one line each, from what the agents already publish.

Each agent keeps two retained topics up to date: ``{prefix}/{device}/status`` (``online`` / ``stopped``, or
the broker's ``offline`` last will) and ``{prefix}/{device}/health`` (links, outbox, session, last error and
the agent's identity: version, config fingerprint, ...). A subscription to ``{prefix}/+/status`` and
``{prefix}/+/health`` therefore gets the latest state of the whole fleet straight from the broker, in one
round trip, without reaching any kiosk: the broker is the inventory.

Two halves: :class:`FleetFold` is pure (bytes in, typed :class:`FleetReport` out) and is where every
decision is made; :func:`collect` and :func:`watch` are the thin paho part. Collection ends when the
broker has acknowledged the subscription (SUBACK: retained messages follow it) and then stayed quiet for
:data:`QUIET_S`, bounded by ``--wait-s``, rather than after a fixed sleep: on this machine the whole
command (Python start-up included) takes 1.2-1.5 s for a 3-kiosk fleet.

Every byte from the broker is untrusted: anyone with publish rights under the prefix can write there. A
payload over :data:`MAX_PAYLOAD_BYTES` is not parsed; bad JSON, wrong types, unknown status words and
topics outside the pattern are counted (``ignored``) and change nothing; text is stripped of control
characters (no terminal escapes reach the screen) and clipped; at most :data:`MAX_KIOSKS` kiosks are
tracked. ``--expect`` names the kiosks the admin runs (ids or ``kiosk-*`` patterns): any other kiosk is
marked unexpected and has no vote in the config majority, since three fakes published by one hostile
account would otherwise outvote the real kiosk and flag it ``*differs``. With MQTT 5 the client also
announces a Maximum Packet Size, so the broker drops oversized messages instead of sending them.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import fnmatch
import json
import os
import re
import ssl
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import config as config_mod
from agent import untrusted
from agent.config import Config, MqttConfig
from agent.errors import EX_CONFIG, ConfigError
from agent.untrusted import clip

MAX_PAYLOAD_BYTES = 64 * 1024
"""A health message is about 2 KB; anything 30x larger is not ours."""
MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + 4096
"""Announced to an MQTT 5 broker (CONNECT Maximum Packet Size): payload plus topic and headers."""
MAX_KIOSKS = 10_000
MAX_DEVICE_CHARS = 128
MAX_TEXT_CHARS = 160
QUIET_S = 0.5
"""After the SUBACK, collection ends once no message arrived for this long."""
DEFAULT_WAIT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
STATES = ("online", "stopped", "offline")
"""What an agent (or its last will) writes to ``status``; a kiosk with no status yet shows ``unknown``."""

EXIT_OK, EXIT_BROKER = 0, 1
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)$")


def clean_text(value: object, limit: int = MAX_TEXT_CHARS) -> Optional[str]:
    """A string fit for a terminal (:func:`agent.untrusted.clip`), or None when it is not a string."""
    return clip(value, limit) if isinstance(value, str) else None


def _int(value: object) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _get(body: Mapping[str, Any], *path: str) -> object:
    node: object = body
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


@dataclasses.dataclass(frozen=True)
class HealthView:
    """What the fleet view reads from one ``health`` message; every field may be missing (None)."""

    ts: Optional[str] = None
    version: Optional[str] = None
    config_fingerprint: Optional[str] = None
    python: Optional[str] = None
    os: Optional[str] = None
    backend: Optional[str] = None
    started_at: Optional[str] = None
    session_active: Optional[bool] = None
    queue_depth: Optional[int] = None
    dropped: Optional[int] = None
    last_error: Optional[str] = None


def parse_health(payload: bytes) -> HealthView:
    """The fields the fleet view shows; ValueError for anything that is not a JSON object."""
    body = untrusted.loads(payload, max_bytes=MAX_PAYLOAD_BYTES, what="health")
    if not isinstance(body, dict):
        raise ValueError("health is not a JSON object")
    ident = body.get("identity")
    ident = ident if isinstance(ident, dict) else {}
    ts = body.get("ts")
    started = ident.get("started_at")
    active = _get(body, "session", "active")
    depth = _int(_get(body, "outbox", "depth"))
    dropped = _int(_get(body, "outbox", "dropped_total"))
    error = body.get("last_error")
    message = error.get("message") if isinstance(error, dict) else error
    return HealthView(
        ts=ts if isinstance(ts, str) and _TIMESTAMP.match(ts) else None,
        version=clean_text(ident.get("version"), 40),
        config_fingerprint=clean_text(ident.get("config_fingerprint"), 64),
        python=clean_text(ident.get("python"), 40),
        os=clean_text(ident.get("os"), 80),
        backend=clean_text(ident.get("backend"), 16),
        started_at=started if isinstance(started, str) and _TIMESTAMP.match(started) else None,
        session_active=active if isinstance(active, bool) else None,
        queue_depth=depth if depth is not None else _int(_get(body, "mqtt", "queue_depth")),
        dropped=dropped if dropped is not None else _int(_get(body, "mqtt", "dropped")),
        last_error=clean_text(message),
    )


@dataclasses.dataclass(frozen=True)
class KioskRow:
    """One kiosk as the fleet view shows it."""

    device: str
    state: str
    """``online``, ``stopped``, ``offline`` (the agent's last will fired), or ``unknown`` (no status)."""
    config_differs: bool
    """Its config fingerprint is not the one most kiosks run."""
    health: HealthView
    expected: bool = True
    """It matches ``--expect`` (always true without it). An unexpected one is shown and marked, and neither
    votes in the config majority nor is judged by it: any account that may write under the prefix can
    publish a kiosk there."""

    def to_json(self) -> Dict[str, object]:
        return {
            "device": self.device,
            "state": self.state,
            "expected": self.expected,
            "config_differs": self.config_differs,
            **dataclasses.asdict(self.health),
        }


@dataclasses.dataclass(frozen=True)
class Ignored:
    """Messages that changed nothing, by reason."""

    too_large: int = 0
    bad_json: int = 0
    bad_status: int = 0
    bad_topic: int = 0
    too_many_kiosks: int = 0

    @property
    def total(self) -> int:
        return sum(dataclasses.astuple(self))


@dataclasses.dataclass(frozen=True)
class FleetReport:
    """The whole fleet at one moment: kiosks sorted by device id."""

    kiosks: Tuple[KioskRow, ...]
    majority_fingerprint: Optional[str]
    """The config fingerprint most kiosks report; None when no single one leads (a tie, or none known)."""
    ignored: Ignored

    def to_json(self) -> Dict[str, object]:
        counts = collections.Counter(k.state for k in self.kiosks)
        return {
            "kiosks": [k.to_json() for k in self.kiosks],
            "counts": {state: counts.get(state, 0) for state in (*STATES, "unknown")},
            "majority_fingerprint": self.majority_fingerprint,
            "config_differs": [k.device for k in self.kiosks if k.config_differs],
            "unexpected": [k.device for k in self.kiosks if not k.expected],
            "ignored": dataclasses.asdict(self.ignored),
        }


@dataclasses.dataclass
class _Kiosk:
    state: Optional[str] = None
    health: Optional[HealthView] = None


class FleetFold:
    """Folds ``status`` and ``health`` messages (retained or live) into per-kiosk state. No I/O."""

    def __init__(self, prefix: str, max_kiosks: int = MAX_KIOSKS, expect: Sequence[str] = ()) -> None:
        self.prefix = prefix
        self.max_kiosks = max_kiosks
        self.expect = tuple(expect)
        """Device ids or shell-style patterns (``kiosk-*``) of the kiosks the admin runs; empty: all."""
        self._kiosks: Dict[str, _Kiosk] = {}
        self._ignored: Dict[str, int] = {f.name: 0 for f in dataclasses.fields(Ignored)}

    @property
    def topics(self) -> List[str]:
        """What to subscribe to."""
        return [f"{self.prefix}/+/status", f"{self.prefix}/+/health"]

    def _device(self, topic: str) -> Optional[Tuple[str, str]]:
        head = f"{self.prefix}/"
        if not topic.startswith(head):
            return None
        device, _, kind = topic[len(head) :].partition("/")
        if kind not in ("status", "health") or not device or len(device) > MAX_DEVICE_CHARS:
            return None
        if clean_text(device) != device:  # control characters: not a device id an agent accepts
            return None
        return device, kind

    def receive(self, topic: str, payload: bytes) -> None:
        """One message; an empty payload clears that part (a retained message was deleted)."""
        parsed = self._device(topic)
        if parsed is None:
            self._ignored["bad_topic"] += 1
            return
        device, kind = parsed
        if len(payload) > MAX_PAYLOAD_BYTES:  # also refused by untrusted.loads: counted apart here
            self._ignored["too_large"] += 1
            return
        kiosk = self._kiosks.get(device)
        if kiosk is None:
            if not payload:
                return
            if len(self._kiosks) >= self.max_kiosks:
                self._ignored["too_many_kiosks"] += 1
                return
            kiosk = _Kiosk()
        if kind == "status":
            word = payload.strip().decode("ascii", errors="replace")
            if payload and word not in STATES:
                self._ignored["bad_status"] += 1
                return
            kiosk.state = word or None
        else:
            try:
                kiosk.health = parse_health(payload) if payload else None
            except ValueError:  # untrusted.UntrustedInputError: not JSON, or nested too deeply
                self._ignored["bad_json"] += 1
                return
        if kiosk.state is None and kiosk.health is None:
            self._kiosks.pop(device, None)
        else:
            self._kiosks[device] = kiosk

    def expected(self, device: str) -> bool:
        """Whether ``device`` matches ``--expect`` (case-sensitive, as MQTT topics are)."""
        return not self.expect or any(fnmatch.fnmatchcase(device, p) for p in self.expect)

    def report(self) -> FleetReport:
        """The fleet now, with kiosks whose config differs from the majority, and unexpected ones, flagged."""
        fingerprints = collections.Counter(
            k.health.config_fingerprint
            for device, k in self._kiosks.items()
            if k.health is not None and k.health.config_fingerprint and self.expected(device)
        ).most_common(2)
        majority = None
        if fingerprints and (len(fingerprints) == 1 or fingerprints[0][1] > fingerprints[1][1]):
            majority = fingerprints[0][0]
        rows = []
        for device in sorted(self._kiosks):
            kiosk = self._kiosks[device]
            health = kiosk.health or HealthView()
            fp = health.config_fingerprint
            expected = self.expected(device)
            rows.append(
                KioskRow(
                    device=device,
                    state=kiosk.state or "unknown",
                    config_differs=expected and majority is not None and fp is not None and fp != majority,
                    health=health,
                    expected=expected,
                )
            )
        return FleetReport(tuple(rows), majority, Ignored(**self._ignored))


# --------------------------------------------------------------------------------------------------
# Rendering


def _ago(iso: Optional[str], now: float) -> str:
    if iso is None:
        return "-"
    stamp = datetime.datetime.strptime(iso.replace("+00:00", "Z")[:19], "%Y-%m-%dT%H:%M:%S")
    seconds = max(0.0, now - stamp.replace(tzinfo=datetime.timezone.utc).timestamp())
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def _opt(value: object) -> str:
    return "-" if value is None else str(value)


def render_table(report: FleetReport, now: float) -> List[str]:
    """One line per kiosk under a header, then a summary line."""
    header = ("DEVICE", "STATE", "VERSION", "CONFIG", "SESSION", "QUEUE", "DROPS", "LAST SEEN", "LAST ERROR")
    rows: List[Tuple[str, ...]] = []
    for k in report.kiosks:
        h = k.health
        session = "-" if h.session_active is None else "active" if h.session_active else "idle"
        config = _opt(h.config_fingerprint) + (" *differs" if k.config_differs else "")
        rows.append(
            (
                k.device + ("" if k.expected else " *unexpected"),
                k.state,
                _opt(h.version),
                config,
                session,
                _opt(h.queue_depth),
                _opt(h.dropped),
                _ago(h.ts, now),
                _opt(h.last_error),
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(r[:-1], widths)), r[-1]]).rstrip()
        for r in [header, *rows]
    ]
    lines.append(summary_line(report))
    return lines


def summary_line(report: FleetReport) -> str:
    counts = collections.Counter(k.state for k in report.kiosks)
    parts = [f"{len(report.kiosks)} kiosk(s): " + ", ".join(f"{counts[s]} {s}" for s in STATES)]
    if counts["unknown"]:
        parts[0] += f", {counts['unknown']} unknown"
    versions = collections.Counter(k.health.version for k in report.kiosks if k.health.version)
    if versions:
        parts.append("versions " + ", ".join(f"{v} x{n}" for v, n in sorted(versions.items())))
    differs = [k.device for k in report.kiosks if k.config_differs]
    if report.majority_fingerprint:
        parts.append(
            f"config {report.majority_fingerprint} on most"
            + (f"; differs on {', '.join(differs)}" if differs else "")
        )
    elif len({k.health.config_fingerprint for k in report.kiosks if k.health.config_fingerprint}) > 1:
        parts.append("config: no majority")
    unexpected = [k.device for k in report.kiosks if not k.expected]
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (not in --expect): {', '.join(unexpected)}")
    if report.ignored.total:
        ignored = ", ".join(f"{n} {name}" for name, n in dataclasses.asdict(report.ignored).items() if n)
        parts.append(f"ignored {ignored}")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# The broker side (paho)


class FleetError(Exception):
    """The broker could not be read: unreachable, TLS, refused, no SUBACK."""


class _Session:
    """A paho client driven from this thread (``loop()``): callbacks run here, so the fold needs no lock."""

    def __init__(self, cfg: MqttConfig, fold: FleetFold, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.fold = fold
        self.clock = clock
        self.v5 = cfg.protocol == "5"
        self.subacked_at: Optional[float] = None
        self.last_message_at = 0.0
        self.refused: Optional[str] = None
        self.connected = False
        client_id = f"hume-edge-fleet-{os.getpid()}-{os.urandom(3).hex()}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            transport="websockets" if cfg.transport == "websockets" else "tcp",
        )
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.password or None)
        if cfg.tls:
            self.client.tls_set(
                ca_certs=cfg.tls_ca or None, certfile=cfg.tls_cert or None, keyfile=cfg.tls_key or None
            )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def connect(self) -> None:
        try:
            if self.v5:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.MaximumPacketSize = MAX_PACKET_BYTES
                self.client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s, properties=props)
            else:
                self.client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)
        except ssl.SSLCertVerificationError as exc:
            raise FleetError(
                f"TLS handshake with {self.where} failed: certificate verify failed ({exc.verify_message}); "
                "mqtt.tls_ca must name the CA that signed the broker's certificate"
            ) from None
        except ssl.SSLError as exc:
            raise FleetError(f"TLS with {self.where} failed: {exc.reason or exc}; check mqtt.tls_*") from None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise FleetError(f"MQTT broker {self.where} unreachable: {reason}") from None
        deadline = self.clock() + CONNECT_TIMEOUT_S
        while not self.connected and self.refused is None:
            if self.clock() > deadline:
                raise FleetError(f"no CONNACK from {self.where} within {CONNECT_TIMEOUT_S:g} s")
            rc = self.pump(0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS and not self.connected and self.refused is None:
                self.refused = (
                    f"{self.where} closed the connection before CONNACK; is it an MQTT port, "
                    "and does mqtt.tls match it?"
                )
        if self.refused is not None:
            raise FleetError(self.refused)

    def pump(self, timeout_s: float) -> int:
        """Run paho's network loop once (callbacks fire here); paho's result code."""
        return int(self.client.loop(timeout=timeout_s))

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.refused = (
                f"MQTT broker {self.where} refused the connection: {reason}; check mqtt.username / "
                "mqtt.password and the broker's access rules (the fleet view needs to read "
                f"{self.fold.prefix}/+/status and /health)"
            )
            return
        self.connected = True
        self.subacked_at = None
        client.subscribe([(topic, 1) for topic in self.fold.topics])

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [str(r) for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            self.refused = (
                f"MQTT broker {self.where} refused the subscription to {self.fold.topics}: "
                f"{', '.join(failed)}; the user needs read access to them"
            )
            return
        self.subacked_at = self.clock()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.last_message_at = self.clock()
        try:
            topic = msg.topic  # paho decodes UTF-8 strictly: a hostile topic raises here
        except UnicodeDecodeError:
            self.fold.receive("", b"")  # counted as a bad topic
            return
        self.fold.receive(topic, bytes(msg.payload))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected = False

    def close(self) -> None:
        if self.connected:
            self.client.disconnect()
            self.pump(0.1)


def collect(
    cfg: MqttConfig,
    wait_s: float = DEFAULT_WAIT_S,
    quiet_s: float = QUIET_S,
    clock: Callable[[], float] = time.monotonic,
    *,
    expect: Sequence[str] = (),
) -> FleetReport:
    """Connect, subscribe, read the retained state of the fleet, disconnect; raise FleetError if not."""
    session = _Session(cfg, FleetFold(cfg.topic_prefix, expect=expect), clock)
    try:
        session.connect()
        _settle(session, wait_s, quiet_s)
        return session.fold.report()
    finally:
        session.close()


def _settle(session: _Session, wait_s: float, quiet_s: float) -> None:
    """Pump until SUBACK + ``quiet_s`` without a message, or ``wait_s`` in all."""
    deadline = session.clock() + wait_s
    while True:
        now = session.clock()
        if session.refused is not None:
            raise FleetError(session.refused)
        if (
            session.subacked_at is not None
            and now - max(session.subacked_at, session.last_message_at) >= quiet_s
        ):
            return
        if now >= deadline:
            if session.subacked_at is None:
                raise FleetError(f"no SUBACK from {session.where} within {wait_s:g} s (--wait-s)")
            return  # still receiving: a very large fleet; show what arrived
        session.pump(min(0.05, max(0.0, deadline - now)))


# --------------------------------------------------------------------------------------------------
# hume-edge fleet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``hume-edge fleet`` options."""
    parser.add_argument(
        "--config",
        "-c",
        default=None,
        metavar="PATH",
        help="read the broker, TLS, credentials and topic prefix from this config's [mqtt] (the agents' "
        "own config works; its password may also come from $CREDENTIALS_DIRECTORY/mqtt_password)",
    )
    parser.add_argument("--host", help="broker host (overrides the config)")
    parser.add_argument("--port", type=int, help="broker port (overrides the config)")
    parser.add_argument("--prefix", help="topic prefix (overrides mqtt.topic_prefix)")
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="PATTERN",
        help="a device id or shell-style pattern of the kiosks you run (repeatable: --expect 'kiosk-*' "
        "--expect lobby); every other kiosk on the broker is marked *unexpected and has no vote in the "
        "config majority (any account that may publish under the prefix can pose as a kiosk)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document (a line per refresh)")
    parser.add_argument("--watch", action="store_true", help="keep the subscription and refresh until Ctrl-C")
    parser.add_argument(
        "--interval-s", type=float, default=2.0, metavar="S", help="refresh period with --watch (default 2)"
    )
    parser.add_argument(
        "--wait-s",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="S",
        help=f"longest time to collect retained messages (default {DEFAULT_WAIT_S:g}); collection ends "
        f"earlier, {QUIET_S:g} s after the broker's SUBACK once nothing more arrives",
    )


def broker_config(args: argparse.Namespace) -> MqttConfig:
    """The [mqtt] section of ``--config`` (or the defaults) with the command line's overrides."""
    cfg: Config = config_mod.load(Path(args.config) if args.config else None)
    mqtt_cfg = cfg.mqtt
    overrides: Dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.prefix:
        overrides["topic_prefix"] = args.prefix
    return dataclasses.replace(mqtt_cfg, **overrides)


def _emit(report: FleetReport, as_json: bool, out: TextIO, clear: bool, separate: bool = False) -> None:
    if as_json:
        out.write(json.dumps(report.to_json(), sort_keys=True) + "\n")
    else:
        if clear:
            out.write("\x1b[H\x1b[2J")
        elif separate:
            out.write("\n")
        out.write("\n".join(render_table(report, time.time())) + "\n")
    out.flush()


def run_from_args(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """``hume-edge fleet``: exit 0 with the report, 1 if the broker could not be read, 78 bad config."""
    stream = sys.stdout if out is None else out
    problems = [
        f"{name} = {value:g}: must be > 0"
        for name, value in (("--wait-s", args.wait_s), ("--interval-s", args.interval_s))
        if not value > 0
    ]
    if args.port is not None and not 1 <= args.port <= 65535:
        problems.append(f"--port = {args.port}: must be between 1 and 65535")
    problems += [
        f"--expect {p!r}: must be a device id or a pattern such as 'kiosk-*', with no '/' or control "
        "characters"
        for p in args.expect
        if not p or "/" in p or clean_text(p) != p
    ]
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return EX_CONFIG
    try:
        cfg = broker_config(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_CONFIG
    if not args.watch:
        try:
            report = collect(cfg, args.wait_s, expect=args.expect)
        except FleetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BROKER
        _emit(report, args.json, stream, clear=False)
        return EXIT_OK
    return watch(cfg, args.wait_s, args.interval_s, args.json, stream, expect=args.expect)


def watch(
    cfg: MqttConfig,
    wait_s: float,
    interval_s: float,
    as_json: bool,
    out: TextIO,
    *,
    expect: Sequence[str] = (),
) -> int:
    """Collect, print, then keep folding live messages and print again every ``interval_s`` until Ctrl-C.

    A lost connection is said once on stderr and retried every interval; the last report stays on screen.
    """
    session = _Session(cfg, FleetFold(cfg.topic_prefix, expect=expect), time.monotonic)
    clear = not as_json and out.isatty()
    try:
        session.connect()
        _settle(session, wait_s, QUIET_S)
        _emit(session.fold.report(), as_json, out, clear)
        said_lost = False
        while True:
            next_at = session.clock() + interval_s
            while session.clock() < next_at:
                if session.connected:
                    session.pump(min(0.1, max(0.0, next_at - session.clock())))
                else:
                    if not said_lost:
                        print(f"fleet: lost the connection to {session.where}; reconnecting", file=sys.stderr)
                        said_lost = True
                    try:
                        session.client.reconnect()
                        session.pump(0.1)
                    except (OSError, ValueError):
                        time.sleep(min(interval_s, max(0.0, next_at - session.clock())))
            if session.connected:
                said_lost = False
            _emit(session.fold.report(), as_json, out, clear, separate=True)
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BROKER
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        session.close()
