"""No audio captured before a visit's notice was out leaves for Hume, on either API.

A microphone hands over a chunk once its *last* sample is captured (1 s chunks by default), so the first
chunk after the moment media became allowed holds up to a second from before it. Frames were already
checked by capture order (``test_visit_first_frame``); audio chunks were sent whole, so a visitor who was
talking when the visit started had up to a second of speech from before the notice sent to Hume (and the
silence gate's pre-roll could reach back as far).

Here the visitor talks without a break (a seeded noise at about -20 dBFS: voiced to the gate, and every
100 ms of it unique, so each sample that reaches Hume can be traced to its capture time) and the session is
started by ``cmd/session`` 0.6 s into a chunk: that chunk, handed over after the notice is out, straddles
the notice's moment by about 0.6 s.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any, AsyncGenerator, List, Optional, Tuple

import numpy as np
import pytest

from agent import config as config_mod
from agent import service
from agent.capture.microphone import AudioSource
from agent.config import Config
from agent.hub import Agent
from agent.media.audio import AUDIO_RATE, AudioChunk, decode_wav
from hume_emulator.emulator import Emulator
from hume_emulator.v1.emulator import EmulatorV1
from tests.support.emulator import TEST_KEY
from tests.support.mosquitto import Broker, Subscriber
from tests.support.recorder import Recorder
from tests.support.waits import eventually

pytestmark = pytest.mark.timeout(120)

CHUNK_MS = 1000
DEVICE = "notice-audio-kiosk"
PREFIX = f"hume-edge/{DEVICE}/"
SIGNAL = np.clip(np.random.default_rng(11).normal(0, 3000, 120 * AUDIO_RATE), -32768, 32767).astype("<i2")
SIGNAL_BYTES = SIGNAL.tobytes()
SAMPLE_S = 1 / AUDIO_RATE


class Talker(AudioSource):
    """Plays :data:`SIGNAL` in real time; sample ``i`` is captured at ``started_mono + i / AUDIO_RATE``."""

    def __init__(self) -> None:
        super().__init__(CHUNK_MS)
        self.started_mono = 0.0
        self.handed_over = asyncio.Event()
        """Set each time a chunk was handed over (the test clears it to wait for the next)."""

    def describe(self) -> str:
        return "a visitor talking without a break"

    async def chunks(self) -> AsyncGenerator[AudioChunk, None]:
        n = AUDIO_RATE * CHUNK_MS // 1000
        self.started_mono, started_wall = time.monotonic(), time.time()
        k = 0
        while True:
            due_s = self.started_mono + (k + 1) * CHUNK_MS / 1000 - time.monotonic()
            await asyncio.sleep(max(0.0, due_s))  # scenario: a microphone's real-time pace
            at_s = k * CHUNK_MS / 1000
            pcm = SIGNAL_BYTES[k * n * 2 : (k + 1) * n * 2]
            self.handed_over.set()
            yield AudioChunk(pcm, started_wall + at_s, self.started_mono + at_s)
            k += 1

    def captured_mono(self, pcm: bytes) -> float:
        """When the first sample of ``pcm`` (a contiguous part of the signal) was captured."""
        at = SIGNAL_BYTES.find(pcm[:64])
        assert at >= 0, "audio that is not the visitor's was sent"
        assert at % 2 == 0, "audio out of sample alignment was sent"
        assert SIGNAL_BYTES[at : at + len(pcm)] == pcm, "a piece that is not contiguous audio was sent"
        return self.started_mono + at // 2 * SAMPLE_S


class Handed(Recorder):
    """The real backend, with every audio piece handed to it."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.audio: List[bytes] = []

    def send_audio(self, pcm16: bytes, captured_at: float, session_id: Optional[str]) -> None:
        self.audio.append(pcm16)
        super().send_audio(pcm16, captured_at, session_id)


def agent_cfg(hume: dict, broker: Broker, tmp: Any) -> Config:
    return config_mod.from_dict(
        {
            "device_id": DEVICE,
            "hume": {"api_key": TEST_KEY, "models": ["prosody"], **hume},
            "mqtt": {"host": broker.host, "port": broker.port},
            "outbox": {"path": str(tmp / "outbox.sqlite")},
            "session": {"mode": "command", "hold_commanded": True},
            "microphone": {"chunk_ms": CHUNK_MS},
        },
        environ={},
    )


async def talk_into_a_visit(
    cfg: Config, broker: Broker, subscriber: Any, monkeypatch: pytest.MonkeyPatch, tmp: Any, *, sent_s: float
) -> Tuple[Agent, Handed, Talker, float]:
    """Start a visit mid-talk; return when ``sent_s`` of audio went to the backend: the agent, what it was
    handed, the talker and the monotonic moment media became allowed."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp))
    sub: Subscriber = subscriber(broker, [PREFIX + "#"])
    assert sub.connected.wait(10)
    talker = Talker()
    agents: List[Agent] = []
    backends: List[Handed] = []
    allowed_at: List[float] = []

    def seen(agent: Agent) -> None:
        agents.append(agent)
        desk = agent.desk
        desk.listeners.append(lambda: allowed_at.append(time.monotonic()) if desk.media_allowed else None)

    def recording(c: Config) -> Any:
        backends.append(Handed(service.make_backend(c)))
        return backends[0]

    stop = asyncio.Event()
    task = asyncio.ensure_future(
        service.run_agent(cfg, stop, sources=(None, talker), make_backend=recording, on_agent=seen)
    )
    try:
        assert await sub.until(
            lambda ms: any(m.topic == PREFIX + "status" and m.payload == b"online" for m in ms), 30
        )
        talker.handed_over.clear()
        await asyncio.wait_for(talker.handed_over.wait(), 10)
        await asyncio.sleep(0.6)  # scenario: the visit starts well into a chunk, which then straddles it
        sub.publish(PREFIX + "cmd/session", b"start")
        await eventually(
            lambda: bool(backends) and sum(map(len, backends[0].audio)) >= sent_s * AUDIO_RATE * 2,
            60.0,
            what=f"{sent_s} s of the visit's audio sent",
        )
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    assert len(allowed_at) == 1, allowed_at
    return agents[0], backends[0], talker, allowed_at[0]


def check(agent: Agent, talker: Talker, allowed_at: float, pieces: List[bytes]) -> None:
    starts = [talker.captured_mono(pcm) for pcm in pieces]
    early = [round(allowed_at - s, 3) for s in starts if s < allowed_at - SAMPLE_S]
    assert not early, f"audio captured up to {max(early)} s before the visit's notice was out was sent"
    # Nothing more than that was held back: the visit's audio is sent from the moment it may be.
    assert min(starts) - allowed_at < 0.1
    health = agent.health()
    assert health.microphone.audio_unannounced_ms > 0
    assert agent.gate.drops["unannounced"]["audio"] >= 1


async def test_v0_sends_no_audio_captured_before_the_notice(
    emulator: Emulator, mosquitto: Broker, subscriber: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = agent_cfg({"backend": "v0", "v0": {"url": emulator.url}}, mosquitto, tmp_path)
    agent, _handed, talker, allowed_at = await talk_into_a_visit(
        cfg, mosquitto, subscriber, monkeypatch, tmp_path, sent_s=2.0
    )
    received = []  # what reached the emulator, not only what the backend was handed
    for _, msg in emulator.requests:
        if msg.models and "prosody" in msg.models.enabled and msg.data:
            samples, _ = decode_wav(base64.b64decode(msg.data))
            received.append(samples.astype("<i2").tobytes())
    assert received
    check(agent, talker, allowed_at, received)


async def test_v1_sends_no_audio_captured_before_the_notice(
    emulator_v1: EmulatorV1,
    mosquitto: Broker,
    subscriber: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hume = {"backend": "v1", "v1": {"url": emulator_v1.base_url}}
    agent, handed, talker, allowed_at = await talk_into_a_visit(
        agent_cfg(hume, mosquitto, tmp_path), mosquitto, subscriber, monkeypatch, tmp_path, sent_s=2.0
    )
    check(agent, talker, allowed_at, handed.audio)  # the v1 client streams what it is handed, in order
