"""Reconnecting promptly to a broker that comes back, against a real mosquitto stopped and started again.

The publisher runs with the shipped defaults (``reconnect_min_s`` 1 s, ``reconnect_max_s`` 60 s), under
which the backoff used to reach 8-16 s during a 20 s outage, so the agent came back up to 10 s after the
broker did. What is asserted is the protocol timer itself, not wall-clock time: every delay the publisher
chose while the broker that had served it was restarting is at most ``FAST_RETRY_S`` (1 s), and the first
attempt after the broker accepts connections again succeeds. The time from the broker's start to the
retained ``online`` is printed (measured here: see the report), not asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading
import time
from pathlib import Path
from typing import Callable, List

import pytest

from agent.config import MqttConfig, OutboxConfig
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import FAST_RETRY_S, Publisher
from tests.support.mosquitto import Broker, Subscriber, mqtt_config
from tests.support.tasks import running
from tests.support.waits import eventually

pytestmark = pytest.mark.timeout(120)

OUTAGE_S = 20.0
"""The scenario of the report: the broker is down this long (a restart, an upgrade)."""
TIMEOUT_S = 15.0
BASE = "hume-edge/kiosk1"
DELAY = re.compile(r"next MQTT connection attempt in ([0-9.]+) s")


def delays(caplog: pytest.LogCaptureFixture) -> List[float]:
    return [float(m.group(1)) for r in caplog.records if (m := DELAY.match(r.getMessage()))]


@pytest.mark.slow
async def test_a_broker_back_after_20_s_gets_a_fast_retry_and_a_sensible_log(
    tmp_path: Path,
    mosquitto: Broker,
    subscriber: Callable[..., Subscriber],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.mqtt")
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, health_interval_s=60.0)
    assert (cfg.reconnect_min_s, cfg.reconnect_max_s) == (1.0, 60.0), "the shipped defaults"
    pub = Publisher(cfg, "kiosk1", outbox)
    async with running(pub):
        first = subscriber(mosquitto, [f"{BASE}/status"])
        assert await first.until(lambda ms: any(m.payload == b"online" for m in ms), TIMEOUT_S)
        mosquitto.stop()  # not persistent: the retained "online" goes with it
        await asyncio.sleep(OUTAGE_S)  # scenario: the outage, not a wait for an event
        before_start = len(delays(caplog))
        mosquitto.start()
        started = time.monotonic()
        back = subscriber(mosquitto, [f"{BASE}/status"])
        assert await back.until(lambda ms: any(m.payload == b"online" for m in ms), TIMEOUT_S)
        online_after_s = time.monotonic() - started
        chosen = delays(caplog)
    outbox.close()
    print(f"\nbroker start -> retained online: {online_after_s:.2f} s; delays chosen: {chosen}")

    during = chosen[1:before_start]  # [0] follows the lost connection; the rest, the restarting broker
    assert len(during) >= 10, f"the broker was retried only {len(during)} times in {OUTAGE_S:g} s"
    assert max(chosen[: before_start + 1]) <= FAST_RETRY_S, chosen
    assert len(chosen) - before_start <= 1, "more than one attempt after the broker was accepting again"
    messages = [r.getMessage() for r in caplog.records]
    assert any("unreachable: Connection refused" in m for m in messages), messages
    assert not any("is it an MQTT port" in m for m in messages), "a config hint for a broker that worked"


class Hangup:
    """A TCP listener that accepts and closes at once: a broker dying in the handshake, or not MQTT."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self._thread = threading.Thread(target=self._run, name="hangup", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)


def cut_short(caplog: pytest.LogCaptureFixture, level: int = logging.ERROR) -> List[str]:
    """Problems logged at ``level`` or above about a connection closed between TCP accept and CONNACK."""
    msgs = [r.getMessage() for r in caplog.records if r.levelno >= level and r.name == "agent.mqtt.publisher"]
    return [m for m in msgs if "handshake" in m or "before CONNACK" in m]


@pytest.mark.parametrize("worked_before", [True, False])
async def test_a_handshake_cut_short_is_named_for_what_it_is(
    tmp_path: Path,
    mosquitto: Broker,
    subscriber: Callable[..., Subscriber],
    caplog: pytest.LogCaptureFixture,
    worked_before: bool,
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.mqtt")
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    pub = Publisher(mqtt_config(mosquitto.host, mosquitto.port), "kiosk1", outbox)
    # A broker that served the agent a moment ago is restarting: said at debug while the fast retries
    # last (the reconnect then says it in one info line); one that never did is an error at once.
    level = logging.DEBUG if worked_before else logging.ERROR
    if not worked_before:
        mosquitto.stop()
    hangup = None
    try:
        async with running(pub):
            if worked_before:
                sub = subscriber(mosquitto, [f"{BASE}/status"])
                assert await sub.until(lambda ms: any(m.payload == b"online" for m in ms), TIMEOUT_S)
                sub.close()  # only the agent connects to what follows
                mosquitto.stop()
            hangup = Hangup(mosquitto.port)
            assert await eventually(lambda: bool(cut_short(caplog, level)), TIMEOUT_S), caplog.text
    finally:
        if hangup is not None:
            hangup.close()
        outbox.close()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    said = cut_short(caplog, level)
    if worked_before:
        assert "probably restarting or overloaded" in said[0]
        assert not any("is it an MQTT port" in m for m in messages)
        assert not messages, "a restarting broker is not an error within the fast-retry window"
    else:
        assert "is it an MQTT port, and does mqtt.tls match it?" in said[0]
