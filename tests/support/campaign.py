"""The fault campaign: seeded random faults and bad inputs thrown at the rig, and its report.

Shared by ``tests/faults/`` (a short campaign in CI) and ``scripts/chaos`` (minutes of it).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import random
import signal
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tests.support.accounting import Accounting
from tests.support.processes import PREFIX, START_TIMEOUT_S, WATCHDOG_USEC
from tests.support.rig import Rig
from tests.support.waits import wait_until

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
            time.sleep(self.rng.uniform(*self.gap))  # scenario: the fault campaign\'s hold
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
            time.sleep(hold)  # scenario: the fault campaign\'s hold
            if mode == "blackhole":
                proxy.cut()  # a frozen stream lost bytes: the test cannot resume it
            proxy.resume()
        elif kind == "hume_bad_replies":
            fault: Dict[str, Any] = self.rng.choice(
                [{"error_code": "E0101"}, {"warning_code": "W0103"}, {"silent": True}, {"close_after": 1},
                 {"delay_ms": 2500.0}, {"refuse_for_s": 2.0}, {"error_code": "E0300"}]
            )  # fmt: skip
            self._say(f"{kind} {fault} for {hold:.1f} s")
            with contextlib.suppress(OSError):
                rig.emulator.set_faults(**fault)
                self.report.inputs["bad server replies"] += 1
            time.sleep(hold)  # scenario: the fault campaign\'s hold
            with contextlib.suppress(OSError):
                rig.emulator.set_faults()
        elif kind == "kill_agent":
            self._say(f"SIGKILL agent, restart after {hold / 2:.1f} s")
            rig.agent.snapshot()
            rig.agent.kill()
            time.sleep(hold / 2)  # scenario: the fault campaign\'s hold
            rig.agent.start()
        elif kind == "kill_broker":
            self._say(f"SIGKILL mosquitto, restart after {hold / 2:.1f} s")
            rig.broker.kill()
            time.sleep(hold / 2)  # scenario: the fault campaign\'s hold
            rig.broker.start()
        elif kind == "kill_emulator":
            self._say(f"SIGKILL emulator, restart after {hold / 2:.1f} s")
            rig.emulator.kill()
            time.sleep(hold / 2)  # scenario: the fault campaign\'s hold
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
        time.sleep(seconds)  # scenario: the fault campaign\'s hold
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
        time.sleep(max(0.0, hold - (time.monotonic() - start)))  # scenario: the fault campaign\'s hold
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
