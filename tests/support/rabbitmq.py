"""A private RabbitMQ node with its MQTT plugin: the clustered broker of the integration suite.

Debian's ``rabbitmq-server`` (3.10.8, Erlang 25), started the way that was
found to work: the launcher ``/usr/lib/rabbitmq/bin/rabbitmq-server`` run directly (the ``/usr/sbin`` wrapper
``su``s to ``rabbitmq``), everything in a temp dir, its own ``epmd`` child, every port on loopback and free.
Starting takes ~6.5 s from a fresh directory and ~3.5 s on a restart (the directory is kept), so a test
module shares one node (:func:`rabbitmq` fixture, module scope).

Before 3.13 (Debian 12's 3.10) its MQTT plugin speaks 3.1.1 only: an MQTT 5 CONNECT gets no CONNACK. From
3.13 on (Debian 13's 4.x) it speaks MQTT 5 too: :attr:`RabbitMQ.version` (read from the node's own banner)
and :attr:`RabbitMQ.speaks_mqtt5` let a test assert what the installed version does. ``host`` / ``port``
make it usable wherever a mosquitto :class:`~agent.dev.localbroker.LocalBroker` is (the ``subscriber``
fixture).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from tests.support.ports import free_port

LAUNCHER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
MQTT5_SINCE = (3, 13)
"""The first RabbitMQ whose MQTT plugin accepts an MQTT 5 CONNECT (its 3.13 release notes)."""
READY_LINE = "completed with"
"""The launcher's stdout once every plugin (MQTT included) has started: ``Starting broker... completed with
N plugins.``"""


class RabbitMQ:
    """One node; :meth:`start`, :meth:`stop` (graceful, SIGTERM), :meth:`start` again keeps its data."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.workdir = workdir
        self.host = host
        self.port = free_port(host)
        self.amqp_port = free_port(host)
        self.dist_port = free_port(host)
        self.epmd_port = free_port(host)
        self.node = f"hume-test-{self.port}@localhost"
        self.log_lines: List[str] = []
        self._proc: Optional[subprocess.Popen[str]] = None
        self._epmd: Optional[subprocess.Popen[bytes]] = None
        self._ready = threading.Event()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "home").mkdir(exist_ok=True)
        (workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n", encoding="ascii")
        (workdir / "rabbitmq.conf").write_text(
            f"mqtt.listeners.tcp.1 = {host}:{self.port}\n"
            f"listeners.tcp.1 = {host}:{self.amqp_port}\n"
            "mqtt.allow_anonymous = true\n",
            encoding="ascii",
        )

    @property
    def env(self) -> Dict[str, str]:
        d = self.workdir
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(d / "home"),  # the Erlang cookie lives here
            "LANG": "C.UTF-8",
            "RABBITMQ_CONF_ENV_FILE": "/dev/null",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": self.host,
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self) -> None:
        if self._epmd is None:
            self._epmd = subprocess.Popen(
                ["epmd", "-port", str(self.epmd_port), "-address", self.host],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        self._ready.clear()
        self._proc = subprocess.Popen(
            [str(LAUNCHER)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # SIGTERM reaches the launcher; killpg ends beam with it if need be
        )
        threading.Thread(target=self._drain, args=(self._proc,), name="rabbitmq-log", daemon=True).start()
        if not self._ready.wait(START_TIMEOUT_S) or not self._listening():
            tail = "\n".join(self.log_lines[-20:])
            self.stop()
            raise RuntimeError(f"RabbitMQ did not start within {START_TIMEOUT_S:g} s:\n{tail}")

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log_lines.append(line.rstrip())
            if READY_LINE in line:
                self._ready.set()
        self._ready.set()  # it ended: start() finds the port closed and says so

    def _listening(self) -> bool:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=1.0).close()
                return True
            except OSError:
                time.sleep(0.05)  # polling: the port opens when RabbitMQ is ready; there is no event
        return False

    def stop(self) -> None:
        """Graceful stop (MQTT sessions with clean_session=False and retained messages survive it)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)

    def close(self) -> None:
        self.stop()
        if self._epmd is not None:
            self._epmd.terminate()
            self._epmd.wait(STOP_TIMEOUT_S)
            self._epmd = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def version(self) -> Tuple[int, ...]:
        """``(3, 10, 8)``: from the banner the node printed at start (``RabbitMQ 3.10.8``)."""
        for line in self.log_lines:
            match = re.search(r"\bRabbitMQ (\d+)\.(\d+)\.(\d+)", line)
            if match:
                return tuple(int(part) for part in match.groups())
        raise RuntimeError("RabbitMQ printed no version banner:\n" + "\n".join(self.log_lines[-20:]))

    @property
    def speaks_mqtt5(self) -> bool:
        return self.version >= MQTT5_SINCE


def available() -> bool:
    return LAUNCHER.exists() and shutil.which("epmd") is not None


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """One RabbitMQ node per test module (start-up is seconds, not milliseconds)."""
    if not available():
        pytest.fail("rabbitmq-server is not installed: run scripts/setup --dev")
    node = RabbitMQ(tmp_path_factory.mktemp("rabbitmq"))
    node.start()
    try:
        yield node
    finally:
        node.close()
