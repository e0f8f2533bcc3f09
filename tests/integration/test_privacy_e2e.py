"""The lawful kiosk end to end: a real mosquitto, the emulator, the agent in-process.

1. Every visit: the retained ``notice`` is active (for that visit) at the broker before the emulator receives
   the visit's first payload, and inactive after the visit ends.
2. Pause via MQTT, via the page (headless Chromium clicking its button) and via a mock GPIO button: no media
   reaches the backend while paused, the emulator receives nothing once the payloads already in flight
   landed, ``status/camera`` and ``status/microphone`` say ``disabled``; resume (MQTT, the button again, or
   the maximum) restores measuring.
3. A camera that fails (a device error) shows ``status/camera = offline`` within seconds, ``online`` again
   once it delivers.

Ordering across the two servers is judged on one clock: the subscriber's paho thread and the emulator's
handler each stamp what they receive with ``time.monotonic()``. A message the subscriber has received was
received by the broker earlier, so "subscriber saw the notice before the emulator saw the payload" is the
conservative form of "the broker had the notice first".
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

import aiohttp
import pytest

from agent import config as config_mod
from agent.capture.synthetic import SceneStep, SyntheticCamera
from agent.hub import Agent
from agent.hume.v0.publish import PublishMessage
from agent.media.frames import Frame
from agent.service import run_agent
from hume_emulator.emulator import SERVER_KEY, Emulator
from tests.support.chromium import chromium, needs_chromium
from tests.support.kiosk import PREFIX, SceneVoice, agent_config, speech, validator
from tests.support.mosquitto import Broker, Subscriber
from tests.support.ports import free_port
from tests.support.proxy import Proxy
from tests.support.waits import eventually

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

Event = Tuple[float, str, Any]
"""(monotonic time, "mqtt" | "hume", what): one line of the merged log."""


class Recorded(list):  # type: ignore[type-arg]
    """The emulator's request list, also stamping each request into the merged log."""

    def __init__(self, log: List[Event]) -> None:
        super().__init__()
        self.log = log

    def append(self, item: Tuple[int, PublishMessage]) -> None:
        self.log.append((time.monotonic(), "hume", item[1]))
        super().append(item)


def record(emulator: Emulator, sub: Subscriber) -> List[Event]:
    log: List[Event] = []
    emulator.app[SERVER_KEY].requests = Recorded(log)
    original = sub.client.on_message

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        log.append((time.monotonic(), "mqtt", (msg.topic[len(PREFIX) :], bytes(msg.payload))))
        original(client, userdata, msg)  # type: ignore[misc]

    sub.client.on_message = on_message
    return log


def latest(sub: Subscriber, suffix: str) -> Optional[bytes]:
    msgs = [m for m in sub.on(suffix) if m.topic == PREFIX + suffix]
    return msgs[-1].payload if msgs else None


def notice_active(sub: Subscriber) -> Optional[bool]:
    payload = latest(sub, "notice")
    return None if payload is None else bool(json.loads(payload)["active"])


async def test_notice_is_published_before_each_visit_and_withdrawn_after(
    emulator: Emulator, mosquitto: Broker, subscriber: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    assert sub.connected.wait(10)
    log = record(emulator, sub)
    # An empty kiosk first: the slow link below needs ~2 s to connect, and until it is connected the
    # broker-down rule (notice durably queued) would rightly let media go (tested in tests/unit).
    scene = [SceneStep(5.0, None), SceneStep(6.0, "a"), SceneStep(6.0, None), SceneStep(6.0, "b")]
    scene.append(SceneStep(3600.0, None))
    camera = SyntheticCamera(640, 480, 2.0, scene=scene)
    # The agent's broker link is slow (each chunk held 1 s each way): a PUBACK takes 2 s, so media sent
    # without waiting for the notice's acknowledgement would reach the emulator first and fail the walk below.
    proxy = Proxy(mosquitto.host, mosquitto.port).start()
    proxy.delay(1.0)
    data = agent_config(emulator, mosquitto, tmp_path, session={"grace_s": 2.0}, mqtt={"port": proxy.port})
    cfg = config_mod.from_dict(data, environ={})
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_agent(cfg, stop, sources=(camera, SceneVoice(camera, speech()))))
    try:
        two_visits_over = await sub.until(
            lambda ms: (
                sum(1 for m in ms if m.topic == PREFIX + "session" and m.json()["event"] == "end") >= 2
                and notice_active(sub) is False
            ),
            timeout=60,
        )
    finally:
        stop.set()
        proxy.resume()
        assert await asyncio.wait_for(task, timeout=30) == 0
        proxy.stop()
    assert two_visits_over, [m.payload for m in sub.on("notice")]

    # Walk the merged log: the notice as the subscriber last saw it, each payload as the emulator got it.
    schema = validator()
    notice: Optional[dict] = None  # type: ignore[type-arg]
    visits: List[str] = []
    firsts = 0
    ended: List[str] = []
    withdrawn_after_end = []
    online = False
    for _, kind, what in sorted(log, key=lambda e: e[0]):
        if kind == "mqtt":
            topic, payload = what
            online = online or (topic == "status" and payload == b"online")
            if topic == "notice":
                notice = json.loads(payload)
                schema.validate(notice)
                if notice["active"]:
                    visits.append(notice["session"])
                elif ended:
                    withdrawn_after_end.append(ended[-1])
            elif topic == "session" and json.loads(payload)["event"] == "end":
                ended.append(json.loads(payload)["session"])
        elif what.reset_stream:  # the first payload of a visit on its socket
            firsts += 1
            assert online, "a visit started before the agent was connected (the scene is too short)"
            assert notice is not None, "a payload reached Hume before any notice"
            assert notice["active"], "a visit's first payload reached Hume while the notice was withdrawn"
            assert notice["session"] == visits[-1]
    starts = [m.json()["session"] for m in sub.on(PREFIX + "session") if m.json()["event"] == "start"]
    assert len(starts) == 2
    assert visits == starts, "one active notice per visit, naming it"
    assert firsts >= 4, "two visits, video and audio each"
    assert ended == starts
    assert withdrawn_after_end == ended, "the notice was withdrawn after each visit ended"
    assert sub.on("notice")[-1].retain or latest(sub, "notice") is not None


async def wait_paused(sub: Subscriber, agent: Agent, emulator: Emulator) -> None:
    """Both capture parts say disabled, the notice is withdrawn, and nothing more reaches the emulator."""
    assert await sub.until(
        lambda ms: (
            latest(sub, "status/camera") == b"disabled" and latest(sub, "status/microphone") == b"disabled"
        ),
        30,
    ), (latest(sub, "status/camera"), latest(sub, "status/microphone"))
    assert await sub.until(lambda ms: notice_active(sub) is False, 10)
    privacy = agent.health().privacy
    assert privacy is not None
    assert privacy.paused
    assert not privacy.notice_active
    at_pause = len(emulator.requests)
    dropped = privacy.dropped_paused

    def dropped_paused() -> int:
        privacy = agent.health().privacy
        return privacy.dropped_paused if privacy is not None else 0

    assert await eventually(lambda: dropped_paused() >= dropped + 3, 20)  # media kept coming, dropped
    settled = len(emulator.requests)
    assert settled - at_pause <= 2, "more than the payloads already in flight (one per socket) landed"
    assert await eventually(lambda: dropped_paused() >= dropped + 6, 20)
    assert len(emulator.requests) == settled, "the emulator received payloads while paused"


async def wait_measuring(sub: Subscriber, emulator: Emulator) -> None:
    assert await sub.until(
        lambda ms: (
            latest(sub, "status/camera") == b"online" and latest(sub, "status/microphone") == b"online"
        ),
        30,
    )
    before = len(emulator.requests)
    assert await eventually(lambda: len(emulator.requests) >= before + 2, 30), "measuring did not resume"
    assert notice_active(sub) is True


@needs_chromium
async def test_pause_from_mqtt_the_page_and_a_gpio_button(
    emulator: Emulator, mosquitto: Broker, subscriber: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpiozero = pytest.importorskip("gpiozero")
    from gpiozero.pins.mock import MockFactory

    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    previous_factory = gpiozero.Device.pin_factory
    pins = gpiozero.Device.pin_factory = MockFactory()
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    camera = SyntheticCamera(640, 480, 2.0, scene=[SceneStep(3600.0, "a")])
    port = free_port()
    data = agent_config(
        emulator,
        mosquitto,
        tmp_path,
        session={"mode": "always"},
        privacy={
            "page": True,
            "page_port": port,
            "gpio_button_pin": 17,
            "gpio_led_pin": 27,
            "max_pause_s": 10.0,
        },
    )
    agents: List[Agent] = []
    sends_while_paused: List[str] = []
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        run_agent(
            config_mod.from_dict(data, environ={}),
            stop,
            sources=(camera, SceneVoice(camera, speech())),
            on_agent=agents.append,
        )
    )
    try:
        assert await eventually(lambda: bool(agents), 10)
        agent = agents[0]
        # What must not run while paused: sending, and any processing of a frame or a chunk.
        watched = [(agent.backend, n) for n in ("send_frame", "send_audio", "send_text")]
        watched += [(agent.pipeline, "process"), (agent.sessions, "observe")]
        for owner, name in watched:
            real = getattr(owner, name)

            def guarded(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                if agent.desk.paused and "face" not in kwargs:  # face=: Hume's reply to earlier media
                    sends_while_paused.append(_name)
                return _real(*args, **kwargs)

            setattr(owner, name, guarded)
        await wait_measuring(sub, emulator)
        assert pins.pin(27).state == 1, "the capture LED is lit while measuring"

        # 1. MQTT pause, MQTT resume.
        sub.publish(PREFIX + "cmd/privacy", b"pause")
        await wait_paused(sub, agent, emulator)
        assert pins.pin(27).state == 0
        sub.publish(PREFIX + "cmd/privacy", b'{"action": "resume"}')
        await wait_measuring(sub, emulator)

        # 2. The page's button, in headless Chromium; the maximum (10 s) ends the pause.
        async with chromium() as browser:
            await browser.navigate(f"http://127.0.0.1:{port}/")
            await browser.wait_for("!document.getElementById('notice').hidden")
            await browser.click("#pause")
            await wait_paused(sub, agent, emulator)
            await browser.wait_for("document.body.dataset.paused === 'true'")
            # The kiosk UI's account cannot end a visitor's pause (#31): refused, with the reason.
            sub.publish(PREFIX + "cmd/privacy", b"resume")
            assert await sub.until(lambda ms: len(sub.on("cmd/result")) >= 3, 10)
            refused = sub.on("cmd/result")[-1].json()
            assert not refused["ok"]
            assert "a visitor paused measuring (on the page)" in refused["error"], refused
            assert agent.desk.paused
            await wait_measuring(sub, emulator)  # by the maximum: nobody resumed
            await browser.wait_for("document.body.dataset.paused === 'false'", timeout_s=5)

        # 3. The GPIO button: press to pause, press again to resume.
        pins.pin(17).drive_low()
        pins.pin(17).drive_high()
        await wait_paused(sub, agent, emulator)
        pins.pin(17).drive_low()
        pins.pin(17).drive_high()
        await wait_measuring(sub, emulator)
    finally:
        stop.set()
        code = await asyncio.wait_for(task, timeout=30)
        gpiozero.Device.pin_factory.reset()
        gpiozero.Device.pin_factory = previous_factory
    assert code == 0
    assert sends_while_paused == [], "media was processed or sent while paused"
    assert agent.desk.pause.pauses == 3
    results = [m.json() for m in sub.on("cmd/result")]
    assert [(r["ok"], r.get("action")) for r in results] == [
        (True, "pause"),
        (True, "resume"),
        (False, "resume"),
    ]


async def test_a_script_cannot_hold_the_kiosk_paused_through_the_page(
    emulator: Emulator,
    mosquitto: Broker,
    subscriber: Any,
    tmp_path: Path,
    *,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Any local process could ``POST /pause`` at every automatic resume and hold the kiosk paused for good
    (#31). With the default ``privacy.page_pauses_per_hour`` (6), the 7th page pause in an hour is refused:
    429, ``Retry-After``, a message for the visitor, a log line, counted in the published health; the kiosk
    measures. Five pauses end by the GPIO button (quick), the sixth by the maximum (10 s): the 7th POST is
    sent right at that automatic resume, as the script would."""
    gpiozero = pytest.importorskip("gpiozero")
    from gpiozero.pins.mock import MockFactory

    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    previous_factory = gpiozero.Device.pin_factory
    pins = gpiozero.Device.pin_factory = MockFactory()
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    camera = SyntheticCamera(640, 480, 2.0, scene=[SceneStep(3600.0, "a")])
    port = free_port()
    data = agent_config(
        emulator,
        mosquitto,
        tmp_path,
        session={"mode": "always"},
        privacy={"page": True, "page_port": port, "gpio_button_pin": 17, "max_pause_s": 10.0},
    )
    agents: List[Agent] = []
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="agent.privacy.desk")
    task = asyncio.ensure_future(
        run_agent(
            config_mod.from_dict(data, environ={}),
            stop,
            sources=(camera, SceneVoice(camera, speech())),
            on_agent=agents.append,
        )
    )
    url = f"http://127.0.0.1:{port}/pause"
    headers = {"X-Hume-Edge": "pause"}
    try:
        assert await eventually(lambda: bool(agents), 10)
        agent = agents[0]
        await wait_measuring(sub, emulator)
        async with aiohttp.ClientSession() as http:
            for n in range(1, 7):
                async with http.post(url, headers=headers) as resp:
                    assert resp.status == 200, (n, resp.status, await resp.text())
                assert await eventually(lambda: agent.desk.paused, 10), n
                if n < 6:
                    pins.pin(17).drive_low()  # a visitor's press again ends it
                    pins.pin(17).drive_high()
                    assert await eventually(lambda: not agent.desk.paused, 10), n
            assert await eventually(lambda: not agent.desk.paused, 30), "the maximum did not end the pause"
            async with http.post(url, headers=headers) as resp:
                status, body, retry = resp.status, await resp.json(), resp.headers.get("Retry-After")
            assert status == 429, (status, body)
            assert body["ok"] is False
            assert body["paused"] is False
            assert "privacy.page_pauses_per_hour = 6" in body["error"]
            assert body["retry_after_s"] == int(retry or 0) > 0
            assert "Pausing is not available right now" in body["message"]
            assert f"{-(-body['retry_after_s'] // 60)} min" in body["message"]
            assert not agent.desk.paused
            await wait_measuring(sub, emulator)
            for _ in range(20):  # a flood of refusals: one log line, every one counted
                async with http.post(url, headers=headers) as resp:
                    assert resp.status == 429

        def refused_in_health() -> bool:
            payload = latest(sub, "health")
            return payload is not None and json.loads(payload)["privacy"]["page_pauses_refused"] == 21

        assert await sub.until(lambda ms: refused_in_health(), 15), latest(sub, "health")
    finally:
        stop.set()
        code = await asyncio.wait_for(task, timeout=30)
        gpiozero.Device.pin_factory.reset()
        gpiozero.Device.pin_factory = previous_factory
    assert code == 0
    assert agent.desk.pause.pauses == 6
    said = [r.getMessage() for r in caplog.records if "from the page refused" in r.getMessage()]
    assert len(said) == 1, said


class FailingCamera(SyntheticCamera):
    """A synthetic camera whose device fails on demand (as a USB camera pulled out does)."""

    unplugged = False

    def _read(self) -> Frame:
        if self.unplugged:
            raise OSError("camera device gone")
        return super()._read()

    def _open(self) -> None:
        if self.unplugged:
            raise OSError("no such device")
        super()._open()


async def test_a_failing_camera_shows_offline_then_online(
    emulator: Emulator, mosquitto: Broker, subscriber: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    camera = FailingCamera(640, 480, 2.0, scene=[SceneStep(3600.0, None)])
    data = agent_config(emulator, mosquitto, tmp_path, microphone={"source": "none"})
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        run_agent(config_mod.from_dict(data, environ={}), stop, sources=(camera, None))
    )
    try:
        assert await sub.until(lambda ms: latest(sub, "status/camera") == b"online", 30)
        assert latest(sub, "status/microphone") == b"disabled"  # none configured
        assert latest(sub, "status/hume") in (b"online", b"offline")
        camera.unplugged = True
        assert await sub.until(lambda ms: latest(sub, "status/camera") == b"offline", 5), "not within seconds"
        camera.unplugged = False
        assert await sub.until(lambda ms: latest(sub, "status/camera") == b"online", 30)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, timeout=30) == 0
    assert latest(sub, "status/camera") == b"stopped"  # a clean stop: nothing measures any more
