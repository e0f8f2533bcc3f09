"""Frame and audio sources that need no device: a synthetic visitor, espeak-ng speech and WAV files.

Apart from the device adapters (``camera.py``, ``microphone.py``) so that a kiosk's capture code and the
demo's and tests' stand-ins do not share a module; :mod:`agent.capture.factory` picks one from the config.
The speech and file sources have no clock of their own and are paced in real time here, so every consumer
sees the same timing whatever the source. Nothing is written to disk: espeak-ng's speech comes through a pipe.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import importlib.util
import math
import os
import time
import wave
from typing import Any, AsyncGenerator, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from agent.capture.camera import FrameSource
from agent.capture.microphone import AudioSource
from agent.errors import AgentError
from agent.media.audio import AUDIO_RATE, AudioChunk, AudioChunker, Resampler, decode_wav, to_mono
from agent.media.frames import Frame

# --------------------------------------------------------------------------------------------------
# A synthetic visitor


EXPRESSIONS = ("smile", "neutral", "eyes closed")
"""What the synthetic face can show: the astronaut's own smile, a closed neutral mouth painted over it,
and that neutral face with its eyes closed (see :func:`painted_expression`)."""


@dataclasses.dataclass(frozen=True)
class SceneStep:
    """``duration_s`` of the scene showing ``face``: None (empty), "a" (left) or "b" (right, mirrored),
    with one of :data:`EXPRESSIONS`."""

    duration_s: float
    face: Optional[str]
    expression: str = "smile"


EXPRESSION_SCENE = (
    SceneStep(15.0, "a", "smile"),
    SceneStep(15.0, "a", "neutral"),
    SceneStep(10.0, "a", "eyes closed"),
)
"""The synthetic source's default loop (``camera.source = "synthetic"``): one visitor who smiles, then
looks on neutrally, then closes her eyes, so the demo's face summaries visibly change every 10-15 s."""

_MOUTH = (47, 77)
_EYES = ((27, 33), (70, 35))
"""Centres of the mouth and the eyes in astronaut() relative to the Haar face box's top left (177, 67)."""


def painted_expression(image: np.ndarray, face_xy: Tuple[int, int], expression: str) -> np.ndarray:
    """``image`` (the astronaut, BGR) with ``expression`` painted on the face whose box starts at
    ``face_xy``: a copy; "smile" leaves it as it is.

    "neutral": the smile (teeth, raised lip corners) inpainted away and closed lips drawn in; "eyes
    closed": additionally the eyes inpainted, shaded as lids, with a lash line. Checked with OpenCV's
    cascades at 320x240 to 1280x960 and after JPEG q80: the smile cascade's best neighbour count drops
    from 129-173 to 28-51, the eye cascade finds no eye in 142 of 144 closed-eye frames, and the face
    cascade still finds the face in every frame.
    """
    import cv2  # noqa: PLC0415 - the "vision" extra, loaded only when used

    out: np.ndarray = image.copy()
    if expression == "smile":
        return out
    fx, fy = face_xy
    mask: np.ndarray = np.zeros(image.shape[:2], np.uint8)
    mouth = (fx + _MOUTH[0], fy + _MOUTH[1])
    cv2.ellipse(mask, (mouth[0], mouth[1] + 1), (25, 10), 0, 0, 360, 255, -1)
    eyes = [(fx + ex, fy + ey) for ex, ey in _EYES]
    if expression == "eyes closed":
        for eye in eyes:
            cv2.ellipse(mask, eye, (12, 7), 0, 0, 360, 255, -1)
    out = np.asarray(cv2.inpaint(out, mask, 5, cv2.INPAINT_TELEA))
    cv2.ellipse(out, (mouth[0], mouth[1] - 1), (17, 3), 0, 0, 360, (95, 105, 165), -1, cv2.LINE_AA)
    cv2.line(out, (mouth[0] - 16, mouth[1]), (mouth[0] + 16, mouth[1]), (70, 70, 120), 1, cv2.LINE_AA)
    if expression == "eyes closed":
        lids: np.ndarray = np.zeros(image.shape[:2], np.float32)
        for eye in eyes:
            cv2.ellipse(lids, eye, (11, 6), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
        lids = np.asarray(cv2.GaussianBlur(lids, (0, 0), 2.0))
        out = (out.astype(np.float32) * (1.0 - 0.15 * lids[..., None])).astype(np.uint8)
        for ex, ey in eyes:
            cv2.ellipse(out, (ex, ey + 2), (11, 3), 0, 0, 180, (45, 50, 70), 2, cv2.LINE_AA)
    return out


def astronaut_png() -> str:
    """Path of ``skimage.data.astronaut()``'s picture (public domain, NASA), found without importing skimage.

    Importing ``skimage.data`` costs about 30 MB of resident memory (SciPy and friends) for one picture
    that OpenCV reads directly from the wheel's data folder.
    """
    spec = importlib.util.find_spec("skimage")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = os.path.join(folder, "data", "astronaut.png")
        if os.path.isfile(path):
            return path
    raise AgentError(
        "camera.source = 'synthetic' needs scikit-image's sample picture (the demo and tests only): "
        "pip install 'hume-edge-agent[vision,demo]'"
    )


class SyntheticCamera(FrameSource):
    """A real face (``skimage.data.astronaut()``) on a plain wall, moving a little, driven by a scene script.

    With no scene, face "a" is always there, smiling. A scene such as ``[SceneStep(5, None), SceneStep(10,
    "a"), SceneStep(5, None), SceneStep(10, "b", "neutral")]`` plays a visit, an empty kiosk and a second
    visitor; after its last step it holds that step, or starts over with ``loop=True``. Face "b" is the
    astronaut mirrored, tinted and standing elsewhere: face trackers that assign ids by position see a
    different person. Faces are about a quarter of the frame height (~125 px at 480), a visitor at kiosk
    distance. Each (face, expression) picture is painted once, at open or first use (a few ms).
    """

    _FACE_BOX = (177, 66, 95, 95)
    """Where Haar finds the face in astronaut() (x, y, w, h); the crop is framed around it."""

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        fps: float = 2.0,
        scene: Sequence[SceneStep] = (),
        loop: bool = False,
        **retry: float,
    ) -> None:
        for step in scene:
            if (
                step.face not in (None, "a", "b")
                or step.duration_s <= 0
                or step.expression not in EXPRESSIONS
            ):
                raise ValueError(
                    f"scene step {step}: face must be None, 'a' or 'b', duration_s > 0 and expression "
                    f"one of {', '.join(EXPRESSIONS)}"
                )
        self.size = (width, height)
        self.scene = tuple(scene)
        self.loop = loop
        self._heads: Dict[Tuple[str, str], np.ndarray] = {}
        self._background = self._wall(width, height)
        self._started = 0.0
        super().__init__(fps, **retry)

    def describe(self) -> str:
        return f"synthetic face {self.size[0]}x{self.size[1]}"

    @staticmethod
    def _wall(width: int, height: int) -> np.ndarray:
        shade = np.linspace(170, 120, height, dtype=np.float32)[:, None, None]
        tint = np.array([1.0, 0.97, 0.92], np.float32)
        wall: np.ndarray = np.empty((height, width, 3), np.uint8)
        wall[:] = shade * tint
        return wall

    def _head(self, face: str, expression: str) -> np.ndarray:
        """Face "a" or "b" showing ``expression``, scaled for the frame (painted on first use)."""
        cached = self._heads.get((face, expression))
        if cached is not None:
            return cached
        import cv2  # noqa: PLC0415 - the "vision" extra, loaded only when used

        x, y, w, h = self._FACE_BOX
        path = astronaut_png()
        original = cv2.imread(path)
        if original is None:
            raise AgentError(f"cannot read the synthetic camera's picture {path}")
        painted = painted_expression(np.asarray(original), (x, y + 1), expression)
        crop = painted[max(0, y - 50) : y + h + 95, max(0, x - 50) : x + w + 55]
        scale = 0.26 * self.size[1] / h
        size = (int(crop.shape[1] * scale), int(crop.shape[0] * scale))
        head: np.ndarray = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
        if face == "b":
            tint = np.array([0.85, 0.95, 1.15], np.float32)  # warmer (BGR), so "b" does not look like "a"
            head = np.clip(head[:, ::-1].astype(np.float32) * tint, 0, 255).astype(np.uint8)
        self._heads[(face, expression)] = head
        return head

    def step_at(self, t: float) -> SceneStep:
        """The scene step shown ``t`` seconds after the source started."""
        if not self.scene:
            return SceneStep(math.inf, "a")
        total = sum(s.duration_s for s in self.scene)
        if self.loop:
            t %= total
        for step in self.scene:
            if t < step.duration_s:
                return step
            t -= step.duration_s
        return self.scene[-1]

    def face_at(self, t: float) -> Optional[str]:
        """Which face the scene shows ``t`` seconds after the source started."""
        return self.step_at(t).face

    def render(self, t: float) -> np.ndarray:
        """The BGR picture at ``t`` seconds: deterministic, so tests can ask for any moment."""
        image: np.ndarray = self._background.copy()
        step = self.step_at(t)
        if step.face is None:
            return image
        head = self._head(step.face, step.expression)
        hh, hw = head.shape[:2]
        width, height = self.size
        centre = 0.35 if step.face == "a" else 0.65
        x = int(centre * width - hw / 2 + 12 * math.sin(t * 1.3))
        y = int((height - hh) / 2 + 6 * math.sin(t * 0.9))
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(width, x + hw), min(height, y + hh)
        image[y0:y1, x0:x1] = head[y0 - y : y1 - y, x0 - x : x1 - x]
        return image

    def _open(self) -> None:
        for step in self.scene or (SceneStep(1.0, "a"),):
            if step.face is not None:
                self._head(step.face, step.expression)
        if not self._started:
            self._started = time.monotonic()

    def _read(self) -> Frame:
        return Frame(self.render(time.monotonic() - self._started), "bgr", time.time())

    def _close(self) -> None:
        """Nothing to release."""


# --------------------------------------------------------------------------------------------------
# Synthetic speech and WAV files


@dataclasses.dataclass(frozen=True)
class SpokenLine:
    """One line of the synthetic speaker and how espeak-ng says it (its ``-s``, ``-p`` and ``-a`` flags)."""

    text: str
    speed_wpm: int = 175
    pitch: int = 50
    """0-99."""
    amplitude: int = 100
    """0-200."""

    def espeak_flags(self) -> List[str]:
        return ["-s", str(self.speed_wpm), "-p", str(self.pitch), "-a", str(self.amplitude)]


LIVELY = {"speed_wpm": 210, "pitch": 75, "amplitude": 180}
CALM = {"speed_wpm": 120, "pitch": 25, "amplitude": 60}
"""Measured by the emulator's voice cues: lively lines read -15 dBFS, ~130 Hz, ~6.5 syllables/s
(liveliness 0.7-0.9); calm ones -26 dBFS, ~85 Hz, ~5 syllables/s (0.1-0.2); espeak-ng's default 0.3-0.5."""

SENTENCES = (
    SpokenLine("Hello! Welcome to the exhibition. I am so happy you came by!", **LIVELY),
    SpokenLine("Take your time. There is no hurry here.", **CALM),
    SpokenLine("Wow, look at that! I did not expect it to be this big!", **LIVELY),
    SpokenLine("Hmm. Let me think about this one for a moment.", **CALM),
)
"""What the synthetic speaker says, in turn, each followed by a pause: lively and calm lines alternate,
so the demo's prosody summaries alternate between Excitement / Interest and Calmness / Boredom."""


def child_env(environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment a child process gets: enough to find programs and decode text, nothing else.

    The agent's own environment may hold ``HUME_API_KEY`` and ``CREDENTIALS_DIRECTORY``; a child (espeak-ng)
    needs neither, and what it does not have it cannot leak.
    """
    env = os.environ if environ is None else environ
    return {"PATH": env.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


# --------------------------------------------------------------------------------------------------
# Sources without a clock: paced here


class _PacedSource(AudioSource):
    """Emits chunks when real time has caught up with them, as a microphone would."""

    @abc.abstractmethod
    def _blocks(self) -> AsyncGenerator[np.ndarray, None]:
        """16 kHz int16 sample blocks, endlessly; raises when the underlying input fails."""

    async def chunks(self) -> AsyncGenerator[AudioChunk, None]:
        chunk_s = self.chunk_ms / 1000
        while True:
            chunker = AudioChunker(self.chunk_ms)
            due = time.monotonic() + chunk_s
            try:
                async for block in self._blocks():
                    for pcm in chunker.push(block):
                        # A chunk is due once its last sample "has been spoken"; after a stall (a slow
                        # consumer) the clock restarts instead of bursting to catch up.
                        now = time.monotonic()
                        if now - due > chunk_s:
                            due = now
                        await asyncio.sleep(max(0.0, due - now))
                        due += chunk_s
                        self.recovery.ok()
                        self.chunks_sent += 1
                        yield AudioChunk(pcm, time.time() - chunk_s, time.monotonic() - chunk_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any input failure: wait, start over
                await asyncio.sleep(self.recovery.failed(exc))


class WavFileSource(_PacedSource):
    """A WAV file (16-bit PCM, any rate and channel count), looped, converted to 16 kHz mono."""

    _BLOCK_S = 0.5

    def __init__(self, path: str, chunk_ms: int = 1000, **retry: float) -> None:
        self.path = path
        super().__init__(chunk_ms, **retry)

    def describe(self) -> str:
        return f"WAV file {self.path}"

    def _open(self) -> Tuple[Any, Resampler, int]:
        w = wave.open(self.path, "rb")  # noqa: SIM115 - closed by _blocks, which reads it in slices
        if w.getsampwidth() != 2 or w.getnframes() == 0:
            w.close()
            raise ValueError(
                f"{self.path}: {w.getsampwidth() * 8}-bit, {w.getnframes()} frames; need non-empty 16-bit PCM"
            )
        return w, Resampler(w.getframerate()), w.getnchannels()

    async def _blocks(self) -> AsyncGenerator[np.ndarray, None]:
        w, resampler, channels = await asyncio.to_thread(self._open)
        try:
            frames = int(w.getframerate() * self._BLOCK_S)
            while True:
                raw = await asyncio.to_thread(w.readframes, frames)
                if not raw:
                    w.rewind()
                    continue
                yield resampler.process(to_mono(np.frombuffer(raw, dtype="<i2"), channels))
        finally:
            w.close()


class SpeechSource(_PacedSource):
    """Synthetic speech: espeak-ng says a few lines (plain text: its default voice), each followed by
    silence, looped.

    espeak-ng writes its WAV to a pipe (``--stdout``), never to disk; the whole loop (~25 s, ~0.8 MB) is
    synthesised once and kept in memory.
    """

    def __init__(
        self,
        chunk_ms: int = 1000,
        sentences: Sequence[Union[str, SpokenLine]] = SENTENCES,
        pause_s: float = 2.0,
        voice: str = "en",
        **retry: float,
    ) -> None:
        if not sentences or pause_s < 0:
            raise ValueError("speech: give at least one sentence and a pause_s >= 0")
        self.sentences = tuple(SpokenLine(s) if isinstance(s, str) else s for s in sentences)
        self.pause_s = pause_s
        self.voice = voice
        self._loop: Optional[np.ndarray] = None
        super().__init__(chunk_ms, **retry)

    def describe(self) -> str:
        return f"synthetic speech (espeak-ng, {len(self.sentences)} sentences)"

    async def say(self, line: Union[str, SpokenLine]) -> np.ndarray:
        """``line`` spoken by espeak-ng, as 16 kHz int16 samples."""
        spoken = SpokenLine(line) if isinstance(line, str) else line
        proc = await asyncio.create_subprocess_exec(
            "espeak-ng",
            "--stdout",
            "-v",
            self.voice,
            *spoken.espeak_flags(),
            spoken.text,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(),
        )
        try:
            out, err = await proc.communicate()
        except BaseException:
            # Cancelled mid-sentence (the agent stopping): end espeak-ng and reap it here, or its transport
            # is collected after the loop has closed ("Event loop is closed" at exit).
            if proc.returncode is None:
                proc.kill()
            await proc.communicate()  # reaped, and its pipes read to their end: the transport closes now
            raise
        if proc.returncode != 0:
            raise OSError(f"espeak-ng exited {proc.returncode}: {err.decode(errors='replace').strip()}")
        samples, rate = decode_wav(out)
        return Resampler(rate).process(samples)

    async def speech_loop(self) -> np.ndarray:
        """One pass of the script: each sentence, then ``pause_s`` of silence."""
        if self._loop is None:
            pause: np.ndarray = np.zeros(int(self.pause_s * AUDIO_RATE), np.int16)
            parts: List[np.ndarray] = []
            for line in self.sentences:
                parts += [await self.say(line), pause]
            self._loop = np.concatenate(parts)
        return self._loop

    async def _blocks(self) -> AsyncGenerator[np.ndarray, None]:
        loop = await self.speech_loop()
        while True:
            yield loop
