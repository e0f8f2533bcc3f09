"""The fault campaign's rig: the whole agent as a process and every part it talks to, wired up on loopback.

Shared by ``tests/faults/`` (a short campaign in CI) and ``scripts/chaos`` (minutes of it). Everything is
real and on loopback: mosquitto (persistent, saved on every change, so a SIGKILL of the broker does not
lose what it acknowledged), the emulator as a ``hume-edge emulator`` process, two TCP proxies (agent ↔
emulator WebSocket, agent ↔ mosquitto), and ``hume-edge run`` under a test-owned ``$NOTIFY_SOCKET`` with
``WATCHDOG_USEC``, with libfaketime preloaded so its wall clock can be stepped while its monotonic clock
is not. The outbox lives on a small tmpfs (as root) so the disk can be filled under it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from agent.config import OutboxConfig
from agent.mqtt.outbox import Outbox
from tests.support.accounting import Accounting, account, outbox_counter, outbox_remains, seqs_of
from tests.support.mosquitto import Subscriber
from tests.support.processes import (
    DEVICE,
    PREFIX,
    START_TIMEOUT_S,
    TEST_KEY,
    AgentProcess,
    DurableBroker,
    EmulatorProcess,
    NotifyRecorder,
    RssSampler,
    SmallDisk,
)
from tests.support.proxy import Proxy
from tests.support.toml_text import toml_text
from tests.support.waits import wait_until

# --------------------------------------------------------------------------------------------------
# The rig


def agent_config(rig: Rig, settings: Optional[Mapping[str, Mapping[str, Any]]] = None) -> str:
    return config_text(
        rig.disk.path / "outbox.sqlite", rig.hume_proxy.port, rig.mqtt_proxy.port, settings=settings
    )


def config_text(
    outbox: Path,
    hume_port: int,
    mqtt_port: int,
    *,
    synchronous: str = "full",
    settings: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> str:
    """The campaigns' agent config: v0 through the Hume proxy, synthetic media, a session always open;
    ``settings`` ({section: {key: value}}) replace or add keys (a scenario's own session length ...)."""
    data: Dict[str, Any] = {
        "device_id": DEVICE,
        "hume": {
            "backend": "v0",
            "api_key": TEST_KEY,
            "reply_timeout_s": 3.0,
            "fatal_retry_s": 1.0,  # an injected E0300 (quota) would otherwise stop summaries for 5 min
            "v0": {
                "url": f"ws://127.0.0.1:{hume_port}/v0/stream/models",
                "backoff_initial_s": 0.1,
                "backoff_max_s": 1.0,
            },
        },
        "camera": {"source": "synthetic"},
        "microphone": {"source": "speech"},
        "session": {"mode": "always"},
        "summary": {"window_s": 0.5},
        "mqtt": {
            "host": "127.0.0.1",
            "port": mqtt_port,
            "keepalive_s": 5,
            "health_interval_s": 2.0,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 1.0,
        },
        "outbox": {"path": str(outbox), "synchronous": synchronous},
        # The fuzz checks that every command gets one clear reply; the rate limits that would turn a fuzz
        # into unanswered refusals have their own test (test_command_guard).
        "commands": {
            "session_starts_per_hour": 3600,
            "text_chars_per_minute": 1000000,
            "discovery_per_minute": 600,
            "replies_per_s": 1000.0,
        },
    }
    for section, values in (settings or {}).items():
        data[section] = {**data.get(section, {}), **values}
    return toml_text(data)


class Parts:
    """What every campaign's agent talks to, on loopback: a durable mosquitto, the emulator, a proxy in front
    of each, the persistent subscriber and the notify socket; :meth:`close` stops whatever was started
    (bounded), in reverse order. Shared by :class:`Rig` and ``tests.support.powerloss``."""

    def __init__(self, workdir: Path, seed: int, topics: Optional[Sequence[str]] = None) -> None:
        self.workdir = workdir
        self.seed = seed
        self.topics = list(topics or [PREFIX + "#"])
        """What the persistent subscriber subscribes to (everything under the device's prefix by default)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self._closers: List[Callable[[], Any]] = []

    def _start_parts(self, client_id: str) -> None:
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
            "127.0.0.1", self.broker.port, self.topics, client_id=client_id, persistent=True
        )
        self._closers.append(self.subscriber.close)
        if not self.subscriber.subscribed.wait(10):
            raise RuntimeError("the campaign's subscriber could not subscribe")
        self.notify = NotifyRecorder()
        self._closers.append(self.notify.close)

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        self._closers.clear()


class Rig(Parts):
    """Every part of the campaign, started; :meth:`close` stops them all (bounded)."""

    def __init__(
        self,
        workdir: Path,
        seed: int,
        settings: Optional[Mapping[str, Mapping[str, Any]]] = None,
        topics: Optional[Sequence[str]] = None,
        *,
        step_clock: bool = True,
    ) -> None:
        super().__init__(workdir, seed, topics)
        self.settings = settings
        """Config keys the scenario sets over :func:`agent_config`'s ({section: {key: value}})."""
        self.step_clock = step_clock
        """Run the agent under libfaketime (when installed) so :meth:`set_clock_offset` can step its wall
        clock. It costs the agent time: the long boundary scenario, which steps no clock, stamped 277-311
        messages a run under it (seeds 501-505) and 381-421 without (2801-2805), in the same 3.5 min."""
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        self.disk = SmallDisk(self.workdir / "disk")
        self._closers.append(self.disk.close)
        self._start_parts(f"chaos-sub-{self.seed}")
        self.clock_file = self.workdir / "faketime"
        self.clock_offset_s = 0
        self.set_clock_offset(0)
        config = self.workdir / "config.toml"
        config.write_text(agent_config(self, self.settings), encoding="utf-8")
        self.outbox_path = self.disk.path / "outbox.sqlite"
        # Create the outbox ourselves, so the first seq the agent will stamp is known.
        Outbox(self.outbox_path, OutboxConfig()).close()
        self.first_seq = outbox_counter(self.outbox_path)
        self.agent = AgentProcess(
            self.workdir, config, self.notify, self.clock_file if self.step_clock else None
        )
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
        if code is not None and code != 0:
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


@contextlib.contextmanager
def rig_for(
    workdir: Path,
    seed: int,
    settings: Optional[Mapping[str, Mapping[str, Any]]] = None,
    topics: Optional[Sequence[str]] = None,
    *,
    step_clock: bool = True,
) -> Iterator[Rig]:
    rig = Rig(workdir, seed, settings, topics, step_clock=step_clock)
    try:
        if not rig.wait_ready():
            raise RuntimeError("the agent did not start:\n" + rig.agent.tail())
        yield rig
    finally:
        rig.close()
