"""The ``emulator`` fixture: a started local Hume v0 emulator on a free loopback port, key "test-key".

Each test gets its own emulator (fresh counters, faults and face-identity caches); starting one takes
milliseconds. Tests that need other settings construct ``Emulator(EmulatorSettings(...))`` themselves.
"""

from __future__ import annotations

import base64
import io
import subprocess
import wave
from pathlib import Path
from typing import AsyncIterator, List, Sequence

import cv2
import numpy as np
import pytest_asyncio

from agent.capture.synthetic import astronaut_png
from hume_emulator.emulator import Emulator, EmulatorSettings

TEST_KEY = "test-key"


@pytest_asyncio.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(EmulatorSettings(api_keys=(TEST_KEY,))) as emu:
        yield emu


# --------------------------------------------------------------------------------------------------
# Test media, made in memory (unit tests) or by espeak-ng (integration tests)


def astronaut_bgr() -> np.ndarray:
    """scikit-image's astronaut (512 x 512, one frontal face at about x=177 y=67 w=93) in OpenCV's BGR.

    Read from the wheel's PNG by OpenCV (the same pixels as ``skimage.data.astronaut()``): importing
    ``skimage.data`` took 0.5-1.2 s, and five test modules build their JPEG at import, so every pytest-xdist
    worker paid it while collecting."""
    image = cv2.imread(astronaut_png(), cv2.IMREAD_COLOR)
    assert image is not None, astronaut_png()
    return image


def encode_image(image: np.ndarray, ext: str = ".jpg") -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def mjpeg_avi(tmp_path: Path, frames: Sequence[np.ndarray], fps: float = 10.0) -> bytes:
    """A Motion-JPEG AVI of ``frames`` (OpenCV writes only to files: a test fixture in tmp_path)."""
    height, width = frames[0].shape[:2]
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path.read_bytes()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def wav_bytes(samples: np.ndarray, rate: int = 16000, width: int = 2) -> bytes:
    """A WAV container around int PCM samples (frames, or frames x channels)."""
    frames = np.asarray(samples)
    channels = 1 if frames.ndim == 1 else frames.shape[1]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(frames.tobytes())
    return buf.getvalue()


def voice(ms: float, rate: int = 16000, pitch_hz: float = 150.0, amplitude: float = 0.3) -> np.ndarray:
    """A voiced-sounding int16 signal (a harmonic tone with a slow wobble): the VAD calls it speech."""
    t = np.arange(round(ms * rate / 1000.0)) / rate
    wave_: np.ndarray = np.sum([np.sin(2 * np.pi * pitch_hz * k * t) / k for k in range(1, 6)], axis=0)
    envelope = 0.8 + 0.2 * np.sin(2 * np.pi * 3 * t)
    out: np.ndarray = (amplitude * 32767 * 0.5 * wave_ * envelope).astype(np.int16)
    return out


def silence(ms: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(round(ms * rate / 1000.0), dtype=np.int16)


def espeak_wav(text: str) -> bytes:
    """Real synthetic speech: espeak-ng's WAV (22.05 kHz mono 16-bit) on stdout, never on disk."""
    return subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True, timeout=30).stdout


def facemesh(n_faces: int = 1, mouth_open: float = 0.0, seed: int = 0) -> List[List[List[float]]]:
    """Plausible normalised landmarks (faces x 478 x [x, y, z]); ``mouth_open`` lowers the lower lip."""
    rng = np.random.default_rng(seed)
    faces = []
    for i in range(n_faces):
        angle = rng.uniform(0, 2 * np.pi, 478)
        radius = np.sqrt(rng.uniform(0, 1, 478))
        points = np.stack(
            [
                0.3 + 0.1 * i + 0.1 * radius * np.cos(angle),
                0.5 + 0.15 * radius * np.sin(angle),
                rng.normal(0, 0.02, 478),
            ],
            axis=1,
        )
        points[14, 1] = points[13, 1] + 0.01 + mouth_open * 0.05
        faces.append(points.round(6).tolist())
    return faces
