"""The agent and every part it talks to as processes of a test's own: mosquitto (durable), the emulator,
``hume-edge run`` under a test-owned ``$NOTIFY_SOCKET`` with libfaketime, RSS sampling and a small disk.

Used by the fault campaign (:mod:`tests.support.rig`) and its tests; everything is real and on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from agent.dev.localbroker import LocalBroker
from agent.ops import status as status_mod
from tests.support.mosquitto import TEST_BROKER_CONFIG
from tests.support.ports import free_port
from tests.support.waits import wait_until

DEVICE = "chaos-kiosk"
PREFIX = f"hume-edge/{DEVICE}/"
TEST_KEY = "test-key"
WATCHDOG_USEC = 2_000_000
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
FAKETIME_LIBS = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/arm-linux-gnueabihf/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)
EXE = Path(sys.executable).with_name("hume-edge")
ROOT = Path(__file__).resolve().parents[2]
AGENT_TREE_ENV = "HUME_EDGE_AGENT_TREE"
"""Set to another checkout's root to run the campaign's agent and emulator from that code (with this venv)
and read that checkout's docs: a regression check against an older commit (``git worktree add DIR
3f521f5``), so the campaign that fails there and passes here is the same harness."""


def agent_tree() -> Path:
    """The checkout whose agent the campaign runs and whose docs it follows (``$HUME_EDGE_AGENT_TREE``)."""
    tree = os.environ.get(AGENT_TREE_ENV)
    return Path(tree).resolve() if tree else ROOT


def hume_edge_command() -> List[str]:
    """``hume-edge`` of :func:`agent_tree`: this venv's console script, or this venv's Python importing that
    checkout's ``agent`` first (its dependencies are this venv's)."""
    tree = agent_tree()
    if tree == ROOT:
        return [str(EXE)]
    code = f"import sys; sys.path.insert(0, {str(tree)!r}); from agent.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code]


async def agent_process(
    config: Path,
    *,
    cwd: Path,
    log: Path,
    env: Optional[Dict[str, str]] = None,
    wrapper: Sequence[str] = (),
    new_session: bool = True,
) -> asyncio.subprocess.Process:
    """``hume-edge run --config CONFIG`` as a child of an async test (the tests' one way to run the agent
    as a process there; :class:`AgentProcess` is the campaign's synchronous one).

    stderr (the agent's log) is appended to ``log``; ``env`` defaults to this process's; ``wrapper`` goes in
    front (``strace ...``); ``new_session`` puts it in its own process group, so ``os.killpg`` ends it and
    whatever it started.
    """
    with open(log, "ab") as log_file:
        return await asyncio.create_subprocess_exec(
            *wrapper, str(EXE), "run", "--config", str(config),
            cwd=cwd, env=dict(os.environ) if env is None else env, stderr=log_file,
            start_new_session=new_session,
        )  # fmt: skip


def faketime_lib() -> Optional[str]:
    """libfaketime's preload library (Debian package ``faketime``), or None when it is not installed."""
    return next((p for p in FAKETIME_LIBS if Path(p).exists()), None)


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


# --------------------------------------------------------------------------------------------------
# The parts


class DurableBroker(LocalBroker):
    """mosquitto that saves its state on every change, so SIGKILL loses nothing it acknowledged."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(
            workdir,
            port=free_port(),
            extra_config="\n".join(
                [
                    *TEST_BROKER_CONFIG,
                    "max_queued_messages 1000000",
                    "persistence true",
                    f"persistence_location {workdir}/",
                    "autosave_interval 1",
                    "autosave_on_changes true",
                ]
            ),
        )

    def kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        self._proc = None


class Child:
    """A child process with its output appended to a log file; restartable."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def _spawn(
        self, args: Sequence[str], env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None
    ) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                list(args), stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd
            )

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> Optional[int]:
        """SIGTERM (after SIGCONT, in case it is stopped); the exit code, or None if it had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.returncode

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class EmulatorProcess(Child):
    """``hume-edge emulator`` on a fixed loopback port (same port after a restart)."""

    def __init__(self, workdir: Path, seed: int) -> None:
        super().__init__("emulator", workdir / "emulator.log")
        self.port = free_port()
        self.seed = seed

    def start(self) -> None:
        self._spawn(
            [*hume_edge_command(), "emulator", "--host", "127.0.0.1", "--port", str(self.port),
             "--api-key", TEST_KEY, "--seed", str(self.seed)]
        )  # fmt: skip
        if not wait_until(lambda: port_open(self.port), START_TIMEOUT_S):
            raise RuntimeError(f"emulator did not listen on {self.port}:\n{self.tail()}")

    def set_faults(self, **faults: Any) -> None:
        """POST /_emulator/faults (the emulator's control endpoint); the defaults when called empty."""
        defaults: Dict[str, Any] = {
            "close_after": None, "close_code": 1000, "delay_ms": 0.0, "error_code": None,
            "warning_code": None, "refuse_for_s": 0.0, "refuse_status": 503, "silent": False,
        }  # fmt: skip
        defaults.update(faults)
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/_emulator/faults",
            data=json.dumps(defaults).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()


class NotifyRecorder:
    """The datagram socket systemd would own; records every line with its monotonic arrival time."""

    def __init__(self) -> None:
        self.name = f"@hume-edge-chaos-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.settimeout(0.2)
        self.lines: List[Tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            self.lines.extend((now, line) for line in data.decode(errors="replace").splitlines())

    def pings(self, since: float, until: float = float("inf")) -> List[float]:
        return [t for t, line in list(self.lines) if line == "WATCHDOG=1" and since <= t <= until]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class AgentProcess(Child):
    """``hume-edge run --config`` under the test's notify socket, watchdog and (optionally) libfaketime."""

    def __init__(
        self, workdir: Path, config: Path, notify: NotifyRecorder, clock_file: Optional[Path]
    ) -> None:
        super().__init__("agent", workdir / "agent.log")
        self.workdir = workdir
        self.config = config
        self.runtime = workdir / "run"
        self.env = {k: v for k, v in os.environ.items() if k not in ("HUME_API_KEY", "JOURNAL_STREAM")}
        self.env.update(
            NOTIFY_SOCKET=notify.name, WATCHDOG_USEC=str(WATCHDOG_USEC), RUNTIME_DIRECTORY=str(self.runtime)
        )
        lib = faketime_lib()
        if clock_file is not None and lib is not None:
            # Only the wall clock is faked; monotonic time (timers, asyncio) stays real.
            self.env.update(
                LD_PRELOAD=lib,
                FAKETIME_TIMESTAMP_FILE=str(clock_file),
                FAKETIME_NO_CACHE="1",
                FAKETIME_DONT_FAKE_MONOTONIC="1",
            )
        self.lives = 0
        self.unexpected_exits: List[int] = []
        self._write_failures: Dict[int, int] = {}
        self.last_snapshot: Dict[str, Any] = {}
        """The last status snapshot read from a running agent (its counters as it stopped, at the end)."""

    def start(self) -> None:
        self._spawn(
            [*hume_edge_command(), "run", "--config", str(self.config)], env=self.env, cwd=self.workdir
        )
        self.lives += 1

    @property
    def status_path(self) -> Path:
        return self.runtime / "status.json"

    def snapshot(self) -> Optional[Dict[str, Any]]:
        """The agent's status file if it was written by the running process."""
        snap = status_mod.read(self.status_path)
        if snap is None or snap.get("pid") != self.pid:
            return None
        self.last_snapshot = snap
        self._write_failures[int(snap["pid"])] = int(snap.get("mqtt", {}).get("write_failures", 0))
        return snap

    @property
    def write_failures(self) -> int:
        """Messages the agent could not store (it counts them per life; summed over its lives)."""
        return sum(self._write_failures.values())

    def check_alive(self) -> None:
        """Record an exit we did not cause, and restart (systemd's Restart=always)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.unexpected_exits.append(self.proc.returncode)
            self.start()


def rss_kb(pid: int) -> Optional[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class RssSampler:
    """Samples the agent's VmRSS twice a second, whichever process is the agent at the time."""

    def __init__(self, pid: Callable[[], Optional[int]]) -> None:
        self._pid = pid
        self.samples: List[Tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            pid = self._pid()
            kb = rss_kb(pid) if pid else None
            if kb:
                self.samples.append((time.monotonic(), kb))

    @property
    def max_mb(self) -> float:
        return max((kb for _, kb in self.samples), default=0) / 1024

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


class SmallDisk:
    """A tmpfs for the outbox (root only): ``fill()`` takes every free byte, ``free()`` gives it back."""

    def __init__(self, path: Path, size_mb: int = 16) -> None:
        self.path = path
        self.filler = path / "filler"
        path.mkdir(parents=True, exist_ok=True)
        self.mounted = False
        self.reason = ""
        if os.geteuid() != 0:
            self.reason = "not root: cannot mount a small tmpfs to fill"
            return
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        self.mounted = done.returncode == 0
        self.reason = "" if self.mounted else f"mount -t tmpfs failed: {done.stderr.strip()}"

    def fill(self) -> int:
        """Write zeros until ENOSPC; returns the bytes taken."""
        taken = 0
        with open(self.filler, "ab", buffering=0) as fh:
            for block in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
                chunk = b"\0" * block
                with contextlib.suppress(OSError):
                    while True:
                        taken += fh.write(chunk)
        return taken

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def close(self) -> None:
        self.free()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30, check=False)
            self.mounted = False
