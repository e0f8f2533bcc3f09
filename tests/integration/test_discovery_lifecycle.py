"""Home Assistant discovery over a real mosquitto, read as HA reads it: the retained config and health.

1. A restart with one model fewer leaves a retained config in which that model's components are removal
   stubs (``{"p": "sensor"}``), under the hashed topic of a device id with a dot.
2. A backlog drained after connecting: the retained ``health`` shows the empty queue at once, not after
   ``mqtt.health_interval_s`` (60 s here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from agent.config import OutboxConfig
from agent.mqtt.discovery import config_topic, node_id
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from tests.support.mosquitto import Broker, Received, Subscriber, mqtt_config
from tests.support.tasks import running

TIMEOUT_S = 15.0
DEVICE = "kiosk.lobby"
BASE = f"hume-edge/{DEVICE}"
PREFIX = node_id(DEVICE)


async def retained_config(broker: Broker, subscriber: Callable[..., Subscriber]) -> Dict[str, Any]:
    """What HA reads when it subscribes to discovery: every retained config under the prefix."""
    sub = subscriber(broker, ["homeassistant/#"])
    topic = config_topic("homeassistant", DEVICE)
    assert await sub.until(lambda ms: any(m.topic == topic for m in ms), TIMEOUT_S)
    assert [m.topic for m in sub.messages] == [topic], "only the current config is retained"
    return dict(sub.messages[0].json())


async def test_restart_with_one_model_fewer_removes_its_components(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    watch = subscriber(mosquitto, [f"{BASE}/status"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    cfg = mqtt_config(mosquitto.host, mosquitto.port)
    for life, models in enumerate((("face", "prosody", "language"), ("face", "prosody"))):
        pub = Publisher(cfg, DEVICE, outbox, models=models)
        async with running(pub):
            assert await watch.until(
                lambda ms, n=life + 1: [m.payload for m in ms].count(b"online") >= n, TIMEOUT_S
            )
            config = await retained_config(mosquitto, subscriber)
        language = (config["cmps"][f"{PREFIX}_language_emotion"], config["cmps"][f"{PREFIX}_language_score"])
        if "language" in models:
            assert all(c["p"] == "sensor" and c["state_topic"] == f"{BASE}/state/language" for c in language)
        else:
            assert language == ({"p": "sensor"}, {"p": "sensor"}), "removed: the platform alone"
        assert config["cmps"][f"{PREFIX}_face_score"]["state_topic"] == f"{BASE}/state/face"
    outbox.close()


def depths(msgs: List[Received]) -> List[Tuple[bool, int]]:
    return [
        (m.retain, int(json.loads(m.payload)["outbox"]["depth"])) for m in msgs if m.topic.endswith("/health")
    ]


async def test_health_is_republished_when_a_backlog_drains(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    outbox.put_many([("summary/face", {"i": i}, False) for i in range(3000)])  # queued while offline
    sub = subscriber(mosquitto, [f"{BASE}/health"])
    pub = Publisher(mqtt_config(mosquitto.host, mosquitto.port, health_interval_s=60.0), DEVICE, outbox)
    async with running(pub):
        assert await sub.until(lambda ms: len(depths(ms)) >= 1, TIMEOUT_S)
        assert depths(sub.messages)[0][1] > 0, "precondition: the first health shows the backlog"
        assert await sub.until(lambda ms: depths(ms)[-1][1] == 0, TIMEOUT_S), depths(sub.messages)
        late = subscriber(mosquitto, [f"{BASE}/health"])
        assert await late.until(lambda ms: bool(depths(ms)), TIMEOUT_S)
        assert depths(late.messages) == [(True, 0)], "the retained health shows the drained queue"
    outbox.close()
