"""The v0 client against the real emulator on loopback: matching, reset_stream, renewals and every fault.

Faults come from the emulator's fault injection (server close, refusal, silence, stall, wrong key, no
credits); an abrupt drop (no close handshake, as when Wi-Fi goes) is made by a TCP relay in front of it
whose connections are aborted. While a fault lasts, a "capture" coroutine feeds frames and audio as the
camera and microphone loops do and measures how late its 10 ms ticks wake up: the client must never
block the event loop, whatever the network does.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import logging
import wave
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest

from agent.config import HumeConfig, HumeV0Config
from agent.errors import HumeAuthError
from agent.hume.types import Observation
from agent.hume.v0.client import V0Backend
from agent.hume.v0.payloads import FRAME_BACKLOG
from agent.hume.v0.publish import PublishMessage
from hume_emulator.emulator import Emulator, EmulatorSettings
from tests.support.emulator import TEST_KEY, astronaut_bgr, encode_image, voice
from tests.support.ports import free_port
from tests.support.tasks import running
from tests.support.waits import eventually

TIMEOUT_S = 15.0
LAG_LIMIT_S = 0.5
"""Loose on purpose: this is about never blocking the loop, not about speed."""

CHUNK_S = 0.1
CHUNK = voice(CHUNK_S * 1000).astype("<i2").tobytes()
JPEG = encode_image(astronaut_bgr())


def cfg_for(url: str, **overrides: object) -> HumeConfig:
    """Fast but within the documented ranges: replies due in 1 s, backoff 0.05-0.5 s, slow retry 1 s."""
    v0 = {"url": url, "backoff_initial_s": 0.05, "backoff_max_s": 0.5}
    for key in [k for k in overrides if k in {f.name for f in dataclasses.fields(HumeV0Config)}]:
        v0[key] = overrides.pop(key)  # type: ignore[assignment]
    base = HumeConfig(
        backend="v0",
        api_key=TEST_KEY,
        models=("face", "prosody", "burst"),
        reply_timeout_s=1.0,
        fatal_retry_s=1.0,
        v0=HumeV0Config(**v0),  # type: ignore[arg-type]
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _key_never_logged(caplog: pytest.LogCaptureFixture) -> object:
    caplog.set_level(logging.DEBUG)
    yield
    assert TEST_KEY not in caplog.text
    assert "wrong-key" not in caplog.text


def sock(backend: V0Backend, name: str) -> Dict[str, object]:
    return backend.status().link(name).to_json()  # type: ignore[return-value]


def count(backend: V0Backend, name: str, key: str) -> int:
    value = sock(backend, name)[key]
    assert isinstance(value, int)
    return value


def at_least(backend: V0Backend, name: str, key: str, n: int) -> Callable[[], bool]:
    return lambda: count(backend, name, key) >= n


class Capture:
    """Feeds the backend as the capture loops do (audio every 100 ms, a frame every 250 ms); measures lag."""

    def __init__(self, backend: V0Backend, session_id: str = "visit-1", frames: bool = True) -> None:
        self.backend = backend
        self.session_id = session_id
        self.frames = frames
        self.max_lag_s = 0.0
        self._task: Optional[asyncio.Task[None]] = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = 0
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)  # scenario: the capture clock, 10 ms ticks (their lag is measured)
            self.max_lag_s = max(self.max_lag_s, loop.time() - before - 0.01)
            tick += 1
            if tick % 10 == 0:
                self.backend.send_audio(CHUNK, 1000.0 + tick / 100, self.session_id)
            if self.frames and tick % 25 == 0:
                self.backend.send_frame(JPEG, 1000.0 + tick / 100, self.session_id)

    async def __aenter__(self) -> Capture:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.wait_for(asyncio.gather(self._task, return_exceptions=True), TIMEOUT_S)
        assert self.max_lag_s < LAG_LIMIT_S, f"capture loop stalled {self.max_lag_s:.3f} s"


async def drain(backend: V0Backend, n: int) -> List[Observation]:
    return [await asyncio.wait_for(backend.receive(), TIMEOUT_S) for _ in range(n)]


def audio_requests(emulator: Emulator) -> List[Tuple[int, PublishMessage]]:
    return [(c, m) for c, m in emulator.requests if m.models is not None and m.models.prosody is not None]


def frame_requests(emulator: Emulator) -> List[Tuple[int, PublishMessage]]:
    return [(c, m) for c, m in emulator.requests if m.models is not None and m.models.face is not None]


async def recovers(backend: V0Backend, emulator: Emulator) -> None:
    """After a fault ends, both sockets are open and new replies arrive."""
    before = count(backend, "audio", "replies")
    await eventually(
        lambda: count(backend, "audio", "replies") >= before + 3, TIMEOUT_S, what="audio replies again"
    )
    await eventually(lambda: count(backend, "video", "replies") >= 1, TIMEOUT_S, what="video replies again")
    await eventually(lambda: backend.status().state == "open", TIMEOUT_S, what="state open")


# --------------------------------------------------------------------------------------------------
# Normal operation


async def test_replies_matched_to_payloads_with_session_and_capture_time(emulator: Emulator) -> None:
    backend = V0Backend(cfg_for(emulator.url))
    async with running(backend):
        backend.send_frame(JPEG, 111.0, "visit-a")
        backend.send_audio(CHUNK * 10, 222.0, "visit-b")
        got = await drain(backend, 3)  # face, prosody, burst
    by_model = {o.model: o for o in got}
    assert set(by_model) == {"face", "prosody", "burst"}
    assert (by_model["face"].captured_at, by_model["face"].session_id) == (111.0, "visit-a")
    assert by_model["face"].measurements, "the astronaut's face was measured"
    assert by_model["face"].measurements[0].face_id not in (None, "unknown")
    for model in ("prosody", "burst"):
        assert (by_model[model].captured_at, by_model[model].session_id) == (222.0, "visit-b")
    ids = [m.payload_id for _, m in emulator.requests]
    assert len(ids) == len(set(ids)) == 2
    for name in ("video", "audio"):
        s = sock(backend, name)
        assert (s["sent"], s["replies"], s["unmatched"], s["timeouts"], s["lost"]) == (1, 1, 0, 0, 0)
        assert s["latency_p50_s"] is not None
    assert backend.status().last_error is None


async def test_audio_payload_is_one_wav_of_at_most_5000_ms(emulator: Emulator) -> None:
    emulator.faults.delay_ms = 500  # replies slow: audio piles up and leaves merged
    backend = V0Backend(cfg_for(emulator.url, models=("prosody",), reply_timeout_s=5.0))
    async with running(backend):
        for i in range(80):  # 8 s of audio at once
            backend.send_audio(CHUNK, 10.0 + i * CHUNK_S, "v")
        await eventually(
            lambda: sock(backend, "audio")["queued_audio_s"] == 0.0, TIMEOUT_S, what="all audio sent"
        )
        await eventually(lambda: count(backend, "audio", "replies") == 2, TIMEOUT_S, what="all replied")
    durations = []
    for _, msg in audio_requests(emulator):
        assert msg.data is not None
        with wave.open(io.BytesIO(base64.b64decode(msg.data))) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            durations.append(w.getnframes() / 16000)
        assert msg.stream_window_ms == 5000
    assert durations == [5.0, 3.0]


async def test_reset_stream_on_first_payload_after_connect_and_boundary_only(emulator: Emulator) -> None:
    """Audio: reset on the first payload of each connection and of each session; never elsewhere.

    Video with identify_faces: a boundary also moves the next frame to a new connection (face ids live
    as long as the connection).
    """
    backend = V0Backend(cfg_for(emulator.url, identify_faces=True))
    expected_audio: List[bool] = []
    expected_video: List[bool] = []

    async def send(boundary: bool = False) -> None:
        if boundary:
            backend.mark_boundary()
        n_audio, n_video = count(backend, "audio", "replies"), count(backend, "video", "replies")
        backend.send_audio(CHUNK, 0.0, "v")
        backend.send_frame(JPEG, 0.0, "v")
        await eventually(
            lambda: count(backend, "audio", "replies") == n_audio + 1, TIMEOUT_S, what="audio reply"
        )
        await eventually(
            lambda: count(backend, "video", "replies") == n_video + 1, TIMEOUT_S, what="video reply"
        )

    async with running(backend):
        for boundary, reset in ((False, True), (False, False), (True, True), (False, False), (False, False)):
            await send(boundary)
            expected_audio.append(reset)
            expected_video.append(reset)
        emulator.faults.close_after = 0  # the server closes each socket after its next reply
        await send()
        expected_audio.append(False)
        expected_video.append(False)
        emulator.faults.close_after = None
        await send()  # first payload on the new connections
        expected_audio.append(True)
        expected_video.append(True)
        await send(boundary=True)
        expected_audio.append(True)
        expected_video.append(True)
        await send()
        expected_audio.append(False)
        expected_video.append(False)

    audio, video = audio_requests(emulator), frame_requests(emulator)
    assert [m.reset_stream for _, m in audio] == expected_audio
    assert [m.reset_stream for _, m in video] == expected_video
    audio_conns = [c for c, _ in audio]
    video_conns = [c for c, _ in video]
    # Audio: one connection until the server closed it; a boundary alone does not reconnect.
    assert audio_conns[:6] == [audio_conns[0]] * 6
    assert audio_conns[6:] == [audio_conns[6]] * 3
    assert audio_conns[6] != audio_conns[0]
    # Video: a new connection at each boundary and after the close.
    assert len({video_conns[0], video_conns[2], video_conns[6], video_conns[7]}) == 4
    assert video_conns[0:2] == [video_conns[0]] * 2
    assert video_conns[2:6] == [video_conns[2]] * 4


async def test_boundary_replaces_video_socket_at_once_with_identify_faces(emulator: Emulator) -> None:
    backend = V0Backend(cfg_for(emulator.url, identify_faces=True))
    async with running(backend):
        backend.send_frame(JPEG, 0.0, "v")
        backend.send_audio(CHUNK, 0.0, "v")
        await eventually(lambda: backend.status().link("video").replies == 1, TIMEOUT_S, what="replies")
        await eventually(at_least(backend, "audio", "replies", 1), TIMEOUT_S, what="audio reply")
        connections = emulator.connections
        backend.mark_boundary()
        await eventually(lambda: emulator.connections == connections + 1, TIMEOUT_S, what="new video socket")
        await eventually(lambda: backend.status().state == "open", TIMEOUT_S, what="open")
        assert count(backend, "video", "reconnects") == 1
        assert count(backend, "audio", "reconnects") == 0  # the audio window is reset, not reconnected
        assert count(backend, "video", "lost") == 0


async def test_reset_without_identify_faces_keeps_video_socket_across_boundary(emulator: Emulator) -> None:
    backend = V0Backend(cfg_for(emulator.url, models=("face",), identify_faces=False))
    async with running(backend):
        for i, boundary in enumerate((False, False, True, False)):
            if boundary:
                backend.mark_boundary()
            backend.send_frame(JPEG, float(i), "v")
            await eventually(at_least(backend, "video", "replies", i + 1), TIMEOUT_S, what="reply")
    video = frame_requests(emulator)
    assert [m.reset_stream for _, m in video] == [True, False, True, False]
    assert len({c for c, _ in video}) == 1


async def test_renews_before_server_limit_and_idles_without_media(emulator: Emulator) -> None:
    """Sockets reopen every reconnect_after_s with nothing lost, and close while there is nothing to send."""
    backend = V0Backend(cfg_for(emulator.url, models=("prosody",), reconnect_after_s=5.0))
    async with running(backend):
        async with Capture(backend, frames=False):
            await eventually(lambda: count(backend, "audio", "reconnects") >= 1, TIMEOUT_S, what="renewed")
            await asyncio.sleep(0.5)  # scenario: media keeps flowing on the renewed socket
        s = sock(backend, "audio")
        assert (s["lost"], s["timeouts"]) == (0, 0)
        assert not [k for k in s if k.startswith("error_")]
        await eventually(lambda: backend.status().state == "idle", 8, what="idle, socket closed")
        stats = await _emulator_stats(emulator)
        assert stats["open"] == 0
        n = count(backend, "audio", "replies")
        backend.send_audio(CHUNK, 0.0, "v")  # reconnects on demand
        await eventually(
            lambda: count(backend, "audio", "replies") == n + 1, TIMEOUT_S, what="reply after idle"
        )


async def _emulator_stats(emulator: Emulator) -> Dict[str, int]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emulator.base_url}/_emulator/stats") as resp,
    ):
        body = await asyncio.wait_for(resp.json(), TIMEOUT_S)
    return body  # type: ignore[no-any-return]


async def test_no_image_or_audio_file_is_created(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raw media stays in memory: a run leaves no file at all in the working or temporary directory."""
    work, tmp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr("tempfile.tempdir", None)
    backend = V0Backend(cfg_for(emulator.url))
    async with running(backend), Capture(backend):
        await eventually(lambda: count(backend, "video", "replies") >= 2, TIMEOUT_S, what="media flowed")
    created = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert created == [], f"files created during a run: {created}"


# --------------------------------------------------------------------------------------------------
# Faults: each recovered with backoff while capture keeps its pace


async def test_server_close_recovered_with_backoff(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.faults.close_after = 1  # every connection closed (1011) after its first reply
    backend = V0Backend(cfg_for(emulator.url))
    async with running(backend) as task, Capture(backend):
        await eventually(
            lambda: count(backend, "audio", "reconnects") >= 3, TIMEOUT_S, what="several reconnects"
        )
        s = sock(backend, "audio")
        assert "closed by the server (code 1011)" in str(backend.status().last_error) or s["last_error"]
        # Every unplanned reconnect waited a backoff delay: attempts stay far below a hot loop.
        assert count(backend, "audio", "connects") < 60
        emulator.faults.close_after = None
        await recovers(backend, emulator)
        assert not task.done()
    # A flapping link is announced once per socket, not once per flap.
    loud = [r for r in caplog.records if r.name.startswith("agent.hume") and r.levelno >= logging.INFO]
    assert len([r for r in loud if "-> backoff (closed by the server" in r.getMessage()]) <= 2
    assert len([r for r in loud if "working again" in r.getMessage()]) <= 2


async def test_abrupt_drop_recovered(emulator: Emulator) -> None:
    async with Relay(emulator.port) as relay:
        backend = V0Backend(cfg_for(relay.url))
        async with running(backend), Capture(backend):
            await eventually(lambda: count(backend, "audio", "replies") >= 3, TIMEOUT_S, what="flowing")
            for _ in range(3):
                # Open again, not just connecting: a cut while the relay has not yet registered the new
                # connection cuts nothing (seen once on a loaded machine).
                reconnects = count(backend, "audio", "reconnects")
                relay.cut()  # RST, no close frame: what a router reboot looks like
                await eventually(
                    at_least(backend, "audio", "reconnects", reconnects + 1), TIMEOUT_S, what="reconnected"
                )
            await recovers(backend, emulator)
            assert relay.cuts == 3
            assert count(backend, "audio", "reconnects") >= 3


async def test_half_open_idle_socket_found_dead_by_heartbeat(emulator: Emulator) -> None:
    """Nothing in flight, so no reply can time out: only the WebSocket heartbeat notices the dead link."""
    async with Relay(emulator.port) as relay:
        backend = V0Backend(cfg_for(relay.url, models=("prosody",)), heartbeat_s=0.5)
        async with running(backend):
            await eventually(lambda: backend.status().state == "open", TIMEOUT_S, what="open")
            relay.swallowing = True
            await eventually(
                lambda: "heartbeat not answered" in str(backend.status().last_error),
                TIMEOUT_S,
                what="heartbeat",
            )
            relay.swallowing = False
            backend.send_audio(CHUNK, 0.0, "v")
            await eventually(at_least(backend, "audio", "replies", 1), TIMEOUT_S, what="reply")


async def test_refusal_recovered_short(emulator: Emulator) -> None:
    await _refusal(emulator, seconds=3.0)


@pytest.mark.slow
async def test_refusal_for_20_s_recovered(emulator: Emulator) -> None:
    await _refusal(emulator, seconds=20.0)


async def _refusal(emulator: Emulator, seconds: float) -> None:
    backend = V0Backend(cfg_for(emulator.url))
    async with running(backend) as task, Capture(backend):
        await eventually(lambda: count(backend, "audio", "replies") >= 2, TIMEOUT_S, what="flowing")
        emulator.faults.update({"refuse_for_s": seconds, "refuse_status": 503, "close_after": 0})
        await eventually(
            lambda: "HTTP 503" in str(sock(backend, "audio")["last_error"]), TIMEOUT_S, what="refused"
        )
        assert sock(backend, "audio")["state"] in ("backoff", "connecting")
        emulator.faults.close_after = None
        attempts = count(backend, "audio", "connects")
        await eventually(lambda: not emulator.faults.refusing(), seconds + 5, what="refusal over")
        during = count(backend, "audio", "connects") - attempts
        # Backoff 0.05..0.5 s capped: a hot loop would be thousands of attempts.
        assert during <= seconds / 0.05
        await recovers(backend, emulator)
        assert not task.done()


async def test_silence_times_out_replies_and_recovers(emulator: Emulator) -> None:
    backend = V0Backend(cfg_for(emulator.url))
    async with running(backend), Capture(backend):
        await eventually(lambda: count(backend, "audio", "replies") >= 2, TIMEOUT_S, what="flowing")
        emulator.faults.silent = True  # requests read, never answered
        await eventually(lambda: count(backend, "audio", "timeouts") >= 2, TIMEOUT_S, what="timeouts counted")
        await eventually(lambda: count(backend, "video", "timeouts") >= 1, TIMEOUT_S, what="video too")
        assert "no reply within 1 s" in str(sock(backend, "audio")["last_error"])
        assert count(backend, "audio", "reconnects") >= 1
        emulator.faults.silent = False
        await recovers(backend, emulator)


async def test_stalled_server_keeps_queues_bounded_and_counts_drops(emulator: Emulator) -> None:
    emulator.faults.delay_ms = 2500
    backend = V0Backend(cfg_for(emulator.url, reply_timeout_s=5.0, queue_seconds=1.0))
    async with running(backend), Capture(backend):
        await eventually(
            lambda: count(backend, "video", "dropped_frames") >= 4, TIMEOUT_S, what="frames dropped"
        )
        await eventually(
            lambda: sock(backend, "audio")["dropped_audio_s"] > 0.5, TIMEOUT_S, what="audio dropped"
        )  # type: ignore[operator]
        assert sock(backend, "audio")["queued_audio_s"] <= 1.0  # type: ignore[operator]
        assert sock(backend, "video")["queued_frames"] <= FRAME_BACKLOG  # type: ignore[operator]
        assert count(backend, "audio", "timeouts") == 0  # slow is not lost
        emulator.faults.delay_ms = 0
        await recovers(backend, emulator)
    for _, msg in audio_requests(emulator):
        assert msg.data is not None
        with wave.open(io.BytesIO(base64.b64decode(msg.data))) as w:
            assert w.getnframes() <= 5 * 16000


async def test_results_queue_bounded_when_nobody_reads(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.hume.v0.client.OBSERVATIONS_MAX", 3)
    backend = V0Backend(cfg_for(emulator.url, models=("prosody",)))
    async with running(backend), Capture(backend, frames=False):
        await eventually(
            lambda: dict(backend.status().counters)["dropped_results"] >= 2, TIMEOUT_S, what="dropped"
        )
    assert len(await drain(backend, 3)) == 3


# --------------------------------------------------------------------------------------------------
# Fatal replies


async def test_wrong_key_at_start_raises_from_run(emulator: Emulator) -> None:
    backend = V0Backend(cfg_for(emulator.url, api_key="wrong-key"))
    with pytest.raises(HumeAuthError) as info:
        await asyncio.wait_for(backend.run(), TIMEOUT_S)
    assert "HTTP 401" in str(info.value)
    assert "wrong-key" not in str(info.value)
    assert "wrong-key" not in repr(info.value)
    assert info.value.__cause__ is None
    assert backend.status().state == "auth_failed"


async def test_wrong_key_once_the_network_is_up_still_raises_from_run() -> None:
    """Booting offline: the first attempts fail (nothing listens), the first answer is a 401: exit."""
    port = free_port()
    backend = V0Backend(cfg_for(f"ws://127.0.0.1:{port}/v0/stream/models", api_key="wrong-key"))
    async with running(backend) as task:
        await eventually(at_least(backend, "audio", "connects", 2), TIMEOUT_S, what="retrying")
        assert not task.done()
        async with Emulator(EmulatorSettings(api_keys=(TEST_KEY,)), port=port):
            with pytest.raises(HumeAuthError):
                await asyncio.wait_for(asyncio.shield(task), TIMEOUT_S)


async def test_wrong_key_mid_run_retries_slowly(emulator: Emulator) -> None:
    """A key refused after it worked: no fast loop, state auth_failed, run() keeps going, then recovers."""
    backend = V0Backend(cfg_for(emulator.url))
    async with running(backend) as task, Capture(backend):
        await eventually(lambda: count(backend, "audio", "replies") >= 2, TIMEOUT_S, what="flowing")
        attempts = count(backend, "audio", "connects")
        emulator.faults.update({"refuse_for_s": 3.0, "refuse_status": 401, "close_after": 0})
        await eventually(lambda: backend.status().state == "auth_failed", TIMEOUT_S, what="auth_failed")
        assert "HTTP 401" in str(backend.status().last_error)
        emulator.faults.close_after = None
        await eventually(lambda: not emulator.faults.refusing(), 10, what="refusal over")
        # fatal_retry_s = 1 over ~3 s; with backoff_initial_s = 0.05 a fast loop would make ~30+.
        assert count(backend, "audio", "connects") - attempts <= 6
        assert not task.done()
        await recovers(backend, emulator)


async def test_out_of_credits_retries_slowly_and_recovers(emulator: Emulator) -> None:
    backend = V0Backend(cfg_for(emulator.url, models=("prosody",)))
    async with running(backend) as task, Capture(backend, frames=False):
        await eventually(lambda: count(backend, "audio", "replies") >= 2, TIMEOUT_S, what="flowing")
        emulator.faults.error_code = "E0300"
        await eventually(
            lambda: backend.status().state == "quota_exhausted", TIMEOUT_S, what="quota_exhausted"
        )
        sent = count(backend, "audio", "sent")
        await asyncio.sleep(2.5)  # scenario: 2.5 s of chunks arriving while the quota is exhausted
        assert count(backend, "audio", "sent") - sent <= 4  # one try per fatal_retry_s, not per chunk
        assert count(backend, "audio", "error_E0300") >= 2
        emulator.faults.error_code = None
        before = count(backend, "audio", "replies")
        await eventually(
            lambda: count(backend, "audio", "replies") >= before + 3, TIMEOUT_S, what="recovered"
        )
        await eventually(lambda: backend.status().state == "open", TIMEOUT_S, what="open")
        assert not task.done()


async def test_text_goes_to_the_language_model(emulator: Emulator) -> None:
    backend = V0Backend(cfg_for(emulator.url, models=("language",), language_granularity="word"))
    async with running(backend):
        backend.send_text("I love this exhibition", 7.0, "visit-t")
        [obs] = await drain(backend, 1)
    assert (obs.model, obs.captured_at, obs.session_id) == ("language", 7.0, "visit-t")
    assert [m.text for m in obs.measurements] == ["I", "love", "this", "exhibition"]
    [(_, msg)] = emulator.requests
    assert msg.raw_text
    assert msg.reset_stream


async def test_no_face_and_no_speech_warnings_are_normal_outcomes(emulator: Emulator) -> None:
    blank = encode_image(np.zeros((240, 320, 3), np.uint8))
    backend = V0Backend(cfg_for(emulator.url))
    async with running(backend):
        backend.send_frame(blank, 5.0, "v")
        backend.send_audio(b"\x00\x00" * 16000, 6.0, "v")
        got = {o.model: o for o in await drain(backend, 3)}
    assert got["face"].warning_code == "W0103"
    assert got["prosody"].warning_code == "W0105"
    video = sock(backend, "video")
    codes = [(k, v) for k, v in video.items() if k.startswith(("warning_", "error_"))]
    assert codes == [("warning_W0103", 1)]
    assert backend.status().state == "open"
    assert backend.status().last_error is None


# --------------------------------------------------------------------------------------------------
# A TCP relay whose connections can be cut without a close handshake


class Relay:
    """Loopback TCP relay to the emulator; :meth:`cut` aborts every relayed connection (RST), and while
    ``swallowing`` is set every byte is silently discarded (a half-open link)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cuts = 0
        self.swallowing = False
        self._writers: List[asyncio.StreamWriter] = []
        self._server: Optional[asyncio.AbstractServer] = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v0/stream/models"

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await asyncio.wait_for(self._server.wait_closed(), TIMEOUT_S)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.target_port), TIMEOUT_S
        )
        self._writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                writer.close()
                return
            if not self.swallowing:  # a captive router or dead Wi-Fi: bytes vanish, nothing closes
                writer.write(chunk)
                await writer.drain()

    def cut(self) -> None:
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()
        self.cuts += 1
