"""A private mosquitto on a free loopback port, for the demo (and the test suite).

Never the system broker and never ``/etc/mosquitto``: the config is generated into a private directory.
Pitfalls handled (each met on a real mosquitto 2.0): ``listener 0`` is not "any free port", so the port is
picked in Python; as root mosquitto drops to user ``mosquitto`` unless told ``user root``; readiness is the
stderr line containing `` running``; stderr is drained so the broker never blocks on a full pipe.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Optional

from agent.errors import BrokerError

START_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the usual bind-to-0 probe)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def mosquitto_executable() -> Optional[str]:
    """The mosquitto binary, or None. Debian puts it in /usr/sbin, which a normal user's PATH lacks."""
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


class LocalBroker:
    """One mosquitto child process; ``stop()`` then ``start()`` restarts it on the same port."""

    def __init__(
        self,
        workdir: Path,
        port: Optional[int] = None,
        host: str = "127.0.0.1",
        extra_config: str = "",
        whole_config: Optional[str] = None,
    ) -> None:
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host)
        self.extra_config = extra_config
        self.whole_config = whole_config
        """Written instead of the generated config (a shipped conf under test, with its own listeners)."""
        self.log: List[str] = []
        self._proc: Optional[subprocess.Popen[str]] = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.whole_config is not None:
            self.config_path.write_text(self.whole_config, encoding="utf-8")
            return
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",  # carries the " running" line that start() waits for
        ]
        if "allow_anonymous" not in self.extra_config:
            lines.append("allow_anonymous true")
        if self.extra_config:
            lines.append(self.extra_config)
        # As root mosquitto would drop to user "mosquitto" and lose access to a private workdir.
        if os.geteuid() == 0:
            lines.append("user root")
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self) -> None:
        exe = mosquitto_executable()
        if exe is None:
            raise BrokerError(
                "mosquitto is not installed (Debian package 'mosquitto'; scripts/setup installs it)"
            )
        self._write_config()
        proc = subprocess.Popen(
            [exe, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            # Its own session: Ctrl-C in a terminal signals the whole foreground process group, and a
            # broker that died first made the demo end with "status offline" and a lost-connection
            # warning instead of a clean "stopped". Its owner stops it (stop(), the with block).
            start_new_session=True,
        )
        self._proc = proc
        ready = threading.Event()

        def drain() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self.log.append(line.rstrip())
                if " running" in line:
                    ready.set()

        threading.Thread(target=drain, name=f"mosquitto-{self.port}-stderr", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.wait(0.02):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "\n".join(self.log[-5:])
                raise BrokerError(f"mosquitto did not start on {self.host}:{self.port}:\n{tail}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    @property
    def pid(self) -> Optional[int]:
        """The running broker's process id (its sockets are in ``/proc/PID/fd``), or None."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
