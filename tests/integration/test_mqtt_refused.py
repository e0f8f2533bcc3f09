"""Issue #28: a stamped ``seq`` never vanishes uncounted, even when the broker refuses its message.

Real mosquitto 2.0.11 with an ACL that grants the agent its summaries but not ``notice``: over MQTT 5 the
broker answers that PUBLISH with PUBACK 0x87 (Not authorized). Resending cannot help, so the row leaves
the outbox; before, it left as if delivered: a gap at the consumer with ``dropped`` 0 in health, exactly
what a consumer cannot tell from a loss. Now it is counted as dropped (``refused``), persisted like the
bounds' drops, so stamped = delivered + dropped holds and every gap shows in health.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from agent.config import OutboxConfig
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from tests.support.mosquitto import Broker, Subscriber, mqtt_config
from tests.support.tasks import running
from tests.support.waits import eventually

TIMEOUT_S = 30.0
BASE = "hume-edge/kiosk1"


async def test_a_refused_message_is_counted_as_dropped_not_passed_off_as_delivered(
    tmp_path: Path, mosquitto_factory: Callable[..., Broker], subscriber: Callable[..., Subscriber]
) -> None:
    acl = tmp_path / "acl"
    # Anonymous clients (the agent and the test's subscriber): everything of kiosk1 but writing its notice.
    acl.write_text(
        f"topic read {BASE}/#\ntopic write {BASE}/summary/#\ntopic write {BASE}/status\n"
        f"topic write {BASE}/health\n",
        encoding="utf-8",
    )
    broker = mosquitto_factory(extra=[f"acl_file {acl}"])
    sub = subscriber(broker, [f"{BASE}/#"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    stamped = [
        outbox.put("summary/face", {"i": 1}),
        outbox.put("notice", {"active": True}, retain=True),
        outbox.put("summary/face", {"i": 2}),
    ]
    pub = Publisher(mqtt_config(broker.host, broker.port), "kiosk1", outbox)
    async with running(pub):
        assert await eventually(lambda: pub.status().rejected == 1 and outbox.depth == 0, TIMEOUT_S)
        assert await sub.until(lambda ms: len([m for m in ms if "/summary/" in m.topic]) == 2, TIMEOUT_S)
        health = pub.status()
    delivered = {int(m.json()["seq"]) for m in sub.messages if m.topic.startswith(f"{BASE}/summary/")}
    assert delivered == {stamped[0], stamped[2]}
    assert outbox.dropped()["refused"] == 1
    assert health.dropped == 1, "a refused message must show as dropped, not as delivered"
    assert len(stamped) == len(delivered) + sum(outbox.dropped().values())
    outbox.close()
    assert Outbox(tmp_path / "outbox.sqlite", OutboxConfig()).dropped()["refused"] == 1  # persisted
