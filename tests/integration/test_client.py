"""The v1 backend against the v1 emulator: visits, billing-aware session opening, boundaries, reconnects."""

from __future__ import annotations

import asyncio
import re
import time
from typing import AsyncIterator, Callable, List

import pytest
import pytest_asyncio

from agent.aio import cancel_and_wait, spawn
from agent.config import HumeConfig, HumeV1Config
from agent.errors import HumeAuthError, HumeProtocolError
from agent.hume.types import Observation
from agent.hume.v1.client import V1Backend
from hume_emulator.v1.emulator import EmulatorV1, EmulatorV1Settings
from tests.support.emulator import astronaut_bgr, encode_image
from tests.support.emulator_v1 import TEST_KEY, espeak_pcm
from tests.support.tasks import STOP_TIMEOUT_S
from tests.support.waits import eventually

TIMEOUT_S = 20.0
JPEG = encode_image(astronaut_bgr())


def config(emu: EmulatorV1, **overrides: object) -> HumeConfig:
    v1 = {"url": emu.base_url, "min_session_s": 1.0}
    for key in list(overrides):
        if key in ("min_session_s", "face_threshold", "measurement_timer_ms", "connect_timeout_s"):
            v1[key] = overrides.pop(key)  # type: ignore[assignment]
    values = {"backend": "v1", "api_key": TEST_KEY, "v1": HumeV1Config(**v1), **overrides}  # type: ignore[arg-type]
    return HumeConfig(**values)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def running() -> AsyncIterator[Callable[[V1Backend], asyncio.Task[None]]]:
    tasks: List[asyncio.Task[None]] = []

    def start(backend: V1Backend) -> asyncio.Task[None]:
        tasks.append(spawn(backend.run(), "test.V1Backend"))
        return tasks[-1]

    yield start  # backends started mid-test and stopped at its end, as tests.support.tasks.running does
    assert not await cancel_and_wait(tasks, timeout_s=STOP_TIMEOUT_S)


def visit(backend: V1Backend, session_id: str, pcm: bytes, t0: float, frames: bool = True) -> None:
    """Hand over a visit's media as capture would: 1 s chunks of audio and a frame per second."""
    for i in range(0, len(pcm), 32000):
        at = t0 + i / 32000
        backend.send_audio(pcm[i : i + 32000], at, session_id)
        if frames:
            backend.send_frame(JPEG, at, session_id)


async def observations(backend: V1Backend, n: int) -> List[Observation]:
    return [await asyncio.wait_for(backend.receive(), TIMEOUT_S) for _ in range(n)]


async def test_nothing_is_sent_without_a_visitor_or_for_a_short_visit(
    emulator_v1: EmulatorV1, running: Callable[[V1Backend], object]
) -> None:
    backend = V1Backend(config(emulator_v1, min_session_s=5.0))
    running(backend)
    await asyncio.sleep(0.3)  # scenario: time a backend would need to connect wrongly, with nobody there
    assert emulator_v1.connections == 0
    visit(backend, "passer-by", espeak_pcm("Hi")[:64000], time.time())  # 2 s of presence < 5 s
    backend.mark_boundary()
    await asyncio.sleep(0.3)  # scenario: time a backend would need to send a short visit wrongly
    assert emulator_v1.connections == 0
    assert dict(backend.status().counters)["short_visits"] == 1


async def test_visitor_boundary_closes_the_sessions_and_the_next_visitor_gets_new_ones(
    emulator_v1: EmulatorV1, running: Callable[[V1Backend], object]
) -> None:
    backend = V1Backend(config(emulator_v1))
    running(backend)
    pcm = espeak_pcm("Hello there, I am so happy to see you. What a lovely day it is.")
    for name in ("visitor-a", "visitor-b"):
        visit(backend, name, pcm, time.time())
        backend.mark_boundary()
    await eventually(lambda: len(emulator_v1.sessions) == 4, TIMEOUT_S, what="len(emulator_v1.sessions) == 4")
    sessions = emulator_v1.sessions
    assert {s.reason for s in sessions} == {"client_request"}
    assert sorted(s.endpoint for s in sessions) == ["audio", "audio", "video", "video"]
    assert len({s.session_id for s in sessions}) == 4
    for conn in {s.connection for s in sessions}:
        kinds = [e.kind for e in emulator_v1.requests if e.connection == conn]
        assert kinds[0] == "session.update"
        assert kinds[-1] == "session.close"
        assert set(kinds[1:-1]) == {"frame"}
    audio = [s for s in sessions if s.endpoint == "audio"]
    assert all(s.received["audio_duration_ms"] == len(pcm) // 32 for s in audio)
    got: List[Observation] = []
    while len({(o.model, o.session_id) for o in got}) < 4:
        got += await observations(backend, 1)
    assert {o.model for o in got} == {"prosody", "face"}
    faces = [o for o in got if o.model == "face"]
    ids = {(o.session_id, m.face_id) for o in faces for m in o.measurements}
    assert all(re.fullmatch(r"face_0@[0-9a-f]{6}", str(i)) for _, i in ids), ids
    assert len({i for _, i in ids}) == len({s for s, _ in ids}) == 2, "one face id per visit, never shared"
    assert "error_rate_limited" not in dict(backend.status().counters)


async def test_server_shutdown_mid_visit_reconnects_with_a_new_session(
    emulator_v1: EmulatorV1, running: Callable[[V1Backend], object]
) -> None:
    backend = V1Backend(
        config(emulator_v1, models=("face",), min_session_s=0.0), first_delay_range_s=(0.05, 0.1)
    )
    running(backend)
    t0 = time.time()
    backend.send_frame(JPEG, t0, "visitor")
    await observations(backend, 1)
    assert await emulator_v1.shutdown_sessions() == 1
    for i in range(1, 100):
        backend.send_frame(JPEG, t0 + i, "visitor")
        await asyncio.sleep(0.1)  # scenario: a camera's next frame
        if emulator_v1.connections == 2 and emulator_v1.state.live:
            break
    obs = await observations(backend, 1)
    assert obs[0].session_id == "visitor"
    assert [s.reason for s in emulator_v1.sessions] == ["server_shutdown"]
    assert emulator_v1.connections == 2


async def test_refused_key_fails_run_at_the_first_connection(
    emulator_v1: EmulatorV1, running: Callable[[V1Backend], asyncio.Task[None]]
) -> None:
    backend = V1Backend(config(emulator_v1, api_key="wrong", min_session_s=0.0))
    task = running(backend)
    backend.send_frame(JPEG, time.time(), "visitor")
    with pytest.raises(HumeAuthError, match="401"):
        await asyncio.wait_for(task, TIMEOUT_S)


async def test_rate_limited_audio_is_resent_so_the_stream_stays_continuous(
    emulator_v1: EmulatorV1, running: Callable[[V1Backend], object]
) -> None:
    emulator_v1.faults.rate_limit_frames = 3
    backend = V1Backend(config(emulator_v1, models=("prosody",)))
    running(backend)
    pcm = espeak_pcm("Hello, how are you today?")
    visit(backend, "visitor", pcm, time.time(), frames=False)
    backend.mark_boundary()
    await eventually(lambda: len(emulator_v1.sessions) == 1, TIMEOUT_S, what="len(emulator_v1.sessions) == 1")
    (session,) = emulator_v1.sessions
    frames = -(-len(pcm) // 3200)
    assert session.received == {"audio_duration_ms": len(pcm) // 32, "frames": frames}
    sent = [e for e in emulator_v1.requests if e.kind == "frame"]
    assert len(sent) == frames + 3
    counters = dict(backend.status().counters)
    assert counters["error_rate_limited"] == 3
    assert counters["audio_frames_resent"] == 3


async def test_rate_limited_video_frames_are_dropped_not_resent(
    emulator_v1: EmulatorV1, running: Callable[[V1Backend], object]
) -> None:
    emulator_v1.faults.rate_limit_frames = 2
    backend = V1Backend(config(emulator_v1, models=("face",), min_session_s=0.0))
    running(backend)
    t0 = time.time()
    for i in range(4):
        backend.send_frame(JPEG, t0 + i, "visitor")
        await asyncio.sleep(0.5)  # scenario: frames half a second apart, as a camera sends them
    got = await observations(backend, 2)
    backend.mark_boundary()
    await eventually(lambda: len(emulator_v1.sessions) == 1, TIMEOUT_S, what="len(emulator_v1.sessions) == 1")
    assert [o.captured_at for o in got] == [t0 + 2, t0 + 3]
    assert emulator_v1.sessions[0].received == {"frames": 2}
    assert dict(backend.status().counters)["video_frames_sent"] == 4


async def test_idle_timeout_mid_visit_opens_a_new_session_when_media_returns(
    running: Callable[[V1Backend], object],
) -> None:
    async with EmulatorV1(EmulatorV1Settings(api_keys=(TEST_KEY,), idle_timeout_s=0.3)) as emu:
        backend = V1Backend(config(emu, models=("face",), min_session_s=0.0))
        running(backend)
        t0 = time.time()
        backend.send_frame(JPEG, t0, "visitor")
        await observations(backend, 1)
        await eventually(
            lambda: [s.reason for s in emu.sessions] == ["idle_timeout"],
            TIMEOUT_S,
            what='[s.reason for s in emu.sessions] == ["idle_timeout"]',
        )
        backend.send_frame(JPEG, t0 + 1, "visitor")
        (obs,) = await observations(backend, 1)
        assert obs.captured_at == t0 + 1
        assert emu.connections == 2


async def test_refused_handshake_with_503_is_retried(
    emulator_v1: EmulatorV1, running: Callable[[V1Backend], object]
) -> None:
    emulator_v1.faults.refuse_status = 503
    backend = V1Backend(
        config(emulator_v1, models=("face",), min_session_s=0.0), first_delay_range_s=(0.05, 0.1)
    )
    running(backend)
    backend.send_frame(JPEG, time.time(), "visitor")
    await eventually(
        lambda: backend.status().link("video").state == "backoff",
        TIMEOUT_S,
        what='backend.status().link("video").state == "backoff"',
    )
    emulator_v1.faults.refuse_status = 0
    (obs,) = await observations(backend, 1)
    assert obs.model == "face"


async def test_config_rejected_by_the_server_disables_the_endpoint_without_reconnecting(
    emulator_v1: EmulatorV1, running: Callable[[V1Backend], asyncio.Task[None]]
) -> None:
    backend = V1Backend(config(emulator_v1, models=("face",), min_session_s=0.0, face_threshold=1.5))
    task = running(backend)
    backend.send_frame(JPEG, time.time(), "visitor")
    with pytest.raises(HumeProtocolError, match="config_invalid"):
        await asyncio.wait_for(task, TIMEOUT_S)
    link = backend.status().link("video")
    assert link.state == "disabled"
    assert "config_invalid" in str(link.last_error)
    assert [s.reason for s in emulator_v1.sessions] == ["error"]
    assert emulator_v1.connections == 1
    backend.send_frame(JPEG, time.time(), "visitor")
    assert dict(backend.status().counters)["video_dropped_disabled"] == 1
