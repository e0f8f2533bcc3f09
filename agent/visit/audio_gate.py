"""Pay for voices, not silence: which microphone audio of a visit goes to Hume.

Hume bills audio by the second, silence included (v1 docs: "silence counts"; v0 per second of each
payload), and at a kiosk most of a visit is silent: a visitor reads the screen, looks, and says a
sentence now and then. The gate passes only audio near voice: every 100 ms frame holding at least
40 ms of 20 ms sub-frames above -40 dBFS (the same energy rule as :func:`agent.media.audio.voice_activity`)
opens it; ``gate_preroll_ms`` of audio before that frame is sent with it (held back until then) and
``gate_hangover_ms`` after the last voiced frame follows it. Everything else is not sent.

Why those margins: an energy gate hears a word only once it is loud, so the soft start of an utterance
(breath, an "h", a fricative) lies just before the first loud frame; 300 ms of pre-roll keeps the onset
intact for prosody. The hang-over keeps the pauses between words and lets the server's own voice
detection see the utterance end: Hume's v1 VAD (its emulator: pauses under 250 ms are bridged) closes
an utterance and sends its ``speech_ended`` measurement only after hearing silence, so 700 ms of
trailing quiet both ends every utterance promptly and leaves the server a noise floor to measure
against. Pacing is unchanged: the gate only ever sends less than real time, and pre-roll frames are
queued in front of the voice they precede, so v1's "at most 1 s of audio per second" holds.

Measured: a visit of 18 s with two sentences six seconds apart sends v1 5.0 s of audio instead of
18.0 s, and the server's VAD finds the same 3 utterances (``tests/integration/test_silence_gate.py``);
over a scripted kiosk-day on v1 the bill is 0.53x that of sending all of each visit's audio, and v0's
audio bytes per visitor-minute drop to 0.77x (``scripts/bench/kioskday.py``, ``media.py``).

Policy, the same on both APIs but for the hang-over that spills into a silent chunk:

* v0: a payload of pure silence is never sent: a chunk is passed on only with voice in it (and its
  margins); the hang-over that spills into the next, silent chunk is dropped, because on v0 it would
  be a payload of its own, billed and measured as "no speech". v0 keeps 5 s of stream context
  (``stream_window_ms``), so the end of an utterance needs no trailing silence there.
* v1: the session's audio is the concatenation of the voiced stretches and their margins. The server
  VAD still sees every utterance start and end (the margins), results map back to capture times
  through the client's timeline, and a visitor who never speaks opens no audio session at all (which
  also saves v1's 10 s minimum). ``silence_gate = false`` streams the whole visit and lets the server's
  VAD find the speech, at the price of every silent second.

Before the notice: a visit's audio may leave only once its notice is out (``agent.privacy.state``), and the
hub passes the monotonic moment that happened (``since_mono``). A chunk is handed over when its *last*
sample is captured, so the first chunk after that moment holds up to ``chunk_ms`` (1 s by default) captured
before it, and pre-roll could reach back further; that part is cut off at the sample by each chunk's
``captured_mono`` stamp and counted (``unannounced_ms``), never sent, never held as pre-roll.

Pure: chunks and their capture times in, pieces out; nothing here reads a clock.
"""

from __future__ import annotations

import collections
import math
from typing import Deque, List

import numpy as np

from agent.config import MicrophoneConfig
from agent.media.audio import AUDIO_RATE, BYTES_PER_MS, VOICE_FRAME_MS, AudioChunk, voiced_frames

FRAME_MS = 100
"""The gate decides per 100 ms: v1's recommended frame size, fine enough to cut a pause between
sentences, coarse enough that one click (20 ms) never opens it."""
MIN_VOICED_MS = 40
"""Voiced sub-frames a gate frame needs: two of five, so a single click stays out."""


class AudioGate:
    """Voiced audio with its pre-roll and hang-over in, silence out (see the module doc)."""

    def __init__(self, cfg: MicrophoneConfig, spill_hangover: bool = True) -> None:
        """``spill_hangover``: send hang-over that falls into a chunk without voice (v1: the server's VAD
        needs it to end the utterance); False for v0, where it would be a payload of pure silence."""
        self.enabled = cfg.silence_gate
        self.spill_hangover = spill_hangover
        self.preroll_frames = -(-cfg.gate_preroll_ms // FRAME_MS)
        self.hangover_ms = cfg.gate_hangover_ms
        self._held: Deque[AudioChunk] = collections.deque()
        self._hang_ms = 0
        self.passed_ms = 0
        """Audio let through so far."""
        self.skipped_ms = 0
        """Audio held back as silence so far (pre-roll that was later sent is not counted)."""
        self.unannounced_ms = 0
        """Audio dropped because it was captured before its visit's notice was out (see the module doc)."""

    def reset(self) -> None:
        """Forget held pre-roll and any hang-over: a visit boundary, or nothing is being streamed."""
        self.skipped_ms += sum(len(f.pcm16) for f in self._held) // BYTES_PER_MS
        self._held.clear()
        self._hang_ms = 0

    def admit(self, chunk: AudioChunk, *, since_mono: float) -> List[AudioChunk]:
        """The parts of ``chunk`` (and of held pre-roll) to send now, each contiguous, oldest first.

        ``since_mono``: when media of this visit became allowed (``time.monotonic()``); nothing captured
        before it is sent or held (counted in :attr:`unannounced_ms`)."""
        while self._held and self._held[0].captured_mono < since_mono:  # the hub resets first: defence
            self.unannounced_ms += len(self._held.popleft().pcm16) // BYTES_PER_MS
        late = captured_since(chunk, since_mono)
        self.unannounced_ms += (len(chunk.pcm16) - len(late.pcm16)) // BYTES_PER_MS
        chunk = late
        if not chunk.pcm16:
            return []
        if not self.enabled:
            self.passed_ms += len(chunk.pcm16) // BYTES_PER_MS
            return [chunk]
        step = FRAME_MS * BYTES_PER_MS
        data = chunk.pcm16[: len(chunk.pcm16) - len(chunk.pcm16) % 2]
        loud = voiced_frames(data)
        per_frame = FRAME_MS // VOICE_FRAME_MS
        out: List[AudioChunk] = []
        heard = False
        for i, start in enumerate(range(0, len(data), step)):
            offset_s = start / BYTES_PER_MS / 1000
            frame = AudioChunk(
                data[start : start + step], chunk.captured_at + offset_s, chunk.captured_mono + offset_s
            )
            voiced = int(np.count_nonzero(loud[i * per_frame : (i + 1) * per_frame])) * VOICE_FRAME_MS
            frame_ms = len(frame.pcm16) // BYTES_PER_MS
            if voiced >= MIN_VOICED_MS:
                heard = True
                while self._held:
                    _append(out, self._held.popleft())
                _append(out, frame)
                self._hang_ms = self.hangover_ms
            elif self._hang_ms > 0:
                _append(out, frame)
                self._hang_ms -= frame_ms
            else:
                self._held.append(frame)
                if len(self._held) > self.preroll_frames:
                    dropped = self._held.popleft()
                    self.skipped_ms += len(dropped.pcm16) // BYTES_PER_MS
        sent_ms = sum(len(piece.pcm16) for piece in out) // BYTES_PER_MS
        if not heard and not self.spill_hangover:
            self.skipped_ms += sent_ms
            return []
        self.passed_ms += sent_ms
        return out


def _append(out: List[AudioChunk], frame: AudioChunk) -> None:
    """Add ``frame``, merged into the last piece when it continues it without a gap."""
    if out:
        last = out[-1]
        end = last.captured_at + len(last.pcm16) / BYTES_PER_MS / 1000
        if abs(frame.captured_at - end) < 0.001:
            out[-1] = AudioChunk(last.pcm16 + frame.pcm16, last.captured_at, last.captured_mono)
            return
    out.append(frame)


def captured_since(chunk: AudioChunk, since_mono: float) -> AudioChunk:
    """The part of ``chunk`` captured at or after ``since_mono`` (by its ``captured_mono``), cut at the
    first whole sample from then on (empty if all of it came before)."""
    early_s = since_mono - chunk.captured_mono
    if early_s <= 0:
        return chunk
    cut = min(len(chunk.pcm16) // 2, math.ceil(early_s * AUDIO_RATE - 1e-6)) * 2  # float noise: no sample
    shift_s = cut / BYTES_PER_MS / 1000
    return AudioChunk(chunk.pcm16[cut:], chunk.captured_at + shift_s, chunk.captured_mono + shift_s)
