"""Audio sources delivering 16 kHz mono s16le chunks of ``chunk_ms``: the base class and the PyAudio device.

The WAV-file and synthetic-speech sources live in :mod:`agent.capture.synthetic`;
:mod:`agent.capture.factory` picks a source.

The PyAudio microphone reads on its own daemon thread (a device's clock paces it) and hands chunks to the
event loop through a bounded queue. A lost device is logged once, retried with backoff and logged once when
back; only :class:`asyncio.CancelledError` leaves :meth:`AudioSource.chunks`. No audio is ever written
to disk.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import threading
import time
from typing import Any, AsyncGenerator, Dict, List, Optional, Tuple

import numpy as np

from agent.capture.device import CLOSE_TIMEOUT_S, Recovery, join_thread
from agent.media.audio import AudioChunk, AudioChunker, Resampler, to_mono

_LOGGER = logging.getLogger(__name__)


class AudioSource(abc.ABC):
    """A microphone, real or not."""

    def __init__(self, chunk_ms: int, *, retry_initial_s: float = 0.5, retry_max_s: float = 10.0) -> None:
        if chunk_ms <= 0:
            raise ValueError(f"chunk_ms {chunk_ms}: must be > 0")
        self.chunk_ms = chunk_ms
        self.recovery = Recovery(_LOGGER, self.describe(), retry_initial_s, retry_max_s)
        self.chunks_sent = 0

    @abc.abstractmethod
    def describe(self) -> str:
        """The source as a person would name it in a log line."""

    @abc.abstractmethod
    def chunks(self) -> AsyncGenerator[AudioChunk, None]:
        """Chunks of ``chunk_ms`` in real time, forever."""

    def status(self) -> Dict[str, Any]:
        """Counters for the agent's status file."""
        return {"source": self.describe(), "chunks": self.chunks_sent, **self.recovery.status()}

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """End the source's capture thread, if it has one (see :meth:`FrameSource.close`); False if it is
        still busy after ``timeout_s``. Sources that run on the event loop have nothing to end."""
        return True


# --------------------------------------------------------------------------------------------------
# PyAudio

_alsa_quiet: List[Any] = []
"""The installed no-op ALSA error handler, kept referenced so ctypes does not free it."""


def quiet_alsa() -> None:
    """Silence alsa-lib's own error printing for the rest of the process.

    Every ``PyAudio()`` makes alsa-lib complain about each PCM it cannot open (dozens of stderr lines on a
    Pi); called once a device failure has been logged, so the journal is not flooded on every retry.
    """
    name = ctypes.util.find_library("asound")
    if _alsa_quiet or name is None:
        return
    handler_type = ctypes.CFUNCTYPE(
        None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
    )
    handler = handler_type(lambda *_: None)
    try:
        ctypes.CDLL(name).snd_lib_error_set_handler(handler)
    except (OSError, AttributeError):
        return
    _alsa_quiet.append(handler)


class PyAudioMicrophone(AudioSource):
    """A sound card input through PyAudio (PortAudio), at its native rate, resampled to 16 kHz mono.

    A fresh ``PyAudio()`` is made for every (re)open: PortAudio only learns about devices plugged in after
    it was initialised by initialising again. An overrun (we read too late and the card dropped samples)
    is counted and capture continues; PyAudio raises instead of returning the period it was detected on,
    so that period is lost with it. Chunks wait for the consumer in a queue of at most ``max_queue_s``;
    past it the oldest is dropped and counted.
    """

    PERIOD_S = 0.1
    """Audio per blocking read: short enough to notice a lost device soon, long enough to be cheap."""

    def __init__(
        self,
        device: str = "",
        device_rate: int = 0,
        chunk_ms: int = 1000,
        max_queue_s: float = 10.0,
        **retry: float,
    ) -> None:
        self.device = device
        self.device_rate = device_rate
        self.overruns = 0
        self.dropped = 0
        self.opened_as: Optional[Tuple[str, int, int]] = None
        """(device name, rate, channels) of the open stream, for status and the on-device check."""
        self._max_chunks = max(1, int(max_queue_s * 1000 / chunk_ms))
        self._capturing: Optional[Tuple[threading.Thread, threading.Event]] = None
        """The capture thread of the running ``chunks()`` and its stop flag, for :meth:`close`."""
        super().__init__(chunk_ms, **retry)

    def describe(self) -> str:
        return f"microphone {self.device!r}" if self.device else "default microphone"

    def status(self) -> Dict[str, Any]:
        return {**super().status(), "overruns": self.overruns, "dropped": self.dropped}

    @staticmethod
    def input_devices(pa: Any) -> List[Tuple[int, str, int, int]]:
        """(index, name, input channels, default rate) of every input device PortAudio knows."""
        found = []
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            if int(info["maxInputChannels"]) > 0:
                found.append(
                    (i, str(info["name"]), int(info["maxInputChannels"]), int(info["defaultSampleRate"]))
                )
        return found

    def _pick(self, pa: Any) -> Tuple[int, str, int, int]:
        devices = self.input_devices(pa)
        wanted = self.device.strip()
        if not wanted:
            info = pa.get_default_input_device_info()  # raises OSError when there is none
            index = int(info["index"])
            match = [d for d in devices if d[0] == index]
        elif wanted.isdigit():
            match = [d for d in devices if d[0] == int(wanted)]
        else:
            match = [d for d in devices if wanted.lower() in d[1].lower()]
        if not match:
            names = ", ".join(f"{i}: {n}" for i, n, _, _ in devices) or "none"
            raise OSError(f"no input device matches {wanted or 'the default'!r} (inputs found: {names})")
        return match[0]

    def _open(self) -> Tuple[Any, Any, int, int]:
        """(PyAudio, input stream, rate, channels); raises OSError when the device is not there."""
        import pyaudio  # noqa: PLC0415 - the "audio" extra, loaded only when used

        pa = pyaudio.PyAudio()
        try:
            index, name, max_channels, default_rate = self._pick(pa)
            rate = self.device_rate or default_rate

            def open_stream(channels: int) -> Any:
                return pa.open(
                    format=pyaudio.paInt16,
                    channels=channels,
                    rate=rate,
                    input=True,
                    input_device_index=index,
                    frames_per_buffer=int(rate * self.PERIOD_S),
                )

            channels = 1
            try:
                stream = open_stream(channels)
            except (OSError, ValueError):
                if max_channels < 2:
                    raise
                channels = 2  # some USB microphones only offer stereo: downmixed below
                stream = open_stream(channels)
            self.opened_as = (name, rate, channels)
            return pa, stream, rate, channels
        except BaseException:
            pa.terminate()
            raise

    def _read(self, stream: Any, frames: int) -> Optional[bytes]:
        """One period of audio; None after an overrun (counted). Raises OSError when the device is gone."""
        import pyaudio  # noqa: PLC0415 - the "audio" extra, loaded only when used

        try:
            return bytes(stream.read(frames, exception_on_overflow=True))
        except OSError as exc:
            if exc.args and exc.args[0] == pyaudio.paInputOverflowed:
                self.overruns += 1
                return None
            raise

    def _stream(self, stream: Any, rate: int, channels: int, deliver: Any, stop: threading.Event) -> None:
        """Read, resample, chunk and hand over until stopped; raises when the device fails."""
        chunk_s = self.chunk_ms / 1000
        resampler, chunker = Resampler(rate), AudioChunker(self.chunk_ms)
        while not stop.is_set():
            raw = self._read(stream, int(rate * self.PERIOD_S))
            if raw is None:
                continue
            self.recovery.ok()
            now, now_mono = time.time(), time.monotonic()  # here, not where the queue hands it over
            for pcm in chunker.push(resampler.process(to_mono(np.frombuffer(raw, dtype="<i2"), channels))):
                deliver(AudioChunk(pcm, now - chunk_s, now_mono - chunk_s))

    def _capture(self, deliver: Any, stop: threading.Event) -> None:
        """The capture thread: open, stream, and after any failure close, wait and reopen."""
        while not stop.is_set():
            error: Optional[Exception] = None
            try:
                pa, stream, rate, channels = self._open()
            except Exception as exc:  # the device is not there (yet)
                delay = self.recovery.failed(exc)
                quiet_alsa()  # ALSA has had its say once; retries should not repeat it
                stop.wait(delay)
                continue
            try:
                self._stream(stream, rate, channels, deliver, stop)
            except Exception as exc:  # lost mid-stream: close, then reopen
                error = exc
            finally:  # a dead device may fail its close too: nothing more to do about it
                with contextlib.suppress(Exception):
                    stream.close()
                with contextlib.suppress(Exception):
                    pa.terminate()
            if error is not None:
                stop.wait(self.recovery.failed(error))

    async def chunks(self) -> AsyncGenerator[AudioChunk, None]:
        loop = asyncio.get_running_loop()
        pending: asyncio.Queue[AudioChunk] = asyncio.Queue()
        stop = threading.Event()

        def put(chunk: AudioChunk) -> None:
            if pending.qsize() >= self._max_chunks:
                pending.get_nowait()
                self.dropped += 1
            pending.put_nowait(chunk)

        def deliver(chunk: AudioChunk) -> None:
            try:
                loop.call_soon_threadsafe(put, chunk)
            except RuntimeError:  # the loop has closed under us
                stop.set()

        thread = threading.Thread(target=self._capture, args=(deliver, stop), name="microphone", daemon=True)
        self._capturing = (thread, stop)
        thread.start()
        try:
            while True:
                chunk = await pending.get()
                self.chunks_sent += 1
                yield chunk
        finally:
            stop.set()

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        if self._capturing is None:
            return True
        thread, stop = self._capturing
        stop.set()
        if not await join_thread(thread, timeout_s):
            return False
        self._capturing = None
        return True
