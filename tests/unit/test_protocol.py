"""v1 wire types: parsing what the server sends, what the client sends, and the SDK's reconnect rule."""

from __future__ import annotations

import json

import pytest

from agent.hume.v1 import protocol as p


def test_audio_result_parses_with_open_ended_labels() -> None:
    msg = p.parse_server(
        json.dumps(
            {
                "type": "measurement.result",
                "measurement_id": 0,
                "utterance_id": 0,
                "audio_start_ms": 98,
                "audio_end_ms": 3098,
                "trigger": "interval",
                "expressions": [{"name": "a name nobody has seen yet", "probability": 0.8}],
                "voice_attributes": [{"name": "husky", "probability": 0.75}],
                "a_field_added_later": True,
            }
        ),
        "audio",
    )
    assert isinstance(msg, p.AudioResult)
    assert msg.expressions == (p.Score("a name nobody has seen yet", 0.8),)
    assert msg.trigger == "interval"


def test_video_result_keeps_unmeasured_faces_with_nulls() -> None:
    face = {
        "face_id": None,
        "bbox": [1, 2, 3, 4],
        "confidence": 0.95,
        "expressions": None,
        "descriptions": None,
    }
    msg = p.parse_server(json.dumps({"type": "measurement.result", "frame_id": 3, "faces": [face]}), "video")
    assert isinstance(msg, p.VideoResult)
    assert msg.faces == (p.Face((1.0, 2.0, 3.0, 4.0), 0.95),)
    assert p.face_json(msg.faces[0]) == {**face, "bbox": [1.0, 2.0, 3.0, 4.0]}


def test_unknown_type_is_skipped_and_bad_fields_are_named() -> None:
    assert p.parse_server('{"type": "session.resumed"}', "audio") is None
    with pytest.raises(ValueError, match="utterance_id"):
        p.parse_server('{"type": "utterance.start", "utterance_id": "0", "audio_start_ms": 0}', "audio")
    with pytest.raises(ValueError, match="JSON object"):
        p.parse_server("[]", "audio")


def test_lifecycle_messages_parse() -> None:
    created = p.parse_server(
        json.dumps(
            {
                "type": "session.created",
                "session_id": "s",
                "audio": p.AUDIO_FORMAT,
                "measurement_timer_ms": 3000,
            }
        ),
        "audio",
    )
    assert created == p.SessionCreated("s", {"audio": p.AUDIO_FORMAT, "measurement_timer_ms": 3000})
    closed = p.parse_server(
        json.dumps(
            {
                "type": "session.closed",
                "session_id": "s",
                "reason": "idle_timeout",
                "received": {"frames": 1},
                "produced": {"measurements": 0},
            }
        ),
        "video",
    )
    assert isinstance(closed, p.SessionClosed)
    assert closed.reason == "idle_timeout"
    error = p.parse_server(
        '{"type": "error", "code": "brand_new_code", "message": "m", "retryable": true}', "video"
    )
    assert error == p.ErrorMessage("brand_new_code", "m", True)


def test_client_messages_are_what_the_sdk_sends() -> None:
    assert json.loads(p.audio_session_update(5000)) == {
        "type": "session.update",
        "audio": {"type": "audio/pcm", "encoding": "s16le", "sample_rate": 16000, "channels": 1},
        "measurement_timer_ms": 5000,
    }
    assert json.loads(p.video_session_update(0.9, 60)) == {
        "type": "session.update",
        "image": {"type": "image/jpeg"},
        "face": {"threshold": 0.9, "min_size": 60},
    }
    assert json.loads(p.SESSION_CLOSE) == {"type": "session.close"}


@pytest.mark.parametrize(
    ("endpoint", "reason", "code", "last_error", "expected"),
    [
        ("audio", "server_shutdown", 1000, None, True),
        ("video", "server_shutdown", 1012, None, True),
        ("video", None, 1001, None, True),
        ("audio", None, 1006, None, True),
        ("audio", None, 1011, None, True),
        ("audio", None, 1013, None, True),
        ("audio", "error", 1008, "internal_error", True),
        ("video", "error", 1008, "internal_error", False),
        ("audio", "error", 1008, "config_invalid", False),
        ("audio", "error", 1008, "message_too_large", False),
        ("audio", "client_request", 1000, None, False),
        ("audio", "idle_timeout", 1000, None, False),
    ],
)
def test_reconnect_rule_is_the_sdks(
    endpoint: str, reason: str, code: int, last_error: str, expected: bool
) -> None:
    assert p.should_reconnect(endpoint, reason, code, last_error) is expected
