"""The power-loss campaign: the agent's outbox on a filesystem that drops unsynced writes, cut again and
again.

Shared by ``tests/faults/test_power_loss.py`` (a short run in the suite) and ``scripts/chaos --power-cuts``
(the long one). The parts are the fault campaign's (:mod:`tests.support.processes`): a durable mosquitto,
the emulator, loopback proxies for both links, ``hume-edge run`` under a test-owned notify socket; the
outbox lives on :mod:`tests.support.powercut_fs`. Each cut is SIGKILL and power loss at the same instant:
the filesystem refuses every write from then on, the agent is killed, and what it had not fsynced is
dropped (``all``) or torn (``torn``: each unsynced 4 KB page and each file size survives or not). Then a
new boot (a new ``/proc/sys/kernel/random/boot_id``, bind-mounted in the agent's own mount namespace, as a
real reboot gives) and a restart. Some cuts come while the broker link is down, so a backlog is queued;
one comes while the restarted agent is opening its outbox (after its first few writes).

Accounting is per message, end to end: the agent runs as :mod:`tests.support.ledger_agent`, which writes
every ``seq`` its outbox stamped (with a digest of the message) to a ledger off the cut filesystem, once
before its transaction commits and once after; the persistent subscriber records what the broker
delivered. ``reused``: a ``seq`` stamped on two different messages; ``lost``: committed but never
delivered; ``duplicates``: the same message delivered again; ``cut mid-commit``: a cut came between the two
lines (such a row may or may not be on the card: delivered or not, neither is a problem); sessions: every
``start`` delivered must get an ``end``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Set, Tuple

from agent.mqtt.drain import REPLAY_MARK
from tests.support.ledger_agent import COMMITTED, LEDGER_ENV, LIFE_ENV, digest
from tests.support.powercut_fs import PowercutMount, Stats
from tests.support.processes import (
    PREFIX,
    START_TIMEOUT_S,
    AgentProcess,
    NotifyRecorder,
)
from tests.support.rig import Parts, config_text
from tests.support.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]
BIND_BOOT_ID = 'mount --bind "$0" /proc/sys/kernel/random/boot_id && exec "$@"'


@dataclasses.dataclass(frozen=True)
class Cut:
    mode: str
    """``all`` or ``torn`` (see :mod:`tests.support.powercut_fs`)."""
    backlog: bool
    """The broker link is down for a while before the cut, so a backlog is queued."""
    at_start_up: bool
    """A second cut follows while the restarted agent opens its outbox."""


def plan(rng: random.Random, cuts: int) -> List[Cut]:
    """``cuts`` cuts: both modes alike, about half with a backlog, one of them (the second) at start-up."""
    modes = ["all", "torn"] * (cuts // 2 + 1)
    rng.shuffle(modes)
    backlog = [i % 2 == 0 for i in range(cuts)]
    rng.shuffle(backlog)
    return [Cut(modes[i], backlog[i], i == min(1, cuts - 1)) for i in range(cuts)]


class Stamp(NamedTuple):
    """One ledger line (:mod:`tests.support.ledger_agent`)."""

    life: int
    seq: int
    topic: str
    digest: str
    committed: bool
    """False: written before the transaction's ``COMMIT``; True: once it returned."""


class LedgerAgent(AgentProcess):
    """``hume-edge run`` (:mod:`tests.support.ledger_agent`) in a mount namespace with this boot's id."""

    def __init__(self, workdir: Path, config: Path, notify: NotifyRecorder) -> None:
        super().__init__(workdir, config, notify, clock_file=None)
        self.ledger = workdir / "ledger.txt"
        self.boots = workdir / "boots"
        self.boots.mkdir(exist_ok=True)
        self.boot_id = ""
        self.new_boot()
        self.env[LEDGER_ENV] = str(self.ledger)
        self.env["PYTHONPATH"] = str(ROOT)

    def new_boot(self) -> None:
        """What a reboot does to ``/proc/sys/kernel/random/boot_id``."""
        self.boot_id = str(uuid.uuid4())
        (self.boots / self.boot_id).write_text(self.boot_id + "\n", encoding="ascii")

    def start(self) -> None:
        self.env[LIFE_ENV] = str(self.lives + 1)
        self._spawn(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", BIND_BOOT_ID,
             str(self.boots / self.boot_id), sys.executable, "-m", "tests.support.ledger_agent",
             "run", "--config", str(self.config)],
            env=self.env, cwd=self.workdir,
        )  # fmt: skip
        self.lives += 1

    def ledger_lines(self) -> List[Stamp]:
        """Every message the outbox stamped, before and after its commit."""
        if not self.ledger.exists():
            return []
        out = []
        for line in self.ledger.read_text(encoding="utf-8").splitlines():
            life, seq, topic, dig, moment = line.split(" ")
            out.append(Stamp(int(life), int(seq), topic, dig, moment == COMMITTED))
        return out


@dataclasses.dataclass
class Accounting:
    """Every stamped message and every delivery, matched by ``(seq, digest)``."""

    stamped: int = 0
    delivered: int = 0
    lost: int = 0
    lost_per_life: Dict[int, int] = dataclasses.field(default_factory=dict)
    duplicates: int = 0
    reused: int = 0
    """Numbers stamped on two or more different messages."""
    reused_delivered: int = 0
    """Of those, numbers a consumer received on two or more different messages."""
    not_in_ledger: int = 0
    unstamped: List[str] = dataclasses.field(default_factory=list)
    """``seq topic`` of each message delivered without any ledger line (at most 10)."""
    cut_mid_commit: int = 0
    """Messages whose transaction a cut interrupted: the ``commit`` line without the ``committed`` one."""
    cut_mid_commit_delivered: int = 0
    """Of those, delivered all the same (the commit had reached the card)."""
    sessions_started: int = 0
    sessions_ended: int = 0
    ended_interrupted: int = 0
    never_ended: List[str] = dataclasses.field(default_factory=list)
    ended_twice: List[str] = dataclasses.field(default_factory=list)


def account(ledger: List[Stamp], received: List[Tuple[str, bytes, bool]]) -> Accounting:
    """Match the ledger with what the subscriber received."""
    acc = Accounting()
    stamped: Dict[Tuple[int, str], int] = {}
    begun: Set[Tuple[int, str]] = set()
    for line in ledger:
        if line.committed:
            stamped.setdefault((line.seq, line.digest), line.life)
        else:
            begun.add((line.seq, line.digest))
    mid_commit = begun - set(stamped)
    topics: Dict[Tuple[int, str], str] = {}
    arrivals: Dict[Tuple[int, str], int] = collections.Counter()
    delivered: Set[Tuple[int, str]] = set()
    starts: Set[str] = set()
    ends: Dict[str, Set[int]] = collections.defaultdict(set)
    interrupted: Set[str] = set()
    for topic, body, key, retained in sequenced(received):
        delivered.add(key)
        topics[key] = topic[len(PREFIX) :]
        if not retained:
            arrivals[key] += 1
        if topic == PREFIX + "session":
            sid = str(body.get("session"))
            if body.get("event") == "start":
                starts.add(sid)
            elif body.get("event") == "end":
                ends[sid].add(key[0])
                if body.get("reason") == "interrupted":
                    interrupted.add(sid)
    bodies: Dict[int, Set[str]] = collections.defaultdict(set)
    for seq, dig in set(stamped) | delivered:
        bodies[seq].add(dig)
    delivered_bodies: Dict[int, Set[str]] = collections.defaultdict(set)
    for seq, dig in delivered:
        delivered_bodies[seq].add(dig)
    lost = [key for key in stamped if key not in delivered]
    acc.stamped = len(stamped)
    acc.delivered = len(delivered & set(stamped))
    unstamped = sorted(delivered - set(stamped) - mid_commit)
    acc.not_in_ledger = len(unstamped)
    acc.unstamped = [f"{seq} {topics[(seq, dig)]}" for seq, dig in unstamped[:10]]
    acc.cut_mid_commit = len(mid_commit)
    acc.cut_mid_commit_delivered = len(mid_commit & delivered)
    acc.lost = len(lost)
    acc.lost_per_life = dict(collections.Counter(stamped[key] for key in lost))
    acc.duplicates = sum(n - 1 for n in arrivals.values())
    acc.reused = sum(1 for digs in bodies.values() if len(digs) > 1)
    acc.reused_delivered = sum(1 for digs in delivered_bodies.values() if len(digs) > 1)
    acc.sessions_started = len(starts)
    acc.sessions_ended = len(set(ends) & starts)
    acc.ended_interrupted = len(interrupted & starts)
    acc.never_ended = sorted(starts - set(ends))
    acc.ended_twice = sorted(sid for sid, seqs in ends.items() if len(seqs) > 1)
    return acc


@dataclasses.dataclass
class Report:
    seed: int
    synchronous: str
    cuts: List[str] = dataclasses.field(default_factory=list)
    accounting: Accounting = dataclasses.field(default_factory=Accounting)
    fs: Stats = dataclasses.field(default_factory=Stats)
    quarantined: int = 0
    lives: int = 0
    silent_lives: List[int] = dataclasses.field(default_factory=list)
    problems: List[str] = dataclasses.field(default_factory=list)

    def lines(self) -> List[str]:
        acc = self.accounting
        return [
            f"power-loss campaign: seed {self.seed}, outbox.synchronous = {self.synchronous!r}, "
            f"{len(self.cuts)} cuts ({', '.join(self.cuts)}), {self.lives} agent lives",
            f"seq stamped {acc.stamped}, delivered {acc.delivered}, lost {acc.lost} "
            f"(by life {dict(sorted(acc.lost_per_life.items()))}), duplicates {acc.duplicates}, "
            f"reused {acc.reused} (delivered with two bodies: {acc.reused_delivered}), "
            f"delivered but not stamped {acc.not_in_ledger}; cut mid-commit {acc.cut_mid_commit} "
            f"(delivered all the same: {acc.cut_mid_commit_delivered})",
            f"sessions started {acc.sessions_started}, ended {acc.sessions_ended} "
            f"({acc.ended_interrupted} interrupted), never ended {len(acc.never_ended)}, "
            f"ended twice {len(acc.ended_twice)}",
            f"filesystem: {self.fs.writes} writes, {self.fs.syncs} fsyncs, unsynced pages lost "
            f"{self.fs.pages_lost} / kept {self.fs.pages_kept}, sizes lost {self.fs.sizes_lost}; "
            f"outbox files quarantined {self.quarantined}",
            *[f"PROBLEM: {p}" for p in self.problems],
        ]


class PowerLossCampaign(Parts):
    """Everything on loopback, the outbox on the power-cut filesystem; :meth:`run` then :meth:`close`."""

    def __init__(
        self, workdir: Path, seed: int, synchronous: str, *, log: Callable[[str], None] = print
    ) -> None:
        super().__init__(workdir, seed)
        self.rng = random.Random(seed)
        self.log = log
        self.report = Report(seed, synchronous)
        self.t0 = time.monotonic()
        self._cut_lives: Set[int] = set()
        """Lives cut while opening the outbox: they may not get to queue anything."""
        try:
            self.fs = PowercutMount(workdir / "fs")
            self._closers.append(self.fs.close)
            self._start_parts(f"power-{seed}")
            config = workdir / "config.toml"
            outbox = self.fs.mountpoint / "outbox.sqlite"
            text = config_text(outbox, self.hume_proxy.port, self.mqtt_proxy.port, synchronous=synchronous)
            config.write_text(text, encoding="utf-8")
            self.agent = LedgerAgent(workdir, config, self.notify)
            self._closers.append(self.agent.terminate)
        except BaseException:
            self.close()
            raise

    def _say(self, text: str) -> None:
        self.log(f"[{time.monotonic() - self.t0:6.1f} s] {text}")

    def received(self) -> List[Tuple[str, bytes, bool]]:
        with self.subscriber._cond:
            return [(m.topic, m.payload, m.retain) for m in self.subscriber.messages]

    def _delivered_all_of(self, life: int) -> bool:
        got = {key for _, _, key, _ in sequenced(self.received())}
        return all(
            (s.seq, s.digest) in got for s in self.agent.ledger_lines() if s.life == life and s.committed
        )

    def start_agent(self) -> None:
        self.agent.start()
        if not wait_until(lambda: self.agent.snapshot() is not None, START_TIMEOUT_S, 0.1):
            raise RuntimeError("the agent did not start after a cut:\n" + self.agent.tail())

    def power_cut(self, mode: str) -> None:
        """SIGKILL and power loss at the same instant, then a new boot."""
        self.fs.freeze()
        self.agent.kill()
        self.fs.cut(mode, self.rng.randrange(2**31))
        self.agent.new_boot()

    def run(self, cuts: int, run_s: Tuple[float, float] = (2.0, 4.0)) -> Report:
        """A clean restart first (an upgrade: the outbox is checkpointed and synced at close, so what the
        cuts roll back to is a counter that had advanced), then ``cuts`` cuts."""
        self.start_agent()
        time.sleep(self.rng.uniform(*run_s))  # scenario: the agent runs and delivers
        self._say("clean restart (SIGTERM)")
        code = self.agent.terminate()
        if code not in (0, None):
            self.report.problems.append(f"the agent exited {code} on SIGTERM")
        self.start_agent()
        for cut in plan(self.rng, cuts):
            up_s = self.rng.uniform(*run_s)
            if cut.backlog:
                time.sleep(up_s / 3)  # scenario: the agent runs, then the broker link goes down
                self.mqtt_proxy.blackhole()
                self.mqtt_proxy.cut()
                time.sleep(up_s * 2 / 3)  # scenario: a backlog is queued
            else:
                time.sleep(up_s)  # scenario: the agent runs and delivers
            self._say(f"power cut ({cut.mode}{', backlog' if cut.backlog else ''})")
            self.power_cut(cut.mode)
            self.report.cuts.append(cut.mode + ("+backlog" if cut.backlog else ""))
            if cut.at_start_up:
                self._cut_at_start_up("torn" if cut.mode == "all" else "all")
            self.start_agent()
            if cut.backlog:
                time.sleep(self.rng.uniform(0.5, 1.5))  # scenario: the link comes back after the restart
                self.mqtt_proxy.resume()
        return self.finish()

    def _cut_at_start_up(self, mode: str) -> None:
        """Start the agent and cut while it opens its outbox (after its first 1-40 writes to it)."""
        before = self.fs.stats().writes
        writes = self.rng.randrange(1, 40)
        self.agent.start()
        self._cut_lives.add(self.agent.lives)
        wait_until(lambda: self.fs.stats().writes >= before + writes, 20, 0.001)
        self._say(f"power cut ({mode}) at start-up, after {self.fs.stats().writes - before} writes")
        self.power_cut(mode)
        self.report.cuts.append(mode + "@start-up")

    def finish(self) -> Report:
        """Heal the link, let the last life deliver, stop it cleanly, and do the accounting."""
        self.mqtt_proxy.resume()
        life = self.agent.lives
        if not wait_until(lambda: self._delivered_all_of(life), 60, 0.25):
            self.report.problems.append(f"life {life} did not deliver all it stamped within 60 s")
        code = self.agent.terminate()
        if code not in (0, None):
            self.report.problems.append(f"the last agent exited {code} on SIGTERM")
        wait_until(lambda: self._delivered_all_of(life), 15, 0.25)
        ledger = self.agent.ledger_lines()
        acc = account(ledger, self.received())
        self.report.accounting = acc
        self.report.fs = self.fs.stats()
        self.report.lives = self.agent.lives
        self.report.quarantined = self.agent.tail(10**7).count(" is corrupt (")
        lives_with_messages = {s.life for s in ledger if s.committed}
        self.report.silent_lives = sorted(set(range(1, life + 1)) - lives_with_messages - self._cut_lives)
        problems = self.report.problems
        if acc.reused:
            problems.append(f"{acc.reused} seq number(s) stamped on two different messages")
        if acc.never_ended:
            problems.append(f"{len(acc.never_ended)} session(s) started and never ended")
        if acc.ended_twice:
            problems.append(f"{len(acc.ended_twice)} session(s) ended twice")
        if self.report.synchronous == "full" and acc.lost:
            problems.append(f"{acc.lost} committed message(s) lost with synchronous = full")
        if acc.not_in_ledger:
            problems.append(
                f"{acc.not_in_ledger} delivered message(s) the outbox never stamped "
                f"(seq topic: {', '.join(acc.unstamped)})"
            )
        if self.report.silent_lives:
            problems.append(f"agent lives {self.report.silent_lives} queued nothing after a restart")
        if self.report.quarantined:
            problems.append(f"{self.report.quarantined} outbox file(s) found corrupt after a cut")
        if acc.stamped == 0:
            problems.append("nothing was stamped at all")
        return self.report


def sequenced(
    received: List[Tuple[str, bytes, bool]],
) -> Iterator[Tuple[str, Dict[str, Any], Tuple[int, str], bool]]:
    """(topic, body, (seq, digest of the message as stored), retained) of every outbox message received."""
    for topic, payload, retained in received:
        if not topic.startswith(PREFIX) or "/cmd/" in topic or not payload.startswith(b"{"):
            continue
        try:
            body = json.loads(payload)
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("seq"), int):
            stored = payload[: -len(REPLAY_MARK)] + b"}" if payload.endswith(REPLAY_MARK) else payload
            yield topic, body, (int(body["seq"]), digest(stored)), retained


@contextlib.contextmanager
def power_loss_campaign(
    workdir: Path, seed: int, synchronous: str, *, log: Callable[[str], None] = print
) -> Iterator[PowerLossCampaign]:
    campaign = PowerLossCampaign(workdir, seed, synchronous, log=log)
    try:
        yield campaign
    finally:
        campaign.close()


def unshare_missing() -> Optional[str]:
    """Why the agent cannot get a boot id of its own here (None when it can)."""
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else f"unshare --mount failed: {done.stderr.strip()}"
