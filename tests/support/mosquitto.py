"""A private mosquitto per test, and a subscriber that collects what reaches it.

Fixtures:

* ``mosquitto``: a started anonymous broker on a free loopback port (``.host``, ``.port``, ``.stop()``,
  ``.start()`` again on the same port).
* ``mosquitto_factory(**options)``: more brokers, e.g. ``password=("user", "pw")``, ``tls=certs`` (from
  :func:`make_certs`), ``persistence=True`` (sessions and queued messages survive ``stop()``/``start()``).
* ``subscriber(broker, topics, **options)``: a :class:`Subscriber` stopped at teardown.

Helpers for tests of the agent's publisher: :func:`mqtt_config` (fast reconnects, pointed at a broker) and
:func:`running` (runs ``Publisher.run()`` as a task and cancels it, bounded, on exit).

The broker itself is :class:`agent.dev.localbroker.LocalBroker` (the demo uses it too), which handles the
pitfalls of a private mosquitto (port picked in Python, ``user root``, readiness on `` running``, stderr
drained).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import MqttConfig
from agent.dev.localbroker import LocalBroker
from tests.support.ports import free_port
from tests.support.waits import eventually


@dataclasses.dataclass(frozen=True)
class Certs:
    """PEM files from :func:`make_certs`: a CA, a server cert for 127.0.0.1 it signed, another CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(directory: Path) -> Certs:
    """Self-signed test PKI with the ``openssl`` CLI; the server cert names IP 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=test {name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory,
        )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr", cwd=directory,
    )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n", encoding="ascii")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=directory,
    )  # fmt: skip
    return Certs(
        directory / "ca.pem", directory / "server.pem", directory / "server.key", directory / "other-ca.pem"
    )


def make_client_cert(directory: Path, name: str, *, ca: str = "ca") -> Tuple[Path, Path]:
    """A client certificate ``CN=name`` signed by :func:`make_certs`' ``ca`` (or ``other-ca``)."""
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
        "-days", "2", "-out", f"{name}.pem", cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.pem", directory / f"{name}.key"


TEST_BROKER_CONFIG = ("set_tcp_nodelay true",)
"""mosquitto.conf lines of every test broker. Nagle on by default (mosquitto's ``set_tcp_nodelay false``)
held each reply the broker sent behind the client's delayed ACK of its previous packet (~40 ms): a
command's round trip through the broker took 44 ms (median) instead of 3 ms, and
tests/faults/test_bad_commands.py's 150 commands 7.3-7.7 s instead of 1.1-2.3 s. What the agent sends is the
same either way (its own socket has TCP_NODELAY); a kiosk's broker keeps whatever it is configured with,
and the benchmarks' brokers keep mosquitto's default (their latencies are a default broker's)."""


class Broker(LocalBroker):
    """A LocalBroker with the test variants: password file, TLS listener, persistence."""

    def __init__(
        self,
        workdir: Path,
        *,
        password: Optional[Tuple[str, str]] = None,
        tls: Optional[Certs] = None,
        persistence: bool = False,
        require_certificate: bool = False,
        extra: Sequence[str] = (),
    ) -> None:
        """``require_certificate``: mutual TLS (clients need a certificate signed by ``tls.ca``);
        ``extra``: more mosquitto.conf lines (``max_inflight_messages 10``, ``max_packet_size 2000``)."""
        lines: List[str] = [*TEST_BROKER_CONFIG, "max_queued_messages 100000", *extra]
        if password is not None:
            workdir.mkdir(parents=True, exist_ok=True)
            pwfile = workdir / "passwd"
            subprocess.run(
                ["mosquitto_passwd", "-c", "-b", str(pwfile), *password],
                check=True,
                capture_output=True,
                timeout=30,
            )
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}"]
            if require_certificate:
                lines += ["require_certificate true"]
        if persistence:
            lines += ["persistence true", f"persistence_location {workdir}/"]
        super().__init__(workdir, port=free_port(), extra_config="\n".join(lines))


@dataclasses.dataclass(frozen=True)
class Received:
    """One message as the subscriber saw it."""

    topic: str
    payload: bytes
    retain: bool
    at: float = 0.0
    """``time.monotonic()`` when the subscriber's paho thread got it (rates measured at the broker side)."""

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A real paho client (its own thread, paho's auto-reconnect) collecting every message it receives.

    ``persistent=True`` keeps a broker-side session (clean session off, QoS 1) so messages published while
    this client is reconnecting are queued for it rather than missed.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topics: Sequence[str] = ("#",),
        *,
        client_id: Optional[str] = None,
        persistent: bool = False,
        username: Optional[str] = None,
        password: Optional[str] = None,
    ) -> None:
        self.topics = list(topics)
        self.messages: List[Received] = []
        self._cond = threading.Condition()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        """Set on the SUBACK: from then on nothing published to these topics is missed."""
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-sub-{id(self):x}",
            protocol=mqtt.MQTTv311,
            clean_session=not persistent,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]  # stub says int; it sleeps floats
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(t, 1) for t in self.topics])
            self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic()))
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)

    def on(self, suffix: str) -> List[Received]:
        """Messages whose topic ends with ``suffix``, in arrival order."""
        with self._cond:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(self, predicate: Callable[[List[Received]], bool], timeout: float) -> bool:
        """Block until ``predicate(messages)`` holds (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    async def until(self, predicate: Callable[[List[Received]], bool], timeout: float) -> bool:
        """:meth:`wait_for` for async tests: polls without blocking the event loop."""

        def holds() -> bool:
            with self._cond:
                return predicate(self.messages)

        return await eventually(holds, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_config(host: str, port: int, **overrides: Any) -> MqttConfig:
    """A publisher config for tests: this broker, quick reconnects, a long health period."""
    options: Dict[str, Any] = {
        "host": host,
        "port": port,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "health_interval_s": 60.0,
        "max_publish_rate_per_s": 1_000_000.0,  # tests move thousands of messages; the cap has its own tests
    }
    options.update(overrides)
    return MqttConfig(**options)


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    brokers: List[Broker] = []

    def make(**options: Any) -> Broker:
        broker = Broker(tmp_path / f"mosquitto-{len(brokers)}", **options)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Broker]) -> Broker:
    return mosquitto_factory()


@pytest.fixture
def subscriber() -> Iterator[Callable[..., Subscriber]]:
    subs: List[Subscriber] = []

    def make(broker: LocalBroker, topics: Sequence[str] = ("#",), **options: Any) -> Subscriber:
        sub = Subscriber(broker.host, broker.port, topics, **options)
        subs.append(sub)
        if not sub.connected.wait(10) or not sub.subscribed.wait(10):
            raise TimeoutError(f"test subscriber could not subscribe at {broker.host}:{broker.port}")
        return sub

    yield make
    for sub in subs:
        sub.close()
