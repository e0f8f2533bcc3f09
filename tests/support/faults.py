"""The fault campaign's rig: the whole agent as a process, every part it talks to, and the accounting.

Shared by ``tests/faults/`` (a short campaign in CI) and ``scripts/chaos`` (minutes of it). Everything is
real and on loopback: mosquitto (persistent, saved on every change, so a SIGKILL of the broker does not
lose what it acknowledged), the emulator as a ``hume-edge emulator`` process, two TCP proxies (agent ↔
emulator WebSocket, agent ↔ mosquitto), and ``hume-edge run`` under a test-owned ``$NOTIFY_SOCKET`` with
``WATCHDOG_USEC``, with libfaketime preloaded so its wall clock can be stepped while its monotonic clock
is not. The outbox lives on a small tmpfs (as root) so the disk can be filled under it.

Accounting, so that "lost" is real: the outbox stamps ``seq`` from a counter in its database, contiguous
per database, so ``produced`` = the counter at the end minus the counter before the agent first started
(read from the database itself). ``delivered`` = distinct seqs the persistent subscriber received;
``dropped`` = what the outbox's documented bounds dropped (counted in its database); ``queued`` = rows
still in the outbox at the end. ``lost = produced - delivered - dropped - queued`` must be 0. Messages the
agent could not store at all (disk full) never got a seq: they are the agent's own ``write_failures``
counter, summed over its lives.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from agent import status as status_mod
from agent.config import OutboxConfig
from agent.localbroker import LocalBroker, free_port
from agent.mqtt.outbox import Outbox
from tests.support.mosquitto import Received, Subscriber
from tests.support.proxy import Proxy

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


def faketime_lib() -> Optional[str]:
    """libfaketime's preload library (Debian package ``faketime``), or None when it is not installed."""
    return next((p for p in FAKETIME_LIBS if Path(p).exists()), None)


def wait_until(condition: Callable[[], bool], timeout: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True


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
            extra_config="\n".join(
                [
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
            [str(EXE), "emulator", "--host", "127.0.0.1", "--port", str(self.port), "--api-key", TEST_KEY,
             "--seed", str(self.seed)]
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

    def start(self) -> None:
        self._spawn([str(EXE), "run", "--config", str(self.config)], env=self.env, cwd=self.workdir)
        self.lives += 1

    @property
    def status_path(self) -> Path:
        return self.runtime / "status.json"

    def snapshot(self) -> Optional[Dict[str, Any]]:
        """The agent's status file if it was written by the running process."""
        snap = status_mod.read(self.status_path)
        if snap is None or snap.get("pid") != self.pid:
            return None
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


# --------------------------------------------------------------------------------------------------
# What reached the broker


@dataclasses.dataclass
class Accounting:
    """The figures the campaign reports; ``lost`` must be 0."""

    produced: int
    delivered: int
    dropped: Dict[str, int]
    queued: int
    duplicates: int
    out_of_order: int
    write_failures: int

    @property
    def lost(self) -> int:
        return self.produced - self.delivered - sum(self.dropped.values()) - self.queued


def seqs_of(messages: Sequence[Received]) -> List[Tuple[int, bool, bool]]:
    """(seq, retained replay, ``"replay": true``) of every outbox message under the device's prefix, in
    arrival order. The order promise holds per class: messages the agent marked ``replay`` (its backlog
    after a reconnect) are in order among themselves, and so are the others (``mqtt.replay = live_first``
    sends live ones before the backlog)."""
    out = []
    for m in messages:
        if not m.topic.startswith(PREFIX) or "/cmd/" in m.topic:
            continue
        try:
            body = json.loads(m.payload)
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("seq"), int):
            out.append((body["seq"], m.retain, body.get("replay") is True))
    return out


def outbox_counter(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        return int(db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])


def outbox_remains(path: Path) -> Tuple[int, Dict[str, int]]:
    """Rows still queued and the drops counted per reason."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        queued = int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
        rows = db.execute("SELECT key, value FROM meta WHERE key LIKE 'dropped_%'").fetchall()
    return queued, {k[len("dropped_") :]: int(v) for k, v in rows}


def account(
    first: int,
    last: int,
    received: Sequence[Tuple[int, bool, bool]],
    *,
    queued: int,
    dropped: Dict[str, int],
    write_failures: int,
) -> Accounting:
    """``first``..``last`` (exclusive) were stamped; see the module docstring for the formula."""
    distinct = {s for s, _, _ in received if first <= s < last}
    arrivals = [(s, replay) for s, retained, replay in received if not retained and first <= s < last]
    live = [s for s, _ in arrivals]
    seen: Set[int] = set()
    highest = {False: first - 1, True: first - 1}
    out_of_order = 0
    for s, replay in arrivals:
        if s in seen:
            continue
        seen.add(s)
        if s < highest[replay]:
            out_of_order += 1
        highest[replay] = max(highest[replay], s)
    return Accounting(
        produced=last - first,
        delivered=len(distinct),
        dropped=dropped,
        queued=queued,
        duplicates=len(live) - len(set(live)),
        out_of_order=out_of_order,
        write_failures=write_failures,
    )


# --------------------------------------------------------------------------------------------------
# Bad inputs (seeded, for the campaign; the tests draw their own with hypothesis)


def random_command(rng: random.Random) -> Tuple[str, bytes]:
    """A ``cmd/<name>`` and payload: valid, malformed, oversized, binary, or on an unknown topic."""
    name = rng.choice(["session", "session", "discovery", "text", "reboot", "session/extra", "ü", "x" * 200])
    payload = rng.choice(
        [
            b"start", b"end", b"END ", b'{"action": "start"}', b'{"action": 5}', b"[]", b'"end"', b"{",
            b"\xff\xfe\x00", b"x" * 1025, b"", json.dumps({"action": "end", "n": list(range(20))}).encode(),
            bytes(rng.getrandbits(8) for _ in range(rng.randrange(64))),
        ]
    )  # fmt: skip
    return name, payload


# --------------------------------------------------------------------------------------------------
# The rig


def agent_config(rig: Rig) -> str:
    outbox = rig.disk.path / "outbox.sqlite"
    return (
        "\n".join(
            [
                f'device_id = "{DEVICE}"',
                "[hume]",
                f'url = "ws://127.0.0.1:{rig.hume_proxy.port}/v0/stream/models"',
                f'api_key = "{TEST_KEY}"',
                "reply_timeout_s = 3.0",
                "backoff_initial_s = 0.1",
                "backoff_max_s = 1.0",
                "fatal_retry_s = 1.0",  # an injected E0300 (quota) would otherwise stop summaries for 5 min
                "[session]",
                'mode = "always"',
                "[summary]",
                "window_s = 0.5",
                "[mqtt]",
                'host = "127.0.0.1"',
                f"port = {rig.mqtt_proxy.port}",
                "keepalive_s = 5",
                "health_interval_s = 2.0",
                "reconnect_min_s = 0.1",
                "reconnect_max_s = 1.0",
                "[outbox]",
                f'path = "{outbox}"',
                # The fuzz checks that every command gets one clear reply; the rate limits that would
                # turn a fuzz into unanswered refusals have their own test (test_command_guard).
                "[commands]",
                "session_starts_per_hour = 3600",
                "text_chars_per_minute = 1000000",
                "discovery_per_minute = 600",
                "replies_per_s = 1000.0",
            ]
        )
        + "\n"
    )


class Rig:
    """Every part of the campaign, started; :meth:`close` stops them all (bounded)."""

    def __init__(self, workdir: Path, seed: int) -> None:
        self.workdir = workdir
        self.seed = seed
        workdir.mkdir(parents=True, exist_ok=True)
        self._closers: List[Callable[[], Any]] = []
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        self.disk = SmallDisk(self.workdir / "disk")
        self._closers.append(self.disk.close)
        self.broker = DurableBroker(self.workdir / "mosquitto")
        self.broker.start()
        self._closers.append(self.broker.stop)
        self.emulator = EmulatorProcess(self.workdir, self.seed)
        self.emulator.start()
        self._closers.append(self.emulator.terminate)
        self.mqtt_proxy = Proxy("127.0.0.1", self.broker.port).start()
        self.hume_proxy = Proxy("127.0.0.1", self.emulator.port).start()
        self._closers += [self.mqtt_proxy.stop, self.hume_proxy.stop]
        self.subscriber = Subscriber(
            "127.0.0.1", self.broker.port, [PREFIX + "#"], client_id=f"chaos-sub-{self.seed}", persistent=True
        )
        self._closers.append(self.subscriber.close)
        if not self.subscriber.connected.wait(10):
            raise RuntimeError("the campaign's subscriber could not connect")
        self.notify = NotifyRecorder()
        self._closers.append(self.notify.close)
        self.clock_file = self.workdir / "faketime"
        self.clock_offset_s = 0
        self.set_clock_offset(0)
        config = self.workdir / "config.toml"
        config.write_text(agent_config(self), encoding="utf-8")
        self.outbox_path = self.disk.path / "outbox.sqlite"
        # Create the outbox ourselves, so the first seq the agent will stamp is known.
        Outbox(self.outbox_path, OutboxConfig()).close()
        self.first_seq = outbox_counter(self.outbox_path)
        self.agent = AgentProcess(self.workdir, config, self.notify, self.clock_file)
        self.agent.start()
        self._closers.append(self.agent.terminate)
        self.rss = RssSampler(lambda: self.agent.pid)
        self._closers.append(self.rss.close)

    @property
    def faketime(self) -> bool:
        return "LD_PRELOAD" in self.agent.env

    def set_clock_offset(self, seconds: int) -> None:
        """Step the agent's wall clock to real time + ``seconds`` (libfaketime re-reads the file)."""
        self.clock_offset_s = seconds
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(f"{seconds:+d}\n", encoding="ascii")
        tmp.replace(self.clock_file)

    def received(self) -> List[Tuple[int, bool, bool]]:
        with self.subscriber._cond:
            return seqs_of(list(self.subscriber.messages))

    def summaries_after(self, count: int) -> int:
        with self.subscriber._cond:
            return sum(1 for m in self.subscriber.messages[count:] if m.topic.startswith(PREFIX + "summary/"))

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> bool:
        return wait_until(lambda: self.agent.snapshot() is not None, timeout, 0.1)

    def wait_online(self, timeout: float = START_TIMEOUT_S) -> bool:
        """Wait until the agent announced itself on the broker (so it is subscribed to ``cmd/#``)."""

        def online() -> bool:
            with self.subscriber._cond:
                return any(
                    m.topic == PREFIX + "status" and m.payload == b"online" for m in self.subscriber.messages
                )

        return wait_until(online, timeout, 0.05)

    def settle(self, timeout: float) -> bool:
        """Wait until every seq stamped so far reached the subscriber (or the timeout passes)."""

        def caught_up() -> bool:
            last = outbox_counter(self.outbox_path)
            got = {s for s, _, _ in self.received()}
            return all(s in got for s in range(self.first_seq, last))

        return wait_until(caught_up, timeout, 0.25)

    def finish(self, settle_s: float = 60.0) -> Accounting:
        """Heal everything, let the outbox drain, stop the agent cleanly, and do the accounting."""
        self.mqtt_proxy.resume()
        self.hume_proxy.resume()
        self.disk.free()
        self.agent.check_alive()
        self.settle(settle_s)
        self.agent.snapshot()
        code = self.agent.terminate()
        if code not in (0, None):
            self.agent.unexpected_exits.append(code)
        last = outbox_counter(self.outbox_path)
        # The clean stop ends the open session: let its last messages arrive.
        wait_until(
            lambda: all(s in {x for x, _, _ in self.received()} for s in range(self.first_seq, last)), 15, 0.2
        )
        queued, dropped = outbox_remains(self.outbox_path)
        return account(
            self.first_seq,
            last,
            self.received(),
            queued=queued,
            dropped=dropped,
            write_failures=self.agent.write_failures,
        )

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        self._closers.clear()


# --------------------------------------------------------------------------------------------------
# The campaign


FAULT_KINDS = (
    "hume_cut", "hume_blackhole", "hume_delay", "hume_throttle", "hume_half_open",
    "mqtt_cut", "mqtt_blackhole", "mqtt_delay", "mqtt_throttle", "mqtt_half_open",
    "kill_agent", "kill_broker", "kill_emulator", "stall_agent", "disk_full", "clock_back", "clock_forward",
    "hume_bad_replies",
)  # fmt: skip


@dataclasses.dataclass
class Report:
    seed: int
    faults: Dict[str, int] = dataclasses.field(default_factory=collections.Counter)
    skipped: Dict[str, str] = dataclasses.field(default_factory=dict)
    inputs: Dict[str, int] = dataclasses.field(default_factory=collections.Counter)
    watchdog: List[Tuple[float, float, bool]] = dataclasses.field(default_factory=list)
    """Per stall: longest gap between pings (s), seconds until pings resumed, no ping during the stall."""
    clock: List[Tuple[int, Optional[float]]] = dataclasses.field(default_factory=list)
    """Per clock step: the step (s) and seconds until the next summary arrived (None: none came)."""
    problems: List[str] = dataclasses.field(default_factory=list)
    accounting: Optional[Accounting] = None
    max_rss_mb: float = 0.0
    rss_first_mb: float = 0.0
    rss_last_mb: float = 0.0
    agent_lives: int = 0
    unexpected_exits: List[int] = dataclasses.field(default_factory=list)

    def lines(self) -> List[str]:
        acc = self.accounting
        out = [f"seed: {self.seed}", "faults injected by kind:"]
        out += [f"  {k:<18} {v}" for k, v in sorted(self.faults.items())]
        out += [f"  {k:<18} skipped: {why}" for k, why in sorted(self.skipped.items())]
        out.append("inputs tried: " + ", ".join(f"{k} {v}" for k, v in sorted(self.inputs.items())))
        if acc is not None:
            out += [
                f"summaries produced (seq stamped): {acc.produced}",
                f"delivered: {acc.delivered}",
                f"lost: {acc.lost}",
                f"duplicates: {acc.duplicates}",
                f"out of order (first arrival): {acc.out_of_order}",
                f"dropped by the outbox bounds: {sum(acc.dropped.values())} {dict(acc.dropped)}",
                f"still queued at the end: {acc.queued}",
                f"not stored (disk full, the agent's write_failures): {acc.write_failures}",
            ]
        for gap, resumed, quiet in self.watchdog:
            out.append(
                f"watchdog stall: longest ping gap {gap:.1f} s (WATCHDOG_USEC {WATCHDOG_USEC / 1e6:g} s: "
                f"{'systemd would restart' if gap * 1e6 > WATCHDOG_USEC else 'NOT tripped'}), "
                f"{'no ping while stopped' if quiet else 'PINGED WHILE STOPPED'}, "
                f"resumed after {resumed:.1f} s"
            )
        for step, after in self.clock:
            shown = f"{after:.1f} s" if after is not None else "NONE"
            out.append(f"clock step {step:+d} s: next summary after {shown}")
        out.append(
            f"agent lives: {self.agent_lives}, unexpected exits: {self.unexpected_exits or 'none'}; "
            f"RSS first {self.rss_first_mb:.1f} MB, last {self.rss_last_mb:.1f} MB, "
            f"max {self.max_rss_mb:.1f} MB"
        )
        out += [f"PROBLEM: {p}" for p in self.problems]
        return out


class Campaign:
    """Injects faults in a seeded random order, one at a time, each healed before the next."""

    def __init__(
        self,
        rig: Rig,
        *,
        hold: Tuple[float, float] = (1.0, 4.0),
        gap: Tuple[float, float] = (0.5, 3.0),
        log: Callable[[str], None] = print,
    ) -> None:
        self.rig = rig
        self.rng = random.Random(rig.seed)
        self.hold = hold
        self.gap = gap
        self.log = log
        self.report = Report(rig.seed)
        self.t0 = time.monotonic()
        self._commands_sent = 0
        if not rig.disk.mounted:
            self.report.skipped["disk_full"] = rig.disk.reason
        if not rig.faketime:
            for kind in ("clock_back", "clock_forward"):
                self.report.skipped[kind] = "libfaketime is not installed (Debian package faketime)"

    def kinds(self) -> List[str]:
        return [k for k in FAULT_KINDS if k not in self.report.skipped]

    def _say(self, text: str) -> None:
        self.log(f"[{time.monotonic() - self.t0:7.1f} s] {text}")

    def _hold(self) -> float:
        return self.rng.uniform(*self.hold)

    def run_plan(self, plan: Sequence[str]) -> None:
        for kind in plan:
            self.inject(kind)
            self.poke_commands(self.rng.randrange(1, 4))
            time.sleep(self.rng.uniform(*self.gap))
            self.rig.agent.check_alive()

    def run_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        kinds = self.kinds()
        while time.monotonic() < deadline:
            self.run_plan([self.rng.choice(kinds)])

    def poke_commands(self, n: int) -> None:
        """Publish ``n`` random commands (valid and not) at the agent, the way an operator might."""
        for _ in range(n):
            name, payload = random_command(self.rng)
            self.rig.subscriber.publish(f"{PREFIX}cmd/{name}", payload)
            self.report.inputs["mqtt commands"] += 1

    def inject(self, kind: str) -> None:
        rig = self.rig
        self.report.faults[kind] += 1
        hold = self._hold()
        link, _, mode = kind.partition("_")
        if link in ("hume", "mqtt") and mode != "bad_replies":
            proxy = rig.hume_proxy if link == "hume" else rig.mqtt_proxy
            self._say(f"{kind} for {hold:.1f} s")
            if mode == "cut":
                proxy.cut()
            elif mode == "blackhole":
                proxy.blackhole()
            elif mode == "delay":
                proxy.delay(self.rng.uniform(0.1, 1.0))
            elif mode == "throttle":
                proxy.throttle(self.rng.choice([300, 1000, 5000]))
            elif mode == "half_open":
                proxy.half_open()
            time.sleep(hold)
            if mode == "blackhole":
                proxy.cut()  # a frozen stream lost bytes: the test cannot resume it
            proxy.resume()
        elif kind == "hume_bad_replies":
            fault = self.rng.choice(
                [{"error_code": "E0101"}, {"warning_code": "W0103"}, {"silent": True}, {"close_after": 1},
                 {"delay_ms": 2500.0}, {"refuse_for_s": 2.0}, {"error_code": "E0300"}]
            )  # fmt: skip
            self._say(f"{kind} {fault} for {hold:.1f} s")
            with contextlib.suppress(OSError):
                rig.emulator.set_faults(**fault)
                self.report.inputs["bad server replies"] += 1
            time.sleep(hold)
            with contextlib.suppress(OSError):
                rig.emulator.set_faults()
        elif kind == "kill_agent":
            self._say(f"SIGKILL agent, restart after {hold / 2:.1f} s")
            rig.agent.snapshot()
            rig.agent.kill()
            time.sleep(hold / 2)
            rig.agent.start()
        elif kind == "kill_broker":
            self._say(f"SIGKILL mosquitto, restart after {hold / 2:.1f} s")
            rig.broker.kill()
            time.sleep(hold / 2)
            rig.broker.start()
        elif kind == "kill_emulator":
            self._say(f"SIGKILL emulator, restart after {hold / 2:.1f} s")
            rig.emulator.kill()
            time.sleep(hold / 2)
            rig.emulator.start()
        elif kind == "stall_agent":
            self.stall(max(hold, 1.5 * WATCHDOG_USEC / 1e6))
        elif kind == "disk_full":
            self.disk_full(hold)
        elif kind in ("clock_back", "clock_forward"):
            self.clock_jump(kind == "clock_back")

    def stall(self, seconds: float) -> None:
        """SIGSTOP the agent: its WATCHDOG=1 pings must stop (systemd would restart it) and come back."""
        rig = self.rig
        rig.agent.check_alive()
        if not rig.wait_ready(START_TIMEOUT_S):
            self.report.problems.append("stall: the agent was not running before the stall")
            return
        before = rig.notify.pings(time.monotonic() - 3)
        self._say(f"SIGSTOP agent for {seconds:.1f} s")
        stopped_at = time.monotonic()
        rig.agent.signal(signal.SIGSTOP)
        time.sleep(seconds)
        rig.agent.signal(signal.SIGCONT)
        cont_at = time.monotonic()
        resumed = wait_until(lambda: bool(rig.notify.pings(cont_at)), 10)
        during = rig.notify.pings(stopped_at + 0.2, cont_at)
        after = rig.notify.pings(cont_at)
        last_before = max([t for t in before if t <= stopped_at + 0.2], default=stopped_at)
        gap = (after[0] if after else time.monotonic()) - last_before
        self.report.watchdog.append((gap, (after[0] - cont_at) if after else float("inf"), not during))
        if during or not resumed or gap * 1e6 <= WATCHDOG_USEC:
            self.report.problems.append(
                f"watchdog: pings during stall {len(during)}, resumed {resumed}, gap {gap:.1f}"
            )

    def disk_full(self, hold: float) -> None:
        """Fill the outbox's filesystem; hold until the agent reports a refused write (at most ~10 s)."""
        rig = self.rig
        before = rig.agent.write_failures
        taken = rig.disk.fill()
        self._say(f"disk full ({taken // 1024} KiB taken) for at least {hold:.1f} s")
        start = time.monotonic()

        def refused() -> bool:
            snap = rig.agent.snapshot()
            return snap is not None and rig.agent.write_failures > before

        saw = wait_until(refused, max(hold, 10.0), 0.2) or False
        time.sleep(max(0.0, hold - (time.monotonic() - start)))
        rig.disk.free()
        self._say(f"disk freed ({'write failures reported' if saw else 'no write failed meanwhile'})")

    def clock_jump(self, back: bool) -> None:
        """Step the agent's wall clock back or forward (minutes to hours); summaries must keep coming."""
        rig = self.rig
        step = self.rng.choice([600, 3600, 7200]) * (-1 if back else 1)
        if abs(rig.clock_offset_s + step) > 3 * 3600:
            step = -rig.clock_offset_s
        count = len(rig.subscriber.messages)
        self._say(f"wall clock step {step:+d} s (offset now {rig.clock_offset_s + step:+d} s)")
        start = time.monotonic()
        rig.set_clock_offset(rig.clock_offset_s + step)
        came = wait_until(lambda: rig.summaries_after(count) > 0, 15, 0.1)
        self.report.clock.append((step, time.monotonic() - start if came else None))

    def finish(self) -> Report:
        rig = self.rig
        self.report.accounting = rig.finish()
        samples = rig.rss.samples
        self.report.max_rss_mb = rig.rss.max_mb
        if samples:
            self.report.rss_first_mb = samples[0][1] / 1024
            self.report.rss_last_mb = samples[-1][1] / 1024
        self.report.agent_lives = rig.agent.lives
        self.report.unexpected_exits = list(rig.agent.unexpected_exits)
        if self.report.accounting.lost:
            self.report.problems.append(f"{self.report.accounting.lost} message(s) lost")
        if self.report.accounting.out_of_order:
            self.report.problems.append(f"{self.report.accounting.out_of_order} message(s) out of order")
        if self.report.unexpected_exits:
            self.report.problems.append(f"the agent exited by itself: {self.report.unexpected_exits}")
        for step, after in self.report.clock:
            if after is None:
                self.report.problems.append(f"no summary within 15 s of a {step:+d} s clock step")
        return self.report


@contextlib.contextmanager
def rig_for(workdir: Path, seed: int) -> Iterator[Rig]:
    rig = Rig(workdir, seed)
    try:
        if not rig.wait_ready():
            raise RuntimeError("the agent did not start:\n" + rig.agent.tail())
        yield rig
    finally:
        rig.close()


# --------------------------------------------------------------------------------------------------
# Config files


def _toml_value(rng: random.Random, depth: int = 0) -> str:
    kind = rng.randrange(10 if depth < 2 else 7)
    if kind == 0:
        return rng.choice(["true", "false"])
    if kind == 1:
        return str(rng.choice([0, 1, -1, 5, 60, 1883, 10**6, 2**63 - 1, -(2**63)]))
    if kind == 2:
        return rng.choice(["0.0", "0.5", "-1.5", "1e308", "inf", "-inf", "nan", "3.0"])
    if kind in (3, 4):
        text = "".join(
            chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)]))
            for _ in range(rng.randrange(12))
        )
        return json.dumps(rng.choice([text, "v1", "none", "synthetic", "face", "tcp", "5", "3.1.1"]))
    if kind == 5:
        return rng.choice(["1979-05-27T07:32:00Z", "07:32:00", "'literal'", '"""multi\nline"""'])
    if kind == 6:
        return rng.choice(["", "[", "{", "=", "0x1F", "1_000", "+1", "'unterminated", '"\\x"'])
    if kind in (7, 8):
        return "[" + ", ".join(_toml_value(rng, depth + 1) for _ in range(rng.randrange(4))) + "]"
    return "{" + ", ".join(f"k{i} = {_toml_value(rng, depth + 1)}" for i in range(rng.randrange(3))) + "}"


def random_toml(rng: random.Random) -> bytes:
    """A config file: known sections and keys with values of any type, unknown ones, and plain garbage."""
    from agent.config import Config

    if rng.random() < 0.1:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(200)))
    sections = {f.name: f for f in dataclasses.fields(Config)}
    lines = []
    for _ in range(rng.randrange(3)):
        lines.append(f"{rng.choice(['device_id', 'log_level', 'bogus'])} = {_toml_value(rng)}")
    for _ in range(rng.randrange(5)):
        name = rng.choice([*sections, "nonsense", "hume.v1", "mqtt"])
        section = sections.get(name)
        tp = section.default_factory() if section is not None and callable(section.default_factory) else None
        keys = [f.name for f in dataclasses.fields(tp)] if dataclasses.is_dataclass(tp) else ["x"]
        lines.append(f"[{name}]")
        for _ in range(rng.randrange(6)):
            lines.append(f"{rng.choice([*keys, 'unknown_key'])} = {_toml_value(rng)}")
    text = "\n".join(lines) + "\n"
    if rng.random() < 0.1:
        text = text[: rng.randrange(len(text) + 1)]
    return text.encode("utf-8", "surrogatepass")


def check_config_file(path: Path) -> Tuple[int, str]:
    """``hume-edge check-config`` in-process: the exit code and what it printed (a traceback propagates)."""
    import io

    from agent import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["check-config", str(path)])
    return code, out.getvalue() + err.getvalue()


def config_inputs(rng: random.Random, n: int, workdir: Optional[Path] = None) -> int:
    """Run ``n`` generated configs through check-config; raise on anything but exit 0 / 78 with a message."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "config.toml"
        for _ in range(n):
            path.write_bytes(random_toml(rng))
            code, said = check_config_file(path)
            if code not in (0, 78) or (code == 78 and "error" not in said):
                raise AssertionError(f"check-config exited {code} on:\n{path.read_bytes()!r}\n{said}")
    return n
