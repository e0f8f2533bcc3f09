"""A kiosk for the end-to-end tests: the agent's config against a test broker and emulator, a voice that
speaks while the synthetic scene shows a face, and the schema every message must validate against.

Shared by the end-to-end, privacy, session, forced-session, pause and dashboard tests (each imported it
from another test module before).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, AsyncGenerator, Dict, List, Tuple

import jsonschema
import numpy as np

from agent.capture.microphone import AudioSource
from agent.capture.synthetic import SyntheticCamera
from agent.media.audio import AudioChunk, Resampler, decode_wav
from agent.visit.summary import SCHEMA_PATH
from hume_emulator.emulator import Emulator
from tests.support.emulator import TEST_KEY, espeak_wav
from tests.support.mosquitto import Broker, Received

DEVICE = "e2e-kiosk"
PREFIX = f"hume-edge/{DEVICE}/"


def agent_config(
    emulator: Emulator, broker: Broker, workdir: Path, **sections: Dict[str, Any]
) -> Dict[str, Any]:
    data: Dict[str, Any] = {
        "device_id": DEVICE,
        "hume": {"backend": "v0", "api_key": TEST_KEY, "v0": {"url": emulator.url}},
        "camera": {"source": "synthetic"},
        "microphone": {"source": "speech"},
        "mqtt": {"host": broker.host, "port": broker.port, "health_interval_s": 2.0},
        "outbox": {"path": str(workdir / "outbox.sqlite")},
        "summary": {"window_s": 2.0},
        "session": {"debounce_s": 0.5},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def sequenced(messages: List[Received]) -> List[Tuple[str, Dict[str, Any]]]:
    """(topic suffix, payload) of every summary / session / aggregate message."""
    out = []
    for m in messages:
        suffix = m.topic[len(PREFIX) :]
        if suffix.startswith("summary/") or suffix in ("session", "aggregate"):
            out.append((suffix, m.json()))
    return out


def speech() -> Any:
    samples, rate = decode_wav(espeak_wav("Hello, I would like to know more about this exhibition."))
    return Resampler(rate).process(samples)


class SceneVoice(AudioSource):
    """Speech while the scene shows a face, silence otherwise: visitors speak, the empty kiosk is quiet."""

    def __init__(self, camera: SyntheticCamera, speech: np.ndarray, chunk_ms: int = 500) -> None:
        super().__init__(chunk_ms)
        self.camera = camera
        self.speech = speech
        self.chunk_ms = chunk_ms

    def describe(self) -> str:
        return "scene voice"

    async def chunks(self) -> AsyncGenerator[AudioChunk, None]:
        n = 16 * self.chunk_ms
        pos = 0
        start = time.monotonic()
        k = 0
        while True:
            k += 1
            due_s = start + k * self.chunk_ms / 1000 - time.monotonic()
            await asyncio.sleep(max(0.0, due_s))  # scenario: a microphone's real-time pace
            t = time.monotonic() - start  # the camera started within the same event-loop turn
            if self.camera.face_at(t) is None:
                block = np.zeros(n, dtype=np.int16)
            else:
                block = np.take(self.speech, range(pos, pos + n), mode="wrap")
                pos += n
            chunk_s = self.chunk_ms / 1000
            yield AudioChunk(block.astype("<i2").tobytes(), time.time() - chunk_s, time.monotonic() - chunk_s)
