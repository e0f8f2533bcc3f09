"""Protocol drift: unknown message types, fields and close codes are found, counted, logged once, bounded."""

from __future__ import annotations

import json
import logging

import pytest

from agent.hume.drift import KINDS_MAX, Drift
from agent.hume.v0 import protocol as v0
from agent.hume.v1 import protocol as v1

FACE = {
    "face_id": 0,
    "bbox": [1, 2, 3, 4],
    "confidence": 0.99,
    "expressions": [{"name": "joy", "probability": 0.5}],
    "descriptions": None,
}


def test_the_contracts_own_messages_are_not_drift() -> None:
    created = {
        "type": "session.created",
        "session_id": "s",
        "image": {"type": "image/jpeg"},
        "face": {"threshold": 0.9, "min_size": 60},
    }
    result = {"type": "measurement.result", "frame_id": 0, "faces": [FACE]}
    closed = {
        "type": "session.closed",
        "session_id": "s",
        "reason": "client_request",
        "received": {"frames": 1},
        "produced": {"measurements": 1},
    }
    for msg in (created, result, closed):
        assert v1.unknown_type(msg, "video") is None
        assert v1.unknown_fields(msg, "video") == []
    audio = {
        "type": "measurement.result",
        "measurement_id": 0,
        "utterance_id": 0,
        "audio_start_ms": 0,
        "audio_end_ms": 3000,
        "trigger": "interval",
        "expressions": [],
        "voice_attributes": [{"name": "calm", "probability": 0.8}],
    }
    assert v1.unknown_fields(audio, "audio") == []
    reply = json.loads(
        v0.reply_to_json(
            v0.parse_reply(
                json.dumps(
                    {
                        "payload_id": "p",
                        "face": {
                            "predictions": [
                                {
                                    "frame": 0,
                                    "time": None,
                                    "bbox": {"x": 1, "y": 2, "w": 3, "h": 4},
                                    "prob": 0.99,
                                    "face_id": "unknown",
                                    "emotions": [{"name": "Joy", "score": 0.5}],
                                    "facs": None,
                                    "descriptions": None,
                                }
                            ]
                        },
                    }
                )
            )
        )
    )
    assert v0.unknown_reply_fields(reply) == []


def test_new_fields_and_types_are_named_with_their_place() -> None:
    face = {**FACE, "age": 30, "expressions": [{"name": "joy", "probability": 0.5, "intensity": 2}]}
    msg = {"type": "measurement.result", "frame_id": 0, "faces": [face], "latency_ms": 12}
    assert sorted(v1.unknown_fields(msg, "video")) == [
        "measurement.result.faces[].age",
        "measurement.result.faces[].expressions[].intensity",
        "measurement.result.latency_ms",
    ]
    assert v1.unknown_type({"type": "session.heartbeat"}, "audio") == "session.heartbeat"
    assert v1.unknown_type({"type": "utterance.start"}, "video") == "utterance.start"  # audio-only type
    assert v0.unknown_reply_fields(
        {"face": {"predictions": [{"emotions": [], "gaze": 1}]}, "model_version": "2"}
    ) == [
        "model_version",
        "face.predictions[].gaze",
    ]


def test_each_kind_is_logged_once_counted_always_and_bounded(caplog: pytest.LogCaptureFixture) -> None:
    drift = Drift("v1 video")
    with caplog.at_level(logging.WARNING, logger="agent.hume.drift"):
        for _ in range(100):
            drift.saw("type", "session.heartbeat")
        drift.saw("close_code", 4000)
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "hume v1 video: the server sent type:session.heartbeat",
        "hume v1 video: the server sent close_code:4000",
    ]
    assert drift.counters() == {"unknown_types": 100.0, "unknown_close_codes": 1.0}
    for i in range(1000):  # a hostile server inventing a field per message
        drift.saw("field", f"x{i}\n\x1b[31m" + "y" * 500)
    kinds = dict(drift.kinds())
    assert len(kinds) == KINDS_MAX + 1
    assert kinds["other"] == 1000 - (KINDS_MAX - 2)
    assert all(len(name) <= 80 and name.isprintable() for name in kinds)
