"""The judge of the v1 emulator: Hume's official v1 SDK ``hume-expression-measurement`` (Python 3.10+).

espeak-ng speech and the astronaut photo go through the SDK's realtime audio and video clients; every
message must parse into the SDK's own types (never a bare dict, which is how it returns unknown ones).
The SDK's reconnect wrapper must recover from an induced server shutdown and from an audio
``internal_error``, and must treat a session-ending config error as final, as its policy says.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, AsyncIterator, List

import pytest
import pytest_asyncio

if sys.version_info < (3, 10):
    pytest.skip("hume-expression-measurement needs Python 3.10+", allow_module_level=True)
hem = pytest.importorskip(
    "hume_expression_measurement", reason="the v1 judge: pip install 'hume-expression-measurement>=0.1,<0.2'"
)

from hume_expression_measurement import AsyncExpressionMeasurementClient  # noqa: E402
from hume_expression_measurement.core.api_error import ApiError  # noqa: E402
from hume_expression_measurement.environment import ExpressionMeasurementClientEnvironment  # noqa: E402
from hume_expression_measurement.reconnect import _policy, reconnecting  # noqa: E402
from hume_expression_measurement.types import (  # noqa: E402
    AudioMeasurementResult,
    AudioSessionClosed,
    AudioSessionCreated,
    AudioSessionUpdate,
    AudioSessionUpdated,
    Error,
    SessionClose,
    UtteranceEnd,
    UtteranceStart,
    VideoMeasurementResult,
    VideoSessionClosed,
    VideoSessionCreated,
    VideoSessionUpdate,
    VideoSessionUpdated,
)
from hume_expression_measurement.types.face_config_update import FaceConfigUpdate  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from hume_emulator.v1.emulator import EmulatorV1, EmulatorV1Settings  # noqa: E402
from tests.support.emulator import astronaut_bgr, encode_image  # noqa: E402
from tests.support.emulator_v1 import TEST_KEY, espeak_pcm  # noqa: E402

TIMEOUT_S = 20.0
CLOSE = SessionClose(type="session.close")


@pytest_asyncio.fixture
async def fast_emulator() -> AsyncIterator[EmulatorV1]:
    """Audio allowance large enough to send a whole recording at once (tests need not wait for it)."""
    async with EmulatorV1(EmulatorV1Settings(api_keys=(TEST_KEY,), audio_burst_ms=120_000)) as emu:
        yield emu


def sdk(emu: EmulatorV1, key: str = TEST_KEY) -> AsyncExpressionMeasurementClient:
    env = ExpressionMeasurementClientEnvironment(base=emu.base_url, production=emu.ws_url)
    return AsyncExpressionMeasurementClient(api_key=key, environment=env)


async def collect(sock: Any) -> List[Any]:
    out: List[Any] = []

    async def run() -> None:
        async for msg in sock:
            out.append(msg)

    await asyncio.wait_for(run(), TIMEOUT_S)
    return out


async def test_audio_speech_parses_into_sdk_types(fast_emulator: EmulatorV1) -> None:
    pcm = espeak_pcm()
    async with sdk(fast_emulator).audio.connect() as sock:
        await sock.send_audio_session_update(
            AudioSessionUpdate(type="session.update", measurement_timer_ms=3000)
        )
        for i in range(0, len(pcm), 3200):
            await sock.send_audio_frame(pcm[i : i + 3200])
        await sock.send_audio_session_close(CLOSE)
        messages = await collect(sock)
    assert not [m for m in messages if isinstance(m, dict)], "a message the SDK could not type"
    kinds = [type(m) for m in messages]
    assert kinds[:2] == [AudioSessionCreated, AudioSessionUpdated]
    assert kinds[-1] is AudioSessionClosed
    starts = [m for m in messages if isinstance(m, UtteranceStart)]
    ends = [m for m in messages if isinstance(m, UtteranceEnd)]
    results = [m for m in messages if isinstance(m, AudioMeasurementResult)]
    assert len(starts) == len(ends) >= 2
    assert results
    assert all(r.audio_end_ms - r.audio_start_ms <= 10_000 for r in results)
    assert [r.measurement_id for r in results] == list(range(len(results)))
    assert any(r.expressions for r in results)
    closed = messages[-1]
    assert closed.reason == "client_request"
    assert closed.received.frames == -(-len(pcm) // 3200)
    assert closed.produced.utterances == len(starts)
    assert closed.produced.measurements == len(results)


async def test_video_astronaut_parses_into_sdk_types(emulator_v1: EmulatorV1) -> None:
    jpeg = encode_image(astronaut_bgr())
    png = encode_image(astronaut_bgr(), ".png")
    async with sdk(emulator_v1).video.connect() as sock:
        face = FaceConfigUpdate(threshold=0.9, min_size=40)
        await sock.send_video_session_update(VideoSessionUpdate(type="session.update", face=face))
        for frame in (jpeg, jpeg, png, jpeg):
            await sock.send_image_frame(frame)
            await asyncio.sleep(0.34)  # scenario: a camera within 3 frames per second
        await sock.send_video_session_close(CLOSE)
        messages = await collect(sock)
    assert not [m for m in messages if isinstance(m, dict)]
    assert [type(m) for m in messages] == [
        VideoSessionCreated,
        VideoSessionUpdated,
        VideoMeasurementResult,
        VideoMeasurementResult,
        Error,
        VideoMeasurementResult,
        VideoSessionClosed,
    ]
    results = [m for m in messages if isinstance(m, VideoMeasurementResult)]
    assert [r.frame_id for r in results] == [0, 1, 2]
    for r in results:
        (found,) = r.faces
        assert found.face_id == 0
        assert found.confidence >= 0.9
        assert len(found.bbox) == 4
        assert found.expressions is not None
    assert messages[4].code == "invalid_image_frame"
    assert messages[-1].received.frames == 3
    assert messages[-1].produced.measurements == 3


async def test_reconnect_wrapper_recovers_from_server_shutdown(
    emulator_v1: EmulatorV1, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_policy, "_FIRST_DELAY_RANGE", (0.05, 0.1))
    update = AudioSessionUpdate(type="session.update", measurement_timer_ms=4000)
    async with reconnecting(sdk(emulator_v1).audio) as sock:
        first = await asyncio.wait_for(sock.recv(), TIMEOUT_S)
        assert isinstance(first, AudioSessionCreated)
        await sock.send_audio_session_update(update)
        assert isinstance(await asyncio.wait_for(sock.recv(), TIMEOUT_S), AudioSessionUpdated)
        await emulator_v1.shutdown_sessions()
        closed = await asyncio.wait_for(sock.recv(), TIMEOUT_S)
        assert isinstance(closed, AudioSessionClosed)
        assert closed.reason == "server_shutdown"
        again = await asyncio.wait_for(sock.recv(), TIMEOUT_S)
        assert isinstance(again, AudioSessionCreated)
        assert again.session_id != first.session_id
        replayed = await asyncio.wait_for(sock.recv(), TIMEOUT_S)
        assert isinstance(replayed, AudioSessionUpdated)
        assert replayed.measurement_timer_ms == 4000
    assert emulator_v1.connections == 2


async def test_reconnect_wrapper_opens_a_new_session_after_audio_internal_error(
    fast_emulator: EmulatorV1, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_policy, "_FIRST_DELAY_RANGE", (0.05, 0.1))
    fast_emulator.faults.fail_measurements = 1
    pcm = espeak_pcm()
    async with reconnecting(sdk(fast_emulator).audio) as sock:
        assert isinstance(await asyncio.wait_for(sock.recv(), TIMEOUT_S), AudioSessionCreated)
        await sock.send_audio_frame(pcm)
        seen: List[Any] = []
        while not isinstance(seen[-1:] and seen[-1], AudioSessionCreated) or len(seen) < 2:
            seen.append(await asyncio.wait_for(sock.recv(), TIMEOUT_S))
    errors = [m for m in seen if isinstance(m, Error)]
    assert [(e.code, e.retryable) for e in errors] == [("internal_error", False)]
    assert any(isinstance(m, AudioSessionClosed) and m.reason == "error" for m in seen)
    assert fast_emulator.connections == 2


async def test_session_ending_config_error_is_final_for_the_sdk(emulator_v1: EmulatorV1) -> None:
    async with reconnecting(sdk(emulator_v1).audio) as sock:
        assert isinstance(await asyncio.wait_for(sock.recv(), TIMEOUT_S), AudioSessionCreated)
        await sock.send_audio_frame(bytes(3200))
        await sock.send_audio_session_update(AudioSessionUpdate(type="session.update"))  # after media: locked
        error = await asyncio.wait_for(sock.recv(), TIMEOUT_S)
        assert isinstance(error, Error)
        assert (error.code, error.retryable) == ("config_invalid", False)
        closed = await asyncio.wait_for(sock.recv(), TIMEOUT_S)
        assert isinstance(closed, AudioSessionClosed)
        assert closed.reason == "error"
        with pytest.raises(ConnectionClosed) as exc:
            await asyncio.wait_for(sock.recv(), TIMEOUT_S)
        assert exc.value.rcvd is not None
        assert exc.value.rcvd.code == 1008
    assert emulator_v1.connections == 1


async def test_message_too_large_ends_the_session(emulator_v1: EmulatorV1) -> None:
    messages: List[Any] = []
    async with sdk(emulator_v1).audio.connect() as sock:
        await sock.send_audio_frame(bytes(1_048_578))
        with pytest.raises(ConnectionClosed) as exc:  # noqa: PT012 - the close ends the loop
            while True:
                messages.append(await asyncio.wait_for(sock.recv(), TIMEOUT_S))
    assert [type(m) for m in messages] == [AudioSessionCreated, Error, AudioSessionClosed]
    assert messages[1].code == "message_too_large"
    assert exc.value.rcvd is not None
    assert exc.value.rcvd.code == 1008


async def test_wrong_key_is_refused_with_401(emulator_v1: EmulatorV1) -> None:
    with pytest.raises(ApiError) as exc:
        async with sdk(emulator_v1, key="wrong").audio.connect():
            pass
    assert exc.value.status_code == 401
    assert emulator_v1.connections == 0
