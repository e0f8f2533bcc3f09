"""Issue #28: a replayed boundary never supersedes a newer one in the broker's retained store.

The retained ``notice`` is the deployer's record of what people were told; ``session`` says whether a visit
is on. With ``live_first`` a newer retained message can reach the broker before an older one still in the
backlog; before, only a message of the *same* connection made the older one go without the retain flag, so
when the link dropped between the two, the next connection replayed the older one retained and the broker
kept it: the retained notice went back to "withdrawn" while measuring was on. Now the outbox remembers the
newest seq queued retained per topic (durably, with the put), and anything older goes without the flag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from agent.config import OutboxConfig
from agent.messages import OutMessage
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from tests.support.mosquitto import Broker, Subscriber, mqtt_config
from tests.support.proxy import Proxy
from tests.support.tasks import running
from tests.support.waits import eventually

TIMEOUT_S = 30.0
BASE = "hume-edge/kiosk1"


def _seqs(sub: Subscriber) -> set:  # type: ignore[type-arg]
    return {json.loads(m.payload)["seq"] for m in sub.on("/notice")}


async def test_an_older_retained_notice_replayed_after_a_reconnect_does_not_replace_the_newer(
    tmp_path: Path, mosquitto: Broker, subscriber: Callable[..., Subscriber]
) -> None:
    sub = subscriber(mosquitto, [f"{BASE}/notice"])
    outbox = Outbox(tmp_path / "outbox.sqlite", OutboxConfig())
    # The backlog, queued before the connect: the connect's first drain step sends the filler (the one
    # publish in flight), so the older notice still waits when the live one is queued.
    outbox.put("summary/face", {"filler": True}, retain=False)
    older = outbox.put("notice", {"active": False}, retain=True)
    with Proxy(mosquitto.host, mosquitto.port) as proxy:
        # One publish a second, one in flight: the live notice goes first, the backlog's a second later.
        cfg = mqtt_config(proxy.host, proxy.port, inflight_window=1, max_publish_rate_per_s=1.0)
        pub = Publisher(cfg, "kiosk1", outbox)
        async with running(pub):
            await eventually(lambda: pub.connected, TIMEOUT_S, what="connected")
            newer = pub.enqueue(OutMessage("notice", {"active": True}, retain=True))
            await eventually(lambda: newer in _seqs(sub), TIMEOUT_S, what="the live notice delivered")
            assert older not in _seqs(sub), "the backlog went before the live notice: no race to test"
            proxy.reset(refuse=True)  # the link drops before the older one went out
            await eventually(lambda: not pub.connected, TIMEOUT_S, what="the link down")
            proxy.resume()
            await eventually(lambda: older in _seqs(sub), TIMEOUT_S, what="the backlog replayed")
            await eventually(lambda: outbox.depth == 0, TIMEOUT_S, what="the outbox drained")
    late = subscriber(mosquitto, [f"{BASE}/notice"])  # reads the broker's retained notice
    assert await late.until(lambda ms: len(ms) >= 1, TIMEOUT_S)
    kept = json.loads(late.messages[0].payload)
    assert late.messages[0].retain
    assert (kept["seq"], kept["active"]) == (newer, True), f"the broker kept an older notice: {kept}"
    outbox.close()
