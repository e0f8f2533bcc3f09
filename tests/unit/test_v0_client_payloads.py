"""Pure rules of what leaves the device: buffers, publish messages, replies to observations."""

from __future__ import annotations

import base64
import io
import json
import wave
from typing import List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import HumeConfig, HumeV0Config
from agent.hume.types import OutgoingMedia
from agent.hume.v0.payloads import (
    BYTES_PER_S,
    FRAME_BACKLOG,
    AudioBuffer,
    FrameSlot,
    PayloadBuilder,
    TextBuffer,
    max_audio_payload_ms,
    modality_models,
    observations,
    warning_codes,
)
from agent.hume.v0.protocol import TEXT_MAX_CHARS, parse_reply
from agent.hume.v0.publish import PublishMessage


def pcm(seconds: float, value: int = 1) -> bytes:
    return value.to_bytes(2, "little", signed=True) * int(seconds * BYTES_PER_S // 2)


# --------------------------------------------------------------------------------------------------
# Sockets and models


def test_one_socket_per_modality_with_its_models() -> None:
    cfg = HumeConfig(models=("face", "prosody", "burst", "language"))
    assert modality_models(cfg) == {
        "video": ("face",),
        "audio": ("prosody", "burst"),
        "text": ("language",),
    }
    assert modality_models(HumeConfig(models=("burst",))) == {"audio": ("burst",)}


def test_audio_payload_limit_follows_api_and_window() -> None:
    assert max_audio_payload_ms(HumeConfig(v0=HumeV0Config(stream_window_ms=10000))) == 5000
    assert max_audio_payload_ms(HumeConfig(v0=HumeV0Config(stream_window_ms=2000))) == 2000


# --------------------------------------------------------------------------------------------------
# Buffers


def test_frame_slot_keeps_only_the_newest_and_counts_drops() -> None:
    slot = FrameSlot(backlog=1)
    for i in range(5):
        slot.put(bytes([i]), float(i), "s1", 0)
    taken = slot.take()
    assert taken is not None
    assert taken[1].data == bytes([4])
    assert taken[1].captured_at == 4.0
    assert slot.dropped == 4
    assert slot.take() is None
    assert slot.stats() == {"dropped_frames": 4, "queued_frames": 0}


def test_a_burst_of_a_visits_first_frames_is_sent_whole_oldest_first() -> None:
    """A visit's frames held during its debounce arrive together: each is sent (up to FRAME_BACKLOG)."""
    slot = FrameSlot()
    for i in range(FRAME_BACKLOG + 1):
        slot.put(bytes([i]), float(i), "s1", 0)
    assert slot.stats() == {"dropped_frames": 1, "queued_frames": FRAME_BACKLOG}
    taken = [slot.take() for _ in range(FRAME_BACKLOG)]
    assert [t[1].captured_at for t in taken if t is not None] == [
        float(i) for i in range(1, FRAME_BACKLOG + 1)
    ]
    assert slot.take() is None
    with pytest.raises(ValueError, match="frame backlog 0"):
        FrameSlot(backlog=0)


def test_audio_merges_backlog_into_one_payload_within_limit() -> None:
    buf = AudioBuffer(queue_seconds=20, max_payload_ms=5000)
    for i in range(7):
        buf.put(pcm(1.0), 100.0 + i, "s1", 0)
    first = buf.take()
    assert first is not None
    assert first[1].duration_s == 5.0
    assert first[1].captured_at == 100.0
    second = buf.take()
    assert second is not None
    assert second[1].duration_s == 2.0
    assert second[1].captured_at == 105.0
    assert buf.take() is None


def test_audio_split_chunk_keeps_its_capture_time_in_step() -> None:
    buf = AudioBuffer(queue_seconds=20, max_payload_ms=2000)
    buf.put(pcm(3.0), 50.0, "s1", 0)
    a, b = buf.take(), buf.take()
    assert a is not None
    assert b is not None
    assert (a[1].duration_s, a[1].captured_at) == (2.0, 50.0)
    assert (b[1].duration_s, b[1].captured_at) == (1.0, 52.0)


def test_audio_never_mixes_epochs_or_sessions() -> None:
    buf = AudioBuffer(queue_seconds=20, max_payload_ms=5000)
    buf.put(pcm(1.0), 1.0, "s1", 0)
    buf.put(pcm(1.0), 2.0, "s1", 1)  # boundary, same session id (e.g. none streaming)
    buf.put(pcm(1.0), 3.0, "s2", 1)
    got = []
    while (item := buf.take()) is not None:
        got.append((item[0], item[1].session_id, item[1].duration_s))
    assert got == [(0, "s1", 1.0), (1, "s1", 1.0), (1, "s2", 1.0)]


def test_audio_backlog_bounded_oldest_dropped_and_counted() -> None:
    buf = AudioBuffer(queue_seconds=3, max_payload_ms=5000)
    for i in range(10):
        buf.put(pcm(1.0, value=i), float(i), "s1", 0)
    assert buf.queued_bytes == 3 * BYTES_PER_S
    assert buf.stats()["dropped_audio_s"] == 7.0
    item = buf.take()
    assert item is not None
    assert item[1].captured_at == 7.0  # the newest three seconds survive
    assert item[1].data[:2] == (7).to_bytes(2, "little")


def test_audio_drops_torn_trailing_byte() -> None:
    buf = AudioBuffer(queue_seconds=3, max_payload_ms=5000)
    buf.put(b"\x01\x00\x02", 0.0, None, 0)
    buf.put(b"", 0.0, None, 0)
    item = buf.take()
    assert item is not None
    assert item[1].data == b"\x01\x00"


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.tuples(st.integers(0, 40000), st.integers(0, 2)), max_size=30),
    queue_s=st.floats(1, 5),
    payload_ms=st.sampled_from([500, 2000, 5000]),
)
def test_audio_accounting_property(chunks: List[Tuple[int, int]], queue_s: float, payload_ms: int) -> None:
    """Every byte is sent, dropped or still queued; no payload exceeds the limit or mixes epochs."""
    buf = AudioBuffer(queue_seconds=queue_s, max_payload_ms=payload_ms)
    put = sent = 0
    epoch = 0
    for size, bump in chunks:
        epoch += bump
        data = b"\x00" * size
        put += len(data) - len(data) % 2
        buf.put(data, 0.0, "s", epoch)
        assert buf.queued_bytes <= buf.max_bytes
        if bump == 2:
            item = buf.take()
            if item is not None:
                assert len(item[1].data) <= buf.max_payload_bytes
                sent += len(item[1].data)
    last_epoch = -1
    while (item := buf.take()) is not None:
        assert 0 < len(item[1].data) <= buf.max_payload_bytes
        assert len(item[1].data) % 2 == 0
        assert item[0] >= last_epoch
        last_epoch = item[0]
        sent += len(item[1].data)
    assert sent + buf.dropped_bytes == put


def test_text_queue_skips_blank_splits_long_and_bounds() -> None:
    buf = TextBuffer(maxlen=3)
    buf.put("   ", 0.0, None, 0)
    assert buf.take() is None
    buf.put("x" * (TEXT_MAX_CHARS + 5), 1.0, "s", 0)
    a, b = buf.take(), buf.take()
    assert a is not None
    assert b is not None
    assert (len(a[1].data), len(b[1].data)) == (TEXT_MAX_CHARS, 5)
    for i in range(5):
        buf.put(f"t{i}", float(i), "s", 0)
    assert buf.dropped == 2
    item = buf.take()
    assert item is not None
    assert item[1].data == b"t2"


# --------------------------------------------------------------------------------------------------
# Publish messages


def test_frame_payload_carries_face_config_and_id() -> None:
    cfg = HumeConfig(fps_pred=2.0, min_face_size=40, v0=HumeV0Config(identify_faces=True, prob_threshold=0.9))
    builder = PayloadBuilder(cfg, ("face",))
    msg = builder.build(OutgoingMedia("frame", b"\xff\xd8jpeg", 1.0, "s"), "video-1", reset_stream=False)
    obj = json.loads(msg.to_json())
    assert obj == {
        "data": base64.b64encode(b"\xff\xd8jpeg").decode(),
        "models": {
            "face": {"identify_faces": True, "fps_pred": 2.0, "prob_threshold": 0.9, "min_face_size": 40.0}
        },
        "payload_id": "video-1",
    }
    assert PublishMessage.from_json(msg.to_json()) == msg  # valid by the shared wire types


def test_audio_payload_is_wav_with_window_and_reset_only_when_asked() -> None:
    cfg = HumeConfig(v0=HumeV0Config(stream_window_ms=3000))
    builder = PayloadBuilder(cfg, ("prosody", "burst"))
    media = OutgoingMedia("audio", pcm(1.0), 1.0, "s", 1.0)
    plain = json.loads(builder.build(media, "audio-1", reset_stream=False).to_json())
    reset = json.loads(builder.build(media, "audio-2", reset_stream=True).to_json())
    assert plain["models"] == {"prosody": {}, "burst": {}}
    assert plain["stream_window_ms"] == 3000
    assert "reset_stream" not in plain
    assert reset["reset_stream"] is True
    with wave.open(io.BytesIO(base64.b64decode(plain["data"]))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert w.readframes(w.getnframes()) == media.data


def test_text_payload_is_raw_text_with_granularity() -> None:
    builder = PayloadBuilder(HumeConfig(v0=HumeV0Config(language_granularity="sentence")), ("language",))
    obj = json.loads(
        builder.build(OutgoingMedia("text", "héllo".encode(), 1.0, None), "text-1", False).to_json()
    )
    assert obj == {
        "data": "héllo",
        "models": {"language": {"sentiment": {}, "toxicity": {}, "granularity": "sentence"}},
        "raw_text": True,
        "payload_id": "text-1",
    }


# --------------------------------------------------------------------------------------------------
# Replies


MEDIA = OutgoingMedia("frame", b"", 123.5, "visit-7")


def test_predictions_become_one_observation_per_model() -> None:
    reply = parse_reply(
        json.dumps(
            {
                "payload_id": "v-1",
                "face": {
                    "predictions": [
                        {
                            "frame": 0,
                            "time": None,
                            "prob": 0.99,
                            "face_id": "face_0",
                            "bbox": {"x": 1, "y": 2, "w": 3, "h": 4},
                            "emotions": [{"name": "Joy", "score": 0.8}],
                        }
                    ]
                },
                "prosody": {
                    "predictions": [
                        {"time": {"begin": 0.0, "end": 1.5}, "emotions": [{"name": "Calmness", "score": 0.3}]}
                    ]
                },
            }
        )
    )
    obs = {o.model: o for o in observations(reply, MEDIA, 0.25, ("face", "prosody"), "c1")}
    # Hume's ids name a face within one connection; qualified, they never collide across connections.
    assert obs["face"].measurements[0].face_id == "face_0@c1"
    assert obs["face"].measurements[0].emotions[0].name == "Joy"
    assert (obs["prosody"].measurements[0].begin_s, obs["prosody"].measurements[0].end_s) == (0.0, 1.5)
    for o in obs.values():
        assert (o.captured_at, o.session_id, o.latency_s, o.warning_code) == (123.5, "visit-7", 0.25, None)


def test_warnings_nested_and_top_level_are_normal_outcomes() -> None:
    nested = parse_reply('{"face": {"warning": "No faces detected.", "code": "W0103"}, "payload_id": "v-2"}')
    top = parse_reply('{"warning": "No speech detected.", "code": "W0105", "payload_id": "a-1"}')
    assert warning_codes(nested) == ["W0103"]
    assert warning_codes(top) == ["W0105"]
    [o] = observations(nested, MEDIA, 0.1, ("face",), "c1")
    assert (o.model, o.warning_code, o.measurements) == ("face", "W0103", ())
    [p] = observations(top, MEDIA, 0.1, ("prosody", "burst"), "c1")
    assert (p.model, p.warning_code) == ("prosody", "W0105")
    assert observations(top, MEDIA, 0.1, ("face",), "c1") == []


def test_errors_yield_no_observation() -> None:
    err = parse_reply('{"error": "Out of credits", "code": "E0300", "payload_id": "a-3"}')
    assert observations(err, MEDIA, 0.1, ("prosody",), "c1") == []
    assert warning_codes(err) == []


def test_unidentified_faces_stay_unknown() -> None:
    reply = parse_reply(json.dumps({"face": {"predictions": [{"face_id": "unknown", "emotions": []}]}}))
    [o] = observations(reply, MEDIA, 0.1, ("face",), "c1")
    assert o.measurements[0].face_id == "unknown"
