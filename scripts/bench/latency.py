#!/usr/bin/env python3
"""Benchmark 4: latency the agent adds from a Hume reply arriving to its summary reaching a subscriber.

The whole agent runs in this process (``run_agent`` on its default synthetic camera and espeak-ng voice,
all default models, ``session.mode = always``) against the emulator (another process) and a private
mosquitto, with a subscriber on its own paho thread. A summary *waits for its window* by design
(``summary.window_s``, serviced every 0.5 s tick); that wait is not the agent's overhead and is not counted.
What is counted, in two legs timed by wrapping methods of this process (no product code changes):

* handoff: the v0 client has parsed a reply into an Observation (``V0Backend._emit``) -> the summarizer
  takes it (``Summarizer.add``): the result queue and the results loop.
* publish: a summary leaves the summarizer (``Publisher.enqueue_many``: the durable outbox put with its fsync)
  -> the publisher's drain -> mosquitto -> the subscriber's ``on_message`` (same clock, ``time.time()``).

The goal is checked on p99(handoff) + p99(publish), an upper bound of the p99 of their sum.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import _common

_common.ensure_venv()

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent import config as config_mod  # noqa: E402
from agent.dev.localbroker import LocalBroker  # noqa: E402
from agent.hume.types import Observation  # noqa: E402
from agent.hume.v0.client import V0Backend  # noqa: E402
from agent.messages import OutMessage  # noqa: E402
from agent.mqtt.publisher import Publisher  # noqa: E402
from agent.service import run_agent  # noqa: E402
from agent.visit.summary import Summarizer  # noqa: E402

DEVICE = "bench-latency"
GOAL_MS = 20.0


class Probe:
    """Timestamps from the wrapped methods and the subscriber."""

    def __init__(self) -> None:
        self.arrived: Dict[int, Tuple[Observation, float]] = {}
        self.handoff_ms: List[float] = []
        self.produced: Dict[int, float] = {}
        self.received: Dict[int, float] = {}
        self.lock = threading.Lock()

    def install(self) -> None:
        emit, add, enqueue_many = V0Backend._emit, Summarizer.add, Publisher.enqueue_many
        probe = self

        def timed_emit(backend: V0Backend, obs: Observation) -> None:
            probe.arrived[id(obs)] = (obs, time.perf_counter())
            emit(backend, obs)

        def timed_add(summarizer: Summarizer, obs: Observation) -> None:
            entry = probe.arrived.pop(id(obs), None)
            if entry is not None:
                probe.handoff_ms.append(1000 * (time.perf_counter() - entry[1]))
            add(summarizer, obs)

        def timed_enqueue_many(publisher: Publisher, msgs: Sequence[OutMessage], **kw: Any) -> List[int]:
            t = time.time()
            seqs = enqueue_many(publisher, msgs, **kw)
            with probe.lock:
                for msg, seq in zip(msgs, seqs):
                    if msg.topic.startswith("summary/"):
                        probe.produced[seq] = t
            return seqs

        V0Backend._emit = timed_emit  # type: ignore[method-assign,assignment]
        Summarizer.add = timed_add  # type: ignore[method-assign,assignment]
        Publisher.enqueue_many = timed_enqueue_many  # type: ignore[method-assign,assignment]

    def on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        t = time.time()
        with self.lock:
            self.received[int(json.loads(msg.payload)["seq"])] = t

    def publish_ms(self) -> List[float]:
        with self.lock:
            return [1000 * (self.received[s] - t) for s, t in self.produced.items() if s in self.received]


def subscribe(host: str, port: int, probe: Probe) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-latency-sub")
    subscribed = threading.Event()
    client.on_message = probe.on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(host, port)
    client.subscribe(f"hume-edge/{DEVICE}/summary/#", qos=1)
    client.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError("the subscriber could not subscribe")
    return client


async def drive(cfg: config_mod.Config, seconds: float) -> int:
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_agent(cfg, stop))
    await asyncio.sleep(seconds)
    stop.set()
    return await asyncio.wait_for(task, 60)


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    seconds = 6.0 if args.quick else 30.0
    probe = Probe()
    probe.install()
    with tempfile.TemporaryDirectory(prefix="hume-edge-bench-") as tmp:
        work = Path(tmp)
        os.environ["RUNTIME_DIRECTORY"] = tmp  # the status snapshot stays out of the checkout
        with _common.EmulatorHost() as emu, LocalBroker(work / "broker") as broker:
            cfg = config_mod.from_dict(
                {
                    "device_id": DEVICE,
                    "hume": {"backend": "v0", "api_key": _common.API_KEY, "v0": {"url": emu.url}},
                    "camera": {"source": "synthetic"},
                    "microphone": {"source": "speech"},
                    "mqtt": {"host": broker.host, "port": broker.port},
                    "outbox": {"path": str(work / "outbox.sqlite")},
                    "session": {"mode": "always"},
                    "summary": {"window_s": 0.5},
                },
                environ={},
            )
            sub = subscribe(broker.host, broker.port, probe)
            try:
                code = asyncio.run(drive(cfg, seconds))
            finally:
                sub.disconnect()
                sub.loop_stop()
    if code != 0:
        raise SystemExit(f"the agent exited with {code}")
    report(args, probe, seconds)


def report(args: Any, probe: Probe, seconds: float) -> None:
    legs = {
        "handoff (reply -> summarizer)": probe.handoff_ms,
        "publish (summary -> subscriber)": probe.publish_ms(),
    }
    rows = []
    for name, values in legs.items():
        p50, p99 = _common.pct(values, 0.5), _common.pct(values, 0.99)
        rows.append(
            [name, len(values), f"{p50:.2f}", f"{p99:.2f}", f"{max(values, default=float('nan')):.2f}"]
        )
    p50_sum = sum(_common.pct(v, 0.5) for v in legs.values())
    p99_sum = sum(_common.pct(v, 0.99) for v in legs.values())
    rows.append(["agent-added (sum of the legs)", "", f"{p50_sum:.2f}", f"{p99_sum:.2f}", ""])
    details = (
        _common.markdown(["leg", "samples", "p50 ms", "p99 ms", "max ms"], rows)
        + f"\n\n{seconds:g} s of the whole agent at defaults except summary.window_s = 0.5 (more samples) "
        "and session.mode = always. p99 is by nearest rank (with ~100 samples, close to the maximum). "
        "No baseline: the goal is absolute."
    )
    headline = [
        _common.row(
            "4 latency", "reply -> subscriber, added by the agent",
            (f"p50 {p50_sum:.1f} ms, p99 {p99_sum:.1f} ms", "", ""),
            f"p99 < {GOAL_MS:g} ms", p99_sum < GOAL_MS,
        )
    ]  # fmt: skip
    _common.finish(args, "Benchmark 4: latency the agent adds", details, headline)


if __name__ == "__main__":
    main()
