"""The three ways a message can go from "queued" to "acknowledged by the broker", for benchmarks 3 and 6.

All three publish the same payload at QoS 1 over MQTT 5 to the same mosquitto, with the same number of
unacknowledged publishes at once (the window our publisher settled on with the broker), while a producer
queues the messages one at a time:

* ours: ``Publisher.enqueue`` (a durable ``Outbox.put``: one SQLite transaction, WAL, synchronous=FULL)
  with ``Publisher.run`` draining; done when the outbox is empty, i.e. every row was deleted on its PUBACK.
* ceiling: paho's own in-memory queue (``client.publish`` beyond the in-flight limit), no durability.
* persist-queue: ``SQLiteAckQueue`` (WAL, synchronous=FULL set explicitly), one ``put`` per message, a
  consumer thread that ``get``s, publishes, ``ack``s on PUBACK and deletes acked rows with
  ``clear_acked_data`` every 100 acks; done when all are acked and deleted.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import paho.mqtt.client as mqtt
import persistqueue
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import MqttConfig, OutboxConfig
from agent.messages import OutMessage
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher

TOPIC = "summary/face"
PAYLOAD: Dict[str, Any] = {
    "session": "3f2c9a1e-5b7d-4e21-9c0a-7d5e8b1f2a34",
    "model": "face",
    "window": {"start": "2026-11-24T21:40:47.000Z", "end": "2026-11-24T21:40:52.000Z"},
    "faces": [
        {
            "face_id": "face_0@3fa2c1",
            "n": 10,
            "top": [
                {"name": "Interest", "score": 0.612},
                {"name": "Joy", "score": 0.433},
                {"name": "Calmness", "score": 0.301},
            ],
        }
    ],
}
"""A face summary as the agent publishes it (about 300 bytes of JSON)."""
DEVICE = "bench"
TIMEOUT_S = 120.0


def mqtt_config(host: str, port: int) -> MqttConfig:
    return MqttConfig(
        host=host,
        port=port,
        discovery=False,
        health_interval_s=3600.0,
        reconnect_min_s=0.1,
        max_publish_rate_per_s=1_000_000.0,  # link speed: what this benchmark measures
    )


async def ours(host: str, port: int, n: int, workdir: Path) -> Tuple[float, int]:
    """(seconds from the first put to an empty outbox, the in-flight window used)."""
    outbox = Outbox(workdir / "outbox.sqlite", OutboxConfig(synchronous="full"))
    publisher = Publisher(mqtt_config(host, port), DEVICE, outbox)
    task = asyncio.ensure_future(publisher.run())
    try:
        await _until(lambda: publisher.status().state == "connected", "the publisher to connect")
        window = int(publisher.status().window)
        t0 = time.perf_counter()
        for _ in range(n):
            publisher.enqueue(OutMessage(TOPIC, PAYLOAD))
            await asyncio.sleep(0)  # the producer is another task of the same loop, as in the agent
        await _until(lambda: outbox.stats()["depth"] == 0, "the outbox to empty")
        return time.perf_counter() - t0, window
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        outbox.close()


async def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


class _Client:
    """A paho client on its own network thread; PUBACKs go to ``on_ack``."""

    def __init__(self, host: str, port: int, window: int, name: str) -> None:
        self.acks: queue.Queue[int] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(window)
        self.client.max_queued_messages_set(0)
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self.acks.put(mid)
        self.client.connect(host, port, keepalive=60)
        self.client.loop_start()
        if not connected.wait(10):
            raise RuntimeError(f"paho could not connect to {host}:{port}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _body(seq: int) -> bytes:
    return json.dumps(dict(PAYLOAD, seq=seq), separators=(",", ":")).encode()


def ceiling(host: str, port: int, n: int, window: int, device: str = DEVICE) -> float:
    """Seconds for paho's in-memory queue (no durability at all) to get ``n`` PUBACKs; the messages carry
    ``seq`` 0 .. n-1 on ``hume-edge/{device}/summary/face``."""
    c = _Client(host, port, window, "bench-ceiling")
    try:
        t0 = time.perf_counter()
        for i in range(n):
            c.client.publish(f"hume-edge/{device}/{TOPIC}", _body(i), qos=1)
        for _ in range(n):
            c.acks.get(timeout=TIMEOUT_S)
        return time.perf_counter() - t0
    finally:
        c.close()


class _FullSyncAckQueue(persistqueue.SQLiteAckQueue):  # type: ignore[misc]
    """persist-queue's default connection (WAL) with synchronous=FULL stated, as the outbox has it."""

    def _new_db_connection(self, path: str, multithreading: bool, timeout: float) -> sqlite3.Connection:
        conn: sqlite3.Connection = super()._new_db_connection(path, multithreading, timeout)
        conn.execute("PRAGMA synchronous=FULL")
        return conn


def persist_queue(host: str, port: int, n: int, window: int, workdir: Path) -> float:
    """Seconds for ``n`` messages through SQLiteAckQueue: put, get, publish, ack on PUBACK, delete."""
    q = _FullSyncAckQueue(str(workdir / "persist-queue"), multithreading=True, auto_commit=True)
    c = _Client(host, port, window, "bench-persist-queue")
    try:
        t0 = time.perf_counter()
        producer = threading.Thread(target=lambda: [q.put(_body(i)) for i in range(n)])
        producer.start()
        _consume(q, c, n, window)
        producer.join()
        return time.perf_counter() - t0
    finally:
        c.close()
        q.close()


def _consume(q: Any, c: _Client, n: int, window: int) -> None:
    """Publish what the queue gives, at most ``window`` unacknowledged; ack and delete on PUBACK."""
    by_mid: Dict[int, int] = {}
    published = acked = 0
    deadline = time.monotonic() + TIMEOUT_S

    def settle(mid: int) -> None:
        nonlocal acked
        q.ack(id=by_mid.pop(mid))
        acked += 1
        if acked % 100 == 0 or acked == n:
            q.clear_acked_data(max_delete=0, keep_latest=0)

    while acked < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"persist-queue: {acked} of {n} acknowledged after {TIMEOUT_S:g} s")
        room = published < n and len(by_mid) < window
        try:
            settle(c.acks.get(block=not room, timeout=1.0))
            continue  # PUBACKs first: they free the window
        except queue.Empty:
            pass
        if room:
            try:
                item = q.get(block=True, timeout=0.05, raw=True)
            except persistqueue.Empty:
                continue
            info = c.client.publish(f"hume-edge/{DEVICE}/{TOPIC}", item["data"], qos=1)
            by_mid[info.mid] = item["pqid"]
            published += 1


class SeqSubscriber:
    """Receive times of sequenced messages and the window the agent reports in its health."""

    def __init__(self, host: str, port: int, device: str) -> None:
        self.times: Dict[int, float] = {}
        self.window = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{time.time()}")
        subscribed = threading.Event()
        self.client.on_message = self.on_message
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe(f"hume-edge/{device}/#", qos=1)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError(f"the subscriber could not subscribe at {host}:{port}")

    def on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        t = time.monotonic()
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        with self.lock:
            if msg.topic.endswith("/health"):
                self.window = int(body.get("mqtt", {}).get("window") or self.window)
            elif "seq" in body:
                self.times.setdefault(int(body["seq"]), t)

    def count(self) -> int:
        """Distinct sequenced messages received so far."""
        with self.lock:
            return len(self.times)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
