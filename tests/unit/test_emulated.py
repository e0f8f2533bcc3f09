"""The v1 emulator's session rules, without sockets: lifecycle, config lock, limits, errors, measurements."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import cv2
import numpy as np
import pytest

from agent.hume.v1 import protocol as p
from agent.media.audio import BYTES_PER_MS
from hume_emulator.v1.emulated import AudioSession, FaultsV1, VideoSession
from tests.support.emulator import astronaut_bgr, encode_image, silence, voice

FRAME = p.AUDIO_FRAME_MS * BYTES_PER_MS


def never() -> FaultsV1:
    return FaultsV1()


def audio(now: float = 0.0, burst_ms: float = 2000.0) -> AudioSession:
    return AudioSession(0, never(), now, burst_ms)


def video(now: float = 0.0) -> VideoSession:
    return VideoSession(0, never(), now, 2.0)


def drain(session: Any) -> List[Dict[str, Any]]:
    out = list(session.outbox)
    session.outbox.clear()
    return out


def stream(session: AudioSession, pcm: bytes, t0: float = 0.0) -> List[Dict[str, Any]]:
    """Send ``pcm`` in 100 ms frames exactly in real time; return everything the session said."""
    out = []
    for i in range(0, len(pcm), FRAME):
        session.on_binary(pcm[i : i + FRAME], t0 + i / (1000.0 * BYTES_PER_MS))
        out += drain(session)
    return out


def speech(*parts: Any) -> bytes:
    return np.concatenate(parts).astype("<i2").tobytes()


# -- lifecycle and config


def test_created_at_once_with_defaults_and_update_fills_defaults() -> None:
    s = audio()
    (created,) = drain(s)
    assert created["type"] == "session.created"
    assert created["audio"] == p.AUDIO_FORMAT
    assert created["measurement_timer_ms"] == 3000
    s.on_text(json.dumps({"type": "session.update", "measurement_timer_ms": 5000}))
    assert drain(s) == [{"type": "session.updated", "audio": p.AUDIO_FORMAT, "measurement_timer_ms": 5000}]
    s.on_text(json.dumps({"type": "session.update"}))  # omitted fields reset to their defaults
    assert drain(s)[0]["measurement_timer_ms"] == 3000


def test_video_update_rounds_threshold_and_fills_defaults() -> None:
    s = video()
    drain(s)
    s.on_text(json.dumps({"type": "session.update", "face": {"threshold": 0.123456}}))
    (updated,) = drain(s)
    assert updated == {
        "type": "session.updated",
        "image": p.IMAGE_FORMAT,
        "face": {"threshold": 0.1235, "min_size": 60},
    }


@pytest.mark.parametrize(
    "update",
    [
        {"measurement_timer_ms": 2999},
        {"measurement_timer_ms": 10001},
        {"measurement_timer_ms": True},
        {"audio": {"sample_rate": 44100}},
        {"audio": {"encoding": "f32le"}},
        {"timer_ms": 3000},
    ],
)
def test_bad_audio_config_ends_session(update: Dict[str, Any]) -> None:
    s = audio()
    drain(s)
    s.on_text(json.dumps({"type": "session.update", **update}))
    error, closed = drain(s)
    assert (error["code"], error["retryable"]) == ("config_invalid", False)
    assert (closed["type"], closed["reason"]) == ("session.closed", "error")
    assert s.close_code == p.CLOSE_POLICY


def test_config_locks_at_first_accepted_frame() -> None:
    s = audio()
    s.on_binary(b"", 0.0)  # rejected: does not lock
    s.on_text(json.dumps({"type": "session.update"}))
    assert [m["type"] for m in drain(s)] == ["session.created", "error", "session.updated"]
    s.on_binary(bytes(FRAME), 0.0)
    s.on_text(json.dumps({"type": "session.update"}))
    error, closed = drain(s)
    assert error["code"] == "config_invalid"
    assert closed["reason"] == "error"


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"no": "type"}', '{"type": "session.resume"}'])
def test_unreadable_text_is_message_invalid_and_session_continues(text: str) -> None:
    s = audio()
    drain(s)
    s.on_text(text)
    (error,) = drain(s)
    assert (error["code"], error["retryable"]) == ("message_invalid", True)
    assert s.close_code is None


# -- audio frames, size and rate


@pytest.mark.parametrize("size", [0, 3, p.AUDIO_FRAME_MAX_MS * BYTES_PER_MS + 2])
def test_invalid_audio_frame_is_discarded_and_session_continues(size: int) -> None:
    s = audio(burst_ms=20_000)
    drain(s)
    s.on_binary(bytes(size), 0.0)
    (error,) = drain(s)
    assert (error["code"], error["retryable"]) == ("invalid_audio_frame", True)
    assert s.close_code is None
    assert s.frames == 0


def test_oversized_message_ends_session() -> None:
    s = audio()
    drain(s)
    s.on_binary(bytes(p.AUDIO_MESSAGE_MAX_BYTES + 2), 0.0)
    error, closed = drain(s)
    assert (error["code"], error["retryable"]) == ("message_too_large", False)
    assert closed["reason"] == "error"
    assert s.close_code == p.CLOSE_POLICY


def test_audio_faster_than_real_time_is_rate_limited_and_not_on_the_timeline() -> None:
    s = audio(burst_ms=1000)
    drain(s)
    codes = []
    for _ in range(15):  # 1.5 s of audio at one instant: 1 s of allowance
        s.on_binary(bytes(FRAME), 0.0)
        codes += [m["code"] for m in drain(s)]
    assert codes == ["rate_limited"] * 5
    assert s.totals()[0] == {"audio_duration_ms": 1000, "frames": 10}
    s.on_binary(bytes(FRAME), 0.1)  # 100 ms later, 100 ms more is allowed
    assert drain(s) == []


def test_real_time_audio_is_never_rate_limited() -> None:
    s = audio()
    drain(s)
    out = stream(s, bytes(30 * FRAME))
    assert not [m for m in out if m["type"] == "error"]


# -- utterances and measurements


def test_one_utterance_interval_then_speech_ended() -> None:
    s = audio()
    drain(s)
    out = stream(s, speech(silence(500), voice(4000), silence(1000)))
    kinds = [m["type"] for m in out]
    assert kinds == ["utterance.start", "measurement.result", "measurement.result", "utterance.end"]
    start, interval, ended, end = out
    assert 400 <= start["audio_start_ms"] <= 600
    assert interval["trigger"] == "interval"
    assert interval["audio_end_ms"] - interval["audio_start_ms"] == 3000
    assert ended["trigger"] == "speech_ended"
    assert ended["audio_start_ms"] == start["audio_start_ms"] == end["audio_start_ms"]
    assert ended["audio_end_ms"] == end["audio_end_ms"]
    assert [interval["measurement_id"], ended["measurement_id"]] == [0, 1]
    assert {m["utterance_id"] for m in out} == {0}


def test_long_utterance_windows_are_at_most_ten_seconds_and_close_ends_it() -> None:
    s = audio()
    drain(s)
    out = stream(s, speech(silence(3000), voice(25_000)))
    s.on_text(json.dumps({"type": "session.close"}))
    out += drain(s)
    results = [m for m in out if m["type"] == "measurement.result"]
    assert [r["trigger"] for r in results] == ["interval"] * 8 + ["speech_ended"]
    start = out[0]["audio_start_ms"]
    for r in results:
        assert r["audio_start_ms"] >= start
        assert r["audio_end_ms"] - r["audio_start_ms"] <= p.MEASUREMENT_WINDOW_MS
    assert [m["type"] for m in out[-2:]] == ["utterance.end", "session.closed"]
    closed = out[-1]
    assert closed["reason"] == "client_request"
    assert closed["received"] == {"audio_duration_ms": 28_000, "frames": 280}
    assert closed["produced"] == {"utterances": 1, "measurements": 9}
    assert s.close_code == p.CLOSE_NORMAL


def test_speech_ended_skipped_within_one_second_of_the_last_measurement() -> None:
    s = audio()
    drain(s)
    out = stream(s, speech(silence(1000), voice(3300), silence(1000)))
    results = [m for m in out if m["type"] == "measurement.result"]
    assert [r["trigger"] for r in results] == ["interval"]
    assert out[-1]["type"] == "utterance.end"


def test_silence_and_clicks_make_no_utterance() -> None:
    s = audio()
    drain(s)
    assert stream(s, speech(silence(1000), voice(40), silence(2000))) == []


def test_scores_rounded_sorted_and_filtered() -> None:
    s = audio()
    drain(s)
    out = stream(s, speech(voice(8000, pitch_hz=220), silence(1000)))
    for r in (m for m in out if m["type"] == "measurement.result"):
        probs = [e["probability"] for e in r["expressions"]]
        assert probs == sorted(probs, reverse=True)
        assert all(round(v, 4) == v for v in probs)
        assert all(a["probability"] >= p.VOICE_ATTRIBUTE_MIN for a in r["voice_attributes"])


def test_audio_predictions_are_deterministic_per_seed_and_change_with_it() -> None:
    pcm = speech(silence(1000), voice(4000), silence(1000))

    def results(seed: int) -> List[Any]:
        s = AudioSession(seed, never(), 0.0, 2000.0)
        drain(s)
        return [m["expressions"] for m in stream(s, pcm) if m["type"] == "measurement.result"]

    assert results(3) == results(3)
    assert results(3) != results(4)


def test_audio_internal_error_ends_session() -> None:
    s = AudioSession(0, FaultsV1(fail_measurements=1), 0.0, 2000.0)
    drain(s)
    out = stream(s, speech(silence(1000), voice(4000)))
    assert [m["type"] for m in out] == ["utterance.start", "error", "session.closed"]
    assert (out[1]["code"], out[1]["retryable"]) == ("internal_error", False)
    assert out[2]["reason"] == "error"


# -- video


def test_astronaut_face_measured_with_bbox_and_confidence() -> None:
    s = video()
    drain(s)
    s.on_binary(encode_image(astronaut_bgr()), 0.0)
    (result,) = drain(s)
    assert result["type"] == "measurement.result"
    assert result["frame_id"] == 0
    (face,) = result["faces"]
    x0, y0, x1, _y1 = face["bbox"]
    assert 140 < x0 < 220
    assert 30 < y0 < 110
    assert x1 - x0 >= 60
    assert face["confidence"] >= 0.9
    assert face["face_id"] == 0
    probs = [e["probability"] for e in face["expressions"]]
    assert probs == sorted(probs, reverse=True)
    assert all(v > 0.1 for v in probs)


def test_video_replies_one_per_frame_in_order_errors_consume_frames() -> None:
    s = video()
    drain(s)
    jpeg = encode_image(astronaut_bgr())
    png = encode_image(astronaut_bgr(), ".png")
    for i, frame in enumerate([jpeg, jpeg, png, jpeg]):
        s.on_binary(frame, i * 1.0)
    replies = drain(s)
    assert [r.get("frame_id", r.get("code")) for r in replies] == [0, 1, "invalid_image_frame", 2]
    s.on_text(json.dumps({"type": "session.close"}))
    (closed,) = drain(s)
    assert closed["received"] == {"frames": 3}
    assert closed["produced"] == {"measurements": 3}


def test_video_rate_limit_is_three_frames_per_second() -> None:
    s = video()
    drain(s)
    jpeg = encode_image(np.zeros((64, 64, 3), np.uint8))
    codes = []
    for i in range(12):  # 6 frames per second for 2 s
        s.on_binary(jpeg, i / 6.0)
        codes += [m.get("code", "ok") for m in drain(s)]
    assert codes.count("ok") <= 2 + 6  # burst of 2, then 3 per second
    assert "rate_limited" in codes


def test_too_many_pixels_is_invalid_image_frame() -> None:
    s = video()
    drain(s)
    big = cv2.imencode(".jpg", np.zeros((2200, 3900, 3), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 10])[
        1
    ].tobytes()
    s.on_binary(big, 0.0)
    (error,) = drain(s)
    assert error["code"] == "invalid_image_frame"
    assert s.close_code is None


def test_video_fifth_consecutive_failure_ends_session() -> None:
    s = VideoSession(0, FaultsV1(fail_measurements=5), 0.0, 10.0)
    drain(s)
    jpeg = encode_image(np.zeros((64, 64, 3), np.uint8))
    for i in range(5):
        s.on_binary(jpeg, float(i))
    out = drain(s)
    assert [m.get("retryable") for m in out[:5]] == [True, True, True, True, False]
    assert all(m["code"] == "internal_error" for m in out[:5])
    assert out[5]["reason"] == "error"
    assert out[5]["received"] == {"frames": 5}


def test_threshold_and_min_size_hide_faces() -> None:
    s = video()
    drain(s)
    s.on_text(json.dumps({"type": "session.update", "face": {"min_size": 400}}))
    drain(s)
    s.on_binary(encode_image(astronaut_bgr()), 0.0)
    (result,) = drain(s)
    assert result["faces"] == []


def test_induced_rate_limit_answers_frames_without_measuring_them() -> None:
    s = AudioSession(0, FaultsV1(rate_limit_frames=2), 0.0, 2000.0)
    drain(s)
    for i in range(3):
        s.on_binary(bytes(FRAME), i * 0.1)
    assert [m["code"] for m in drain(s)] == ["rate_limited", "rate_limited"]
    assert s.totals()[0] == {"audio_duration_ms": 100, "frames": 1}


def test_only_the_two_largest_faces_are_measured_the_rest_listed_with_nulls() -> None:
    face = astronaut_bgr()
    scene = np.zeros((512, 512 + 400 + 320, 3), np.uint8)
    scene[:, :512] = face
    scene[:400, 512:912] = cv2.resize(face, (400, 400))
    scene[:320, 912:1232] = cv2.resize(face, (320, 320))
    s = video()
    drain(s)
    s.on_text(json.dumps({"type": "session.update", "face": {"min_size": 30, "threshold": 0.99}}))
    drain(s)
    s.on_binary(encode_image(scene), 0.0)
    (result,) = drain(s)
    faces = result["faces"]
    assert len(faces) == 3
    widths = [f["bbox"][2] - f["bbox"][0] for f in faces]
    assert widths[0] > widths[1] > widths[2]
    assert [f["face_id"] for f in faces] == [0, 1, None]
    assert faces[2]["expressions"] is None
    assert faces[2]["descriptions"] is None
    s.on_text(json.dumps({"type": "session.close"}))
    assert drain(s)[0]["produced"] == {"measurements": 2}
