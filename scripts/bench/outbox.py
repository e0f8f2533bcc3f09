#!/usr/bin/env python3
"""Benchmark 3: outbox throughput, durable enqueue -> PUBACK -> delete, vs. paho in memory and persist-queue.

See ``_mqtt.py`` for what each side does. All three run one after the other against one private mosquitto
on a free loopback port, each with a fresh database in a temporary directory.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import _common

_common.ensure_venv()

import _mqtt  # noqa: E402

from agent.dev.localbroker import LocalBroker  # noqa: E402


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    n = 200 if args.quick else 3000
    with tempfile.TemporaryDirectory(prefix="hume-edge-bench-") as tmp:
        work = Path(tmp)
        with LocalBroker(work / "broker") as broker:
            (work / "ours").mkdir()
            ours_s, window = asyncio.run(_mqtt.ours(broker.host, broker.port, n, work / "ours"))
            ceiling_s = _mqtt.ceiling(broker.host, broker.port, n, window)
            pq_s = _mqtt.persist_queue(broker.host, broker.port, n, window, work)
    rates = {"ours (Outbox + Publisher)": n / ours_s, "(a) paho in memory": n / ceiling_s}
    rates["(b) persist-queue SQLiteAckQueue"] = n / pq_s
    ours = rates["ours (Outbox + Publisher)"]
    table = _common.markdown(
        ["side", "messages", "seconds", "messages/s", "ours / side"],
        [[name, n, f"{n / r:.3f}", f"{r:,.0f}", f"{ours / r:.2f}x"] for name, r in rates.items()],
    )
    details = (
        f"{table}\n\nQoS 1, MQTT 5, ~300-byte summary payloads, {window} unacknowledged publishes at once "
        "(the window our publisher settled on with this broker) for all three; both durable sides use SQLite "
        "WAL with synchronous=FULL and commit every put. Timed from the first put to the last delete."
    )
    a = ours / rates["(a) paho in memory"]
    b = ours / rates["(b) persist-queue SQLiteAckQueue"]
    rows = [
        _common.row(
            "3 outbox", "msg/s vs (b) persist-queue",
            (f"{ours:,.0f}/s", f"{rates['(b) persist-queue SQLiteAckQueue']:,.0f}/s", f"{b:.2f}x"),
            ">= 3x", b >= 3,
        ),
        _common.row(
            "3 outbox", "msg/s vs (a) paho in memory",
            (f"{ours:,.0f}/s", f"{rates['(a) paho in memory']:,.0f}/s", f"{a:.2f}x"),
            ">= 0.5x", a >= 0.5,
        ),
    ]  # fmt: skip
    _common.finish(args, "Benchmark 3: outbox throughput", details, rows)


if __name__ == "__main__":
    main()
