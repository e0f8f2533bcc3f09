"""A microphone for machines with no sound card: ALSA's ``file`` PCM fed with espeak-ng speech through a FIFO.

How it works: ``ALSA_CONFIG_PATH`` points alsa-lib at a complete
config of our own, read when PortAudio initialises, so it is set in the environment before any
``PyAudio()``. ``pcm.fakemic`` is a ``file`` PCM over ``null`` whose ``infile`` is a FIFO this fixture
writes in real time, so reads are paced like a real microphone. The FIFO is opened O_RDWR before PortAudio
enumerates devices (it opens every PCM; a FIFO with no writer would block it forever). The plugin passes
raw bytes: the FIFO carries s16le mono at exactly the rate the code under test opens the device at, made
by sox from espeak-ng's WAV. No ``plug``: any conversion there drops or scrambles samples.

Device loss: :meth:`FakeMic.unplug` rewrites the config without ``fakemic`` (PortAudio re-reads it on its
next initialisation; ``default`` stays, as PortAudio asserts when no device is left) and :meth:`FakeMic.plug`
restores it.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np
import pytest

from agent.capture.microphone import PyAudioMicrophone

DEVICE = "fakemic"
RATE = 48000
"""The rate the tests open the device at: a common USB microphone rate, so the resampler is exercised."""
PERIOD_S = PyAudioMicrophone.PERIOD_S
"""The feeder writes whole periods of the size the microphone reads: the file plugin makes one read() per
period and fills whatever a short read leaves with stale bytes, so every write must be exactly that."""


def speech(text: str, rate: int, workdir: Path) -> np.ndarray:
    """``text`` spoken by espeak-ng, converted by sox to mono s16le at ``rate`` (files in the test's tmp)."""
    wav, raw = workdir / "speech.wav", workdir / "speech.raw"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True, timeout=30)
    subprocess.run(
        ["sox", str(wav), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer", "-L", "-t", "raw",
         str(raw)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return np.fromfile(raw, dtype="<i2")


class FakeMic:
    """The ALSA config, the FIFO and a feeder thread that writes queued audio into it in real time."""

    def __init__(self, workdir: Path, rate: int = RATE) -> None:
        self.rate = rate
        self.config_path = workdir / "asound.conf"
        self.fifo = workdir / "mic.fifo"
        os.mkfifo(self.fifo)
        self._fd = os.open(self.fifo, os.O_RDWR)
        self._queue: List[np.ndarray] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.plug()

    def _write_config(self, with_mic: bool) -> None:
        mic = f'pcm.{DEVICE} {{ type file slave.pcm "null" file "/dev/null" infile "{self.fifo}" }}\n'
        text = "pcm.null { type null }\n" + (
            mic + f"pcm.default {DEVICE}\n" if with_mic else "pcm.default null\n"
        )
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.config_path)

    def plug(self) -> None:
        """The device exists (from the next PortAudio initialisation on)."""
        self._write_config(True)

    def unplug(self) -> None:
        """The device is gone (from the next PortAudio initialisation on)."""
        self._write_config(False)

    def play(self, samples: np.ndarray) -> None:
        """Queue samples (int16 at ``rate``) to be spoken after what is already queued."""
        with self._lock:
            self._queue.append(np.asarray(samples, dtype="<i2"))

    def start(self) -> None:
        """Start writing: queued audio, then silence, at real-time pace with a small lead."""
        self._thread = threading.Thread(target=self._feed, name="fakemic-feeder", daemon=True)
        self._thread.start()

    def _next_period(self, n: int) -> bytes:
        out = np.zeros(n, "<i2")
        filled = 0
        with self._lock:
            while filled < n and self._queue:
                head = self._queue[0]
                take = min(n - filled, len(head))
                out[filled : filled + take] = head[:take]
                filled += take
                if take == len(head):
                    self._queue.pop(0)
                else:
                    self._queue[0] = head[take:]
        return out.tobytes()

    def _feed(self) -> None:
        n = int(self.rate * PERIOD_S)
        start = time.monotonic() - 2 * PERIOD_S  # two periods ahead: the reader never waits on us
        written = 0
        while not self._stop.is_set():
            ahead = start + written * PERIOD_S - time.monotonic()
            if ahead > 0:
                self._stop.wait(ahead)
                continue
            try:
                os.write(self._fd, self._next_period(n))
            except OSError:
                return
            written += 1

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        os.close(self._fd)  # a reader still blocked on the FIFO now sees end of file


@pytest.fixture
def fake_mic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMic]:
    """An ALSA microphone named ``fakemic`` at 48 kHz mono, selected via ALSA_CONFIG_PATH for this test."""
    mic = FakeMic(tmp_path)
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(mic.config_path))
    try:
        yield mic
    finally:
        mic.close()
