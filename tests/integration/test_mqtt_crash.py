"""Power-cut stand-in: a process using Outbox + Publisher is SIGKILLed 20 times while publishing.

The driver (:func:`drive`, run in a subprocess) prints each ``seq`` once ``enqueue`` returned (the message
is durable from then on). After the kills, one last run drains the outbox. The subscriber must then hold a
gap-free range of seqs covering every printed one (a seq is taken in the same transaction as its row, so
a gap would be a lost message), in order per topic, and the database must have opened cleanly every time.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Set, Tuple

from tests.support.mosquitto import Broker, Subscriber

ROOT = Path(__file__).resolve().parents[2]
DRIVER = "from tests.integration.test_mqtt_crash import drive; drive()"
KILLS = 20
START_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 60.0
MODELS = ("face", "prosody", "burst")


def drive() -> None:
    """Subprocess entry: ``host port outbox_path produce|drain``."""
    host, port, path, mode = sys.argv[1:5]
    asyncio.run(_drive(host, int(port), Path(path), mode))


async def _drive(host: str, port: int, path: Path, mode: str) -> None:
    from agent.config import OutboxConfig
    from agent.messages import OutMessage
    from agent.mqtt.outbox import Outbox
    from agent.mqtt.publisher import Publisher
    from tests.support.mosquitto import mqtt_config
    from tests.support.tasks import running
    from tests.support.waits import eventually

    outbox = Outbox(path, OutboxConfig())
    print(f"opened quarantined={outbox.quarantined}", flush=True)
    pub = Publisher(mqtt_config(host, port), "kiosk1", outbox)
    async with running(pub):
        if mode == "drain":
            drained = await eventually(lambda: outbox.stats()["depth"] == 0, DRAIN_TIMEOUT_S)
            print(f"drained={drained}", flush=True)
            return
        i = 0
        while True:
            seq = pub.enqueue(OutMessage(f"summary/{MODELS[i % len(MODELS)]}", {"i": i}))
            print(seq, flush=True)
            i += 1
            await asyncio.sleep(0.002)  # scenario: a fast producer until the process is killed


def _start(broker: Broker, path: Path, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, broker.host, str(broker.port), str(path), mode],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )


def _first_line(proc: subprocess.Popen[bytes]) -> str:
    """Read the first line byte by byte from the raw pipe, so communicate() later gets all the rest."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], START_TIMEOUT_S)
        assert ready, f"the driver printed no complete first line: {line!r}"
        byte = os.read(fd, 1)
        assert byte, f"the driver exited after {line!r}"
        line += byte
    return line.decode().strip()


def _finish(proc: subprocess.Popen[bytes], timeout: float) -> Tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    return out.decode(errors="replace"), err.decode(errors="replace")


def _complete_lines(out: str) -> List[str]:
    """Lines the driver finished writing; a kill can cut the last one short."""
    return [line.strip() for line in out.splitlines(keepends=True) if line.endswith("\n")]


def test_sigkill_at_random_points_loses_no_seq(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    sub = subscriber(mosquitto, ["hume-edge/kiosk1/summary/#"])
    path = tmp_path / "outbox.sqlite"
    rng = random.Random(20261124)
    printed: List[int] = []
    for _ in range(KILLS):
        proc = _start(mosquitto, path, "produce")
        assert _first_line(proc) == "opened quarantined=None"
        time.sleep(rng.uniform(0.05, 0.6))  # scenario: it publishes for a random while
        proc.kill()
        out, err = _finish(proc, START_TIMEOUT_S)
        assert "Traceback" not in err, err
        printed += [int(line) for line in _complete_lines(out) if line.isdigit()]
    proc = _start(mosquitto, path, "drain")
    assert _first_line(proc) == "opened quarantined=None"
    out, err = _finish(proc, DRAIN_TIMEOUT_S + START_TIMEOUT_S)
    assert proc.returncode == 0, err
    assert "drained=True" in out
    assert not list(tmp_path.glob("*.corrupt-*"))
    assert printed, "the driver never got to publish"

    assert sub.wait_for(
        lambda ms: max((json.loads(m.payload)["seq"] for m in ms), default=0) >= printed[-1], 30
    )
    seen: Set[int] = set()
    per_topic: Dict[str, List[int]] = {}
    for m in list(sub.messages):
        seq = int(json.loads(m.payload)["seq"])
        if seq not in seen:
            seen.add(seq)
            per_topic.setdefault(m.topic, []).append(seq)
    assert set(printed) <= seen
    assert sorted(seen) == list(range(min(seen), max(seen) + 1)), "a seq is missing"
    assert min(seen) == printed[0]
    for topic, seqs in per_topic.items():
        assert seqs == sorted(seqs), f"out of order on {topic}"
