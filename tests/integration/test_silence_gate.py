"""The agent pays for voices, not silence: a visit with a silent stretch, against both emulators.

A face stays in view the whole time (one visit); the visitor says a sentence, is silent for about six
seconds, and says another. Counted at the emulator: v0 gets no payload of pure silence and nothing of
the silent stretch; v1's session takes in only the speech and its margins, its VAD still finds two
utterances, and the second one is measured from its onset (pre-roll included).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any, AsyncGenerator, Callable, List, Optional, Tuple

import numpy as np
import pytest

from agent import config as config_mod
from agent import service
from agent.capture.microphone import AudioSource
from agent.capture.synthetic import SceneStep, SyntheticCamera
from agent.config import Config
from agent.hume.backend import Backend
from agent.media.audio import AUDIO_RATE, AudioChunk, Resampler, decode_wav, voiced_frames
from agent.visit.audio_gate import FRAME_MS
from hume_emulator.emulator import Emulator
from hume_emulator.v1.emulator import EmulatorV1
from tests.support.emulator import TEST_KEY, espeak_wav
from tests.support.mosquitto import Broker
from tests.support.recorder import Recorder
from tests.support.waits import eventually

pytestmark = pytest.mark.timeout(120)

CHUNK_MS = 500
SPEECH_1_S = 3.0
SPEECH_2_S = 11.0
END_S = 17.0
BYTES_PER_MS = AUDIO_RATE * 2 // 1000
SCENE = (SceneStep(END_S - 1, "a"), SceneStep(3600.0, None))
"""One visitor, in view until the script's quiet end, then gone (the visit ends, v1 closes its sessions)."""


def script() -> np.ndarray:
    """Quiet room (-60 dBFS) with two sentences, the second after about six seconds of silence."""
    rng = np.random.default_rng(7)
    signal = rng.normal(0, 33, int(END_S * AUDIO_RATE)).astype(np.int16)
    for at, text in ((SPEECH_1_S, "Hello, what is this?"), (SPEECH_2_S, "Oh, I see. How lovely.")):
        samples, rate = decode_wav(espeak_wav(text))
        speech = Resampler(rate).process(samples)
        start = int(at * AUDIO_RATE)
        signal[start : start + len(speech)] = speech
    return signal


def onset_ms(signal: np.ndarray, after_s: float) -> int:
    """The first voiced 20 ms frame at or after ``after_s``, in ms from the start of the signal."""
    start = int(after_s * AUDIO_RATE)
    loud = voiced_frames(signal[start:].astype("<i2").tobytes())
    return int(after_s * 1000) + int(np.argmax(loud)) * 20


def last_voice_ms(signal: np.ndarray, before_s: float) -> int:
    """The end of the last voiced 20 ms frame before ``before_s``, in ms from the start of the signal."""
    loud = voiced_frames(signal[: int(before_s * AUDIO_RATE)].astype("<i2").tobytes())
    return (int(np.nonzero(loud)[0][-1]) + 1) * 20


class ScriptVoice(AudioSource):
    """Plays ``signal`` in real time in ``CHUNK_MS`` chunks, then the quiet room forever."""

    def __init__(self, signal: np.ndarray) -> None:
        super().__init__(CHUNK_MS)
        self.signal = signal
        self.started_wall: Optional[float] = None

    def describe(self) -> str:
        return "scripted voice"

    async def chunks(self) -> AsyncGenerator[AudioChunk, None]:
        n = AUDIO_RATE * CHUNK_MS // 1000
        start = time.monotonic()
        self.started_wall = time.time()
        k = 0
        while True:
            due_s = start + (k + 1) * CHUNK_MS / 1000 - time.monotonic()
            await asyncio.sleep(max(0.0, due_s))  # scenario: a microphone's real-time pace
            block = self.signal[k * n : (k + 1) * n]
            if len(block) < n:
                block = np.zeros(n, dtype=np.int16)
            at_s = k * CHUNK_MS / 1000
            yield AudioChunk(block.astype("<i2").tobytes(), self.started_wall + at_s, start + at_s)
            k += 1


def agent_cfg(hume: dict, broker: Broker, tmp: Any) -> Config:
    return config_mod.from_dict(
        {
            "device_id": "gate-kiosk",
            "hume": {"api_key": TEST_KEY, "models": ["face", "prosody"], **hume},
            "mqtt": {"host": broker.host, "port": broker.port},
            "outbox": {"path": str(tmp / "outbox.sqlite")},
            "session": {"debounce_s": 0.5, "grace_s": 2.0},
            "camera": {"source": "synthetic"},
            "microphone": {"source": "speech", "chunk_ms": CHUNK_MS},
        },
        environ={},
    )


async def run_visit(
    cfg: Config, monkeypatch: pytest.MonkeyPatch, tmp: Any, done: Callable[[Recorder, ScriptVoice], bool]
) -> Tuple[Recorder, ScriptVoice]:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp))
    made: List[Recorder] = []

    def recording(c: Config) -> Backend:
        made.append(Recorder(service.make_backend(c)))
        return made[0]

    voice = ScriptVoice(script())
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        service.run_agent(
            cfg, stop, sources=(SyntheticCamera(640, 480, 2.0, scene=SCENE), voice), make_backend=recording
        )
    )
    try:
        await eventually(
            lambda: bool(made) and done(made[0], voice), 60.0, what="the end of the visit's audio"
        )
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    return made[0], voice


async def test_v0_sends_no_silent_payload_and_the_onset_after_silence(
    emulator: Emulator, mosquitto: Broker, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    signal = script()
    second = onset_ms(signal, SPEECH_2_S)
    onset_block = signal[second * 16 : (second + FRAME_MS) * 16].astype("<i2").tobytes()

    def audio_payloads() -> List[bytes]:
        out = []
        for _, msg in emulator.requests:
            if msg.models and "prosody" in msg.models.enabled and msg.data:
                samples, _ = decode_wav(base64.b64decode(msg.data))
                out.append(samples.astype("<i2").tobytes())
        return out

    def sent_the_second_onset(_rec: Recorder, _voice: ScriptVoice) -> bool:
        return onset_block in b"".join(audio_payloads())

    cfg = agent_cfg({"backend": "v0", "v0": {"url": emulator.url}}, mosquitto, tmp_path)
    await run_visit(cfg, monkeypatch, tmp_path, sent_the_second_onset)
    payloads = audio_payloads()
    assert payloads
    for pcm in payloads:  # no payload of pure silence
        assert voiced_frames(pcm).any(), f"a silent payload of {len(pcm) // BYTES_PER_MS} ms was sent"
    sent = b"".join(payloads)
    # The silent stretch between the sentences (less the gate's margins) was not sent.
    first_end = last_voice_ms(signal, SPEECH_2_S)
    gap = signal[(first_end + 800) * 16 : (second - 400) * 16].astype("<i2").tobytes()
    assert len(gap) > 4 * AUDIO_RATE
    assert gap[:3200] not in sent
    assert gap[-3200:] not in sent
    # The onset is intact: the pre-roll before the first loud frame went out with it, contiguous.
    at = sent.find(onset_block)
    preroll = signal[(second - 300) * 16 : second * 16].astype("<i2").tobytes()
    assert sent[at - len(preroll) : at] == preroll


async def test_v1_session_takes_in_speech_and_margins_only_and_both_utterances(
    emulator_v1: EmulatorV1, mosquitto: Broker, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    signal = script()
    second = onset_ms(signal, SPEECH_2_S)

    def visit_closed(_rec: Recorder, _voice: ScriptVoice) -> bool:
        return any(s.endpoint == "audio" for s in emulator_v1.sessions)

    hume = {"backend": "v1", "v1": {"url": emulator_v1.base_url}}
    rec, voice = await run_visit(agent_cfg(hume, mosquitto, tmp_path), monkeypatch, tmp_path, visit_closed)
    audio = [s for s in emulator_v1.sessions if s.endpoint == "audio"]
    assert len(audio) == 1
    # Speech and margins only: far less than the ~14 s the visit lasted until the second sentence ended.
    received_ms = audio[0].received["audio_duration_ms"]
    assert 2000 < received_ms < 8000, received_ms
    # The server's VAD ended the first sentence's utterance(s) before the second began: the pause at the
    # second sentence's full stop makes it two, so three in all, as with every second of the visit sent.
    assert audio[0].produced["utterances"] == 3
    # The second utterance is measured from its onset: its first window maps back to the first loud frame.
    assert voice.started_wall is not None
    onset_wall = voice.started_wall + second / 1000
    starts = [o.captured_at for o in rec.results if o.model == "prosody" and o.captured_at > onset_wall - 1]
    assert onset_wall - 0.35 <= min(starts) <= onset_wall + 0.15, (min(starts) - onset_wall, starts)
