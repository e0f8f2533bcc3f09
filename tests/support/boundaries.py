"""The session-boundary fault scenario (issue #28): restarts and broker faults around session boundaries.

Black-box, like the campaign (:mod:`tests.support.rig`): the agent in session mode ``always`` rolls a
session over every ``max_session_s``, and at every boundary queues ``aggregate``, ``session`` end,
``idle`` x3, the new visit's ``notice`` and ``session`` start; a restart first recovers the interrupted
session and withdraws the notice; a stop ends with the withdrawn notice. Faults, in this order:

1. normal running; 2. broker SIGKILL + restart; 3. agent SIGKILLs in quick succession, each restart
recovering the session the last one left open; 4. the broker link refused while the agent is SIGKILLed
with a backlog; 5. the broker link frozen past the keepalive, then reset; 6. frozen shorter than it, then
resumed (held bytes pass on); 7. the emulator link refused; 8. normal running; drain; SIGTERM.

Lost = a seq between the first and the last one the outbox stamped that the persistent subscriber never
received, while the outbox ends empty. :class:`Timing` scales the phases: ``LONG`` is the scenario as the
issue ran it (``scripts/chaos --scenario boundaries``, ~3.5 min), ``SHORT`` the suite's (~50 s).

The subscriber is a consumer who follows the docs: it subscribes to the topics of the sequenced messages
the consumer rules name ("Every sequenced message (...)", :func:`documented_topics`), not to ``#``. That
is how issue #28's campaign lost 13 of 463 at 3f521f5: its README named summary, idle, session and
aggregate, while the retained ``notice`` took its numbers from the same counter, so every notice was a gap
to such a consumer (one at each live boundary, two at each restart's, the withdrawn one at a stop; a
subscriber to ``#`` sees none). ``HUME_EDGE_AGENT_TREE=<old checkout>`` runs that checkout's agent and
reads its docs (:func:`tests.support.processes.agent_tree`).
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping

from tests.support.accounting import Accounting
from tests.support.mosquitto import Received
from tests.support.processes import PREFIX
from tests.support.rig import Rig

SEQUENCED_RULE = re.compile(r"Every\s+sequenced\s+message\s+\(([^)]*)\)")
"""The consumer rules' list of sequenced kinds (docs/mqtt.md; README.md before the docs site)."""
KIND_TOPICS = {
    "summary": "summary/#",
    "idle": "summary/#",  # a model's idle message rides on its summary topic
    "session": "session",
    "aggregate": "aggregate",
    "notice": "notice",
}


def documented_kinds(root: Path) -> List[str]:
    """The sequenced message kinds the consumer rules of the checkout at ``root`` name, in their order."""
    for name in ("docs/mqtt.md", "README.md"):
        path = root / name
        match = SEQUENCED_RULE.search(path.read_text(encoding="utf-8")) if path.exists() else None
        if match:
            return [kind.strip() for kind in match.group(1).split(",")]
    raise ValueError(f"{root}: neither docs/mqtt.md nor README.md says 'Every sequenced message (...)'")


def documented_topics(root: Path) -> List[str]:
    """The topic filters (under the device's prefix) of :func:`documented_kinds`: what a consumer of those
    kinds subscribes to."""
    kinds = documented_kinds(root)
    unknown = [k for k in kinds if k not in KIND_TOPICS]
    if unknown:
        raise ValueError(f"sequenced kinds {unknown} have no topic here; known: {', '.join(KIND_TOPICS)}")
    return sorted({PREFIX + KIND_TOPICS[k] for k in kinds})


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds of each phase, and the settings that make boundaries come at that pace."""

    normal_s: float
    kill_gap_s: float
    backlog_s: float
    long_freeze_s: float
    short_freeze_s: float
    hume_cut_s: float
    tail_s: float
    max_session_s: float
    keepalive_s: int

    def settings(self) -> Dict[str, Dict[str, Any]]:
        """The agent config of the issue's campaign (over the rig's: v0, synthetic face and voice)."""
        return {
            "session": {"mode": "always", "max_session_s": self.max_session_s},
            "summary": {"window_s": 1.0},
            "mqtt": {"qos": 1, "keepalive_s": self.keepalive_s},
        }


LONG = Timing(
    normal_s=60, kill_gap_s=3, backlog_s=10, long_freeze_s=25, short_freeze_s=8, hume_cut_s=10, tail_s=30,
    max_session_s=40, keepalive_s=10,
)  # fmt: skip
SHORT = Timing(
    normal_s=8, kill_gap_s=2.5, backlog_s=3, long_freeze_s=11, short_freeze_s=3, hume_cut_s=2, tail_s=3,
    max_session_s=10, keepalive_s=5,
)  # fmt: skip
"""Keepalive 5 s: paho gives up on a frozen link after ~10 s (a PINGREQ, then a keepalive unanswered)."""


def run_boundaries(rig: Rig, timing: Timing, say: Callable[[str], None]) -> Accounting:
    """Inject the faults of the module docstring in order, then drain, SIGTERM and account."""
    t0 = time.monotonic()
    rng = random.Random(rig.seed)

    def hold(seconds: float) -> None:
        """Sleep ``seconds`` +-20 % (seeded): each seed puts the boundaries elsewhere among the faults."""
        time.sleep(seconds * rng.uniform(0.8, 1.2))  # scenario: the phase's length

    def phase(text: str, seconds: float = 0.0) -> None:
        say(f"[{time.monotonic() - t0:6.1f} s] {text}")
        hold(seconds)

    phase("normal running", timing.normal_s)
    phase("broker SIGKILL + restart")
    rig.broker.kill()
    rig.broker.start()
    phase("agent SIGKILL x3, restarted at once each time", timing.kill_gap_s)
    for _ in range(3):
        rig.agent.kill()
        rig.agent.start()
        rig.wait_ready()
        hold(timing.kill_gap_s)
    phase("broker link refused; agent SIGKILLed with a backlog", timing.backlog_s / 2)
    rig.mqtt_proxy.reset(refuse=True)
    hold(timing.backlog_s / 2)
    rig.agent.kill()
    rig.agent.start()
    rig.wait_ready()
    hold(timing.backlog_s / 2)
    rig.mqtt_proxy.resume()
    phase(f"broker link frozen {timing.long_freeze_s:g} s, then reset", 1.0)
    rig.mqtt_proxy.freeze()
    hold(timing.long_freeze_s)
    rig.mqtt_proxy.reset()
    rig.mqtt_proxy.resume()
    phase(f"broker link frozen {timing.short_freeze_s:g} s, then resumed", 2.0)
    rig.mqtt_proxy.freeze()
    hold(timing.short_freeze_s)
    rig.mqtt_proxy.resume()
    phase(f"emulator link refused {timing.hume_cut_s:g} s", 1.0)
    rig.hume_proxy.reset(refuse=True)
    hold(timing.hume_cut_s)
    rig.hume_proxy.resume()
    phase("normal running", timing.tail_s)
    phase("drain, SIGTERM, accounting")
    return rig.finish()


def lines(acc: Accounting, received: List[Received], status: Mapping[str, Any]) -> List[str]:
    """The accounting, each missing seq between the messages received around it, and the agent's counters."""
    out = [
        f"stamped: {acc.produced}, delivered: {acc.delivered}, lost: {acc.lost}, duplicates: "
        f"{acc.duplicates}, dropped: {sum(acc.dropped.values())}, still queued: {acc.queued}, "
        f"out of order: {acc.out_of_order}",
        f"agent at the end: replayed={status.get('replayed')} dropped={status.get('dropped')} "
        f"queue_depth={status.get('queue_depth')} connects={status.get('connects')}",
    ]
    labels = _labels(received)
    for seq in acc.missing:
        before = max((s for s in labels if s < seq), default=None)
        after = min((s for s in labels if s > seq), default=None)
        out.append(
            f"missing seq {seq}: after {before} {labels.get(before, '-') if before else '-'}, "
            f"before {after} {labels.get(after, '-') if after else '-'}"
        )
    return out


def sequence(received: List[Received]) -> List[str]:
    """Every seq received, in seq order, with what it was: where a gap sits, at a glance."""
    labels = _labels(received)
    return [f"{seq} {labels[seq]}" for seq in sorted(labels)]


def _labels(received: List[Received]) -> Dict[int, str]:
    """seq -> what the message was (topic, and the notice's / session's state), first arrival."""
    out: Dict[int, str] = {}
    for m in received:
        try:
            body = json.loads(m.payload)
        except ValueError:
            continue
        if not isinstance(body, dict) or not isinstance(body.get("seq"), int) or body["seq"] in out:
            continue
        topic = m.topic[len(PREFIX) :]
        extra = body.get("active", body.get("event", body.get("schema", "")))
        out[body["seq"]] = f"{topic}({extra})" + (" replay" if body.get("replay") else "")
    return out
