"""Regression: paho's ``loop_stop`` race must not end the MQTT task (found by ``scripts/chaos``).

paho-mqtt 2.2's ``loop_stop`` checks ``self._thread``, then joins it; the network thread clears
``_thread`` as it ends, so when a link dies on its own the thread can win that race and ``loop_stop``
raises ``AttributeError: 'NoneType' object has no attribute 'join'`` (eclipse-paho/paho.mqtt.python#872).
In a 10-minute campaign that ended the publisher's task and so the whole agent (exit 1). Here the race
is forced, with a real client and a real broker: the network thread is held at its end until
``loop_stop`` has passed its check, and the ``current_thread()`` call between the check and the join waits
until the thread has cleared ``_thread``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import types
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho_client
import pytest

from agent.config import OutboxConfig
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from tests.support.mosquitto import Broker, mqtt_config
from tests.support.tasks import running
from tests.support.waits import eventually


def _racing_threading(client: paho_client.Client) -> Any:
    """paho's view of ``threading``, where loop_stop's ``current_thread()`` lets the thread end first."""

    def current_thread() -> threading.Thread:
        deadline = time.monotonic() + 5
        while client._thread is not None and time.monotonic() < deadline:
            time.sleep(0.01)  # scenario: holds the caller until paho's thread is gone (the race)
        return threading.current_thread()

    return types.SimpleNamespace(**{**vars(threading), "current_thread": current_thread})


def _held_loop_forever() -> Any:
    """``loop_forever`` that, once the link is gone, returns only after ``loop_stop`` was called."""
    original = paho_client.Client.loop_forever

    def loop_forever(self: paho_client.Client, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        finally:
            deadline = time.monotonic() + 5
            while not self._thread_terminate and time.monotonic() < deadline:
                time.sleep(0.01)  # scenario: paho's thread outlives the close a little (the race)

    return loop_forever


async def test_a_link_lost_while_paho_clears_its_thread_keeps_the_publisher_running(
    mosquitto: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paho_client.Client, "loop_forever", _held_loop_forever())
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    publisher = Publisher(mqtt_config(mosquitto.host, mosquitto.port), "race-test", outbox)
    async with running(publisher) as task:
        assert await eventually(lambda: publisher.status().state == "connected", 10)
        assert publisher._link is not None
        monkeypatch.setattr(paho_client, "threading", _racing_threading(publisher._link.client))
        mosquitto.stop()  # the link dies on its own: paho's thread ends while the publisher closes it
        assert await eventually(lambda: publisher.status().state != "connected", 10)
        await asyncio.sleep(0.5)  # scenario: the time a crash of the publisher would take to show
        assert not task.done(), task.exception()
        monkeypatch.undo()
        mosquitto.start()
        assert await eventually(lambda: publisher.status().state == "connected", 15)
        assert not task.done()
    outbox.close()
