"""The silence gate: silence inside a visit is not sent; speech after silence keeps its onset."""

from __future__ import annotations

from typing import List

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import MicrophoneConfig
from agent.media.audio import AUDIO_RATE, AudioChunk
from agent.visit.audio_gate import AudioGate

RATE_MS = AUDIO_RATE // 1000


def _noise(ms: int, rng: np.random.Generator) -> np.ndarray:
    """A quiet room: about -60 dBFS."""
    return rng.normal(0, 33, ms * RATE_MS).astype(np.int16)


def _voice(ms: int) -> np.ndarray:
    """A voiced stretch at about -20 dBFS (a 180 Hz buzz with its harmonics)."""
    t = np.arange(ms * RATE_MS) / AUDIO_RATE
    wave = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 6))
    return (2500 * wave).astype(np.int16)


def _chunks(signal: np.ndarray, chunk_ms: int, t0: float = 1000.0) -> List[AudioChunk]:
    n = chunk_ms * RATE_MS
    return [
        AudioChunk(signal[i : i + n].astype("<i2").tobytes(), t0 + i / AUDIO_RATE, t0 - 900 + i / AUDIO_RATE)
        for i in range(0, len(signal), n)
    ]


def _run(gate: AudioGate, chunks: List[AudioChunk], since_mono: float = float("-inf")) -> List[AudioChunk]:
    return [piece for chunk in chunks for piece in gate.admit(chunk, since_mono=since_mono)]


def _span_ms(piece: AudioChunk, t0: float) -> tuple:
    start = round((piece.captured_at - t0) * 1000)
    return start, start + len(piece.pcm16) // (2 * RATE_MS)


def test_silence_inside_a_visit_is_not_sent_and_the_onset_after_it_is() -> None:
    rng = np.random.default_rng(1)
    # 2 s speech, 6 s silence, 2 s speech (onset at 8000 ms), 2 s silence; 1 s chunks as the microphone gives.
    signal = np.concatenate([_voice(2000), _noise(6000, rng), _voice(2000), _noise(2000, rng)])
    gate = AudioGate(MicrophoneConfig())
    pieces = _run(gate, _chunks(signal, 1000))
    spans = [_span_ms(p, 1000.0) for p in pieces]
    # Two stretches sent: each utterance with its hang-over; the second starts with its pre-roll.
    merged: List[List[int]] = []
    for start, end in spans:
        if merged and start == merged[-1][1]:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    assert merged == [[0, 2700], [7700, 10700]]
    # Nothing of the silent stretch between 2.7 s and 7.7 s went out.
    assert all(end <= 2700 or start >= 7700 for start, end in spans)
    # The onset is intact: the samples at 7.7-8.0 s (pre-roll) and the first voiced ones are sent as captured.
    second = b"".join(p.pcm16 for p in pieces if _span_ms(p, 1000.0)[0] >= 7700)
    assert second[: 2300 * 2 * RATE_MS] == signal[7700 * RATE_MS : 10000 * RATE_MS].astype("<i2").tobytes()
    assert gate.passed_ms == 2700 + 3000
    assert gate.skipped_ms == 12000 - 5700 - 300  # the last 300 ms are still held as pre-roll


def test_a_visit_without_voice_sends_nothing_and_a_click_does_not_open_the_gate() -> None:
    rng = np.random.default_rng(2)
    signal = _noise(5000, rng)
    signal[2000 * RATE_MS : 2020 * RATE_MS] = 20000  # one 20 ms click
    assert _run(AudioGate(MicrophoneConfig()), _chunks(signal, 1000)) == []


def test_gate_off_passes_everything_and_reset_forgets_the_preroll() -> None:
    rng = np.random.default_rng(3)
    chunks = _chunks(_noise(3000, rng), 1000)
    assert _run(AudioGate(MicrophoneConfig(silence_gate=False)), chunks) == chunks
    gate = AudioGate(MicrophoneConfig())
    _run(gate, chunks)  # silence held as pre-roll...
    gate.reset()  # ...then a visit boundary
    voice = _chunks(_voice(1000), 1000, t0=1003.0)
    assert [_span_ms(p, 1003.0) for p in _run(gate, voice)] == [(0, 1000)]


@settings(max_examples=40, deadline=None)
@given(
    layout=st.lists(st.tuples(st.booleans(), st.integers(1, 30)), min_size=1, max_size=12),
    chunk_ms=st.sampled_from([100, 250, 500, 1000]),
)
def test_every_voiced_frame_is_sent_once_in_order_with_its_capture_time(layout: list, chunk_ms: int) -> None:
    """Whatever the layout and chunking: voice is never lost, nothing is sent twice, pieces are in order."""
    rng = np.random.default_rng(4)
    signal = np.concatenate([_voice(n * 100) if v else _noise(n * 100, rng) for v, n in layout])
    pieces = _run(AudioGate(MicrophoneConfig()), _chunks(signal, chunk_ms))
    spans = [_span_ms(p, 1000.0) for p in pieces]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    for piece, (start, end) in zip(pieces, spans):
        assert piece.pcm16 == signal[start * RATE_MS : end * RATE_MS].astype("<i2").tobytes()
    sent = np.zeros(len(signal) // RATE_MS, dtype=bool)
    for start, end in spans:
        sent[start:end] = True
    position = 0
    for voiced, n in layout:
        if voiced:
            assert sent[position * 100 : (position + n) * 100].all()
        position += n


def test_v0_drops_a_hangover_that_would_be_a_payload_of_pure_silence() -> None:
    rng = np.random.default_rng(5)
    # Voice ends 100 ms before a chunk boundary: 600 ms of hang-over would spill into a silent chunk.
    signal = np.concatenate([_noise(500, rng), _voice(400), _noise(2000, rng)])
    chunks = _chunks(signal, 1000)
    v1 = [_span_ms(p, 1000.0) for p in _run(AudioGate(MicrophoneConfig()), chunks)]
    v0 = [_span_ms(p, 1000.0) for p in _run(AudioGate(MicrophoneConfig(), spill_hangover=False), chunks)]
    assert v1 == [(200, 1000), (1000, 1600)]
    assert v0 == [(200, 1000)]


def test_audio_captured_before_media_was_allowed_is_never_sent_nor_held_as_preroll() -> None:
    """A chunk is handed over at its last sample: the one straddling the notice's moment is cut there."""
    rng = np.random.default_rng(6)
    # Voice from the start; media allowed at 1250 ms (monotonic 100 + 1.25: the gate goes by captured_mono).
    voice = _chunks(_voice(3000), 1000)
    gate = AudioGate(MicrophoneConfig())
    pieces = _run(gate, voice, since_mono=101.25)
    assert [_span_ms(p, 1000.0) for p in pieces] == [(1250, 2000), (2000, 3000)]
    assert pieces[0].captured_mono == 101.25
    assert gate.unannounced_ms == 1250
    # Silence, then voice 150 ms after the moment: the pre-roll reaches back only to that moment.
    signal = np.concatenate([_noise(1150, rng), _voice(850)])
    gate = AudioGate(MicrophoneConfig())
    pieces = _run(gate, _chunks(signal, 500), since_mono=101.0)
    assert _span_ms(pieces[0], 1000.0) == (1000, 1500)
    assert gate.unannounced_ms == 1000
    # Held pre-roll from before a later moment (no reset in between) is dropped, not sent.
    gate = AudioGate(MicrophoneConfig())
    assert _run(gate, _chunks(_noise(1000, rng), 1000)) == []  # 300 ms held
    assert _run(gate, _chunks(_voice(1000), 1000, t0=1001.0), since_mono=101.0)[0].captured_mono == 101.0
    assert gate.unannounced_ms == 300


@settings(max_examples=40, deadline=None)
@given(
    layout=st.lists(st.tuples(st.booleans(), st.integers(1, 30)), min_size=1, max_size=12),
    chunk_ms=st.sampled_from([100, 250, 500, 1000]),
    since_ms=st.integers(0, 4000),
    gate_on=st.booleans(),
)
def test_nothing_captured_before_the_moment_leaves_and_voice_after_it_all_does(
    layout: list, chunk_ms: int, since_ms: int, gate_on: bool
) -> None:
    rng = np.random.default_rng(7)
    signal = np.concatenate([_voice(n * 100) if v else _noise(n * 100, rng) for v, n in layout])
    gate = AudioGate(MicrophoneConfig(silence_gate=gate_on))
    pieces = _run(gate, _chunks(signal, chunk_ms), since_mono=100 + since_ms / 1000)
    spans = [_span_ms(p, 1000.0) for p in pieces]
    assert all(start >= since_ms for start, _ in spans)
    for piece, (start, end) in zip(pieces, spans):
        assert piece.pcm16 == signal[start * RATE_MS : end * RATE_MS].astype("<i2").tobytes()
    assert gate.unannounced_ms == min(since_ms, len(signal) // RATE_MS)
    sent = np.zeros(len(signal) // RATE_MS, dtype=bool)
    for start, end in spans:
        sent[start:end] = True
    position = 0
    for voiced, n in layout:
        lo = max(position * 100, since_ms)
        if voiced and lo < (position + n) * 100:
            assert sent[lo : (position + n) * 100].all()
        position += n
