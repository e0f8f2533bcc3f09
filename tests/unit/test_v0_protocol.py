"""The v0 wire types: requests parse strictly with the server's codes, replies round-trip, labels match."""

from __future__ import annotations

import json
from typing import Any, Dict, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.hume.types import Score
from agent.hume.v0.protocol import (
    EXPRESSIONS,
    FACE_DESCRIPTIONS,
    FACS_LABELS,
    LANGUAGE_EXPRESSIONS,
    SENTIMENT_LEVELS,
    TOXICITY_CATEGORIES,
    BoundingBox,
    Codes,
    ErrorMessage,
    ModelOutput,
    Prediction,
    PredictionsMessage,
    ProtocolViolation,
    TimeRange,
    WarningMessage,
    parse_reply,
    reply_to_json,
)
from agent.hume.v0.publish import FaceConfig, LanguageConfig, ModelsConfig, PublishMessage


def violation(text: str) -> ProtocolViolation:
    with pytest.raises(ProtocolViolation) as info:
        PublishMessage.from_json(text)
    return info.value


def test_label_lists_match_the_facts_file() -> None:
    assert len(EXPRESSIONS) == 48
    assert list(EXPRESSIONS) == sorted(EXPRESSIONS)
    assert EXPRESSIONS[0] == "Admiration"
    assert EXPRESSIONS[-1] == "Triumph"
    assert len(LANGUAGE_EXPRESSIONS) == 53
    assert set(LANGUAGE_EXPRESSIONS) - set(EXPRESSIONS) == {
        "Annoyance",
        "Disapproval",
        "Enthusiasm",
        "Gratitude",
        "Sarcasm",
    }
    assert len(FACS_LABELS) == 36
    assert FACS_LABELS[0] == "AU1 Inner Brow Raise"
    assert FACS_LABELS[-1] == "Hand touching Face / Head"
    assert len(FACE_DESCRIPTIONS) == 27
    assert tuple("123456789") == SENTIMENT_LEVELS
    assert TOXICITY_CATEGORIES == ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", Codes.INVALID_JSON),
        ("", Codes.INVALID_JSON),
        ("[1, 2]", Codes.INVALID_STRUCTURE),
        ('{"models": {"eyes": {}}}', Codes.INVALID_STRUCTURE),
        ('{"models": []}', Codes.INVALID_STRUCTURE),
        ('{"data": 5}', Codes.INVALID_STRUCTURE),
        ('{"raw_text": "yes"}', Codes.INVALID_STRUCTURE),
        ('{"payload_id": 7}', Codes.INVALID_STRUCTURE),
        ('{"stream_window_ms": true}', Codes.INVALID_STRUCTURE),
        ('{"stream_window_ms": 499}', Codes.INVALID_STRUCTURE),
        ('{"stream_window_ms": 10001}', Codes.INVALID_STRUCTURE),
        ('{"models": {"face": {"prob_threshold": 1.5}}}', Codes.INVALID_STRUCTURE),
        ('{"models": {"face": {"prob_threshold": -0.1}}}', Codes.INVALID_STRUCTURE),
        ('{"models": {"face": {"fps_pred": 0}}}', Codes.INVALID_STRUCTURE),
        ('{"models": {"face": {"min_face_size": -1}}}', Codes.INVALID_STRUCTURE),
        ('{"models": {"face": {"identify_faces": "yes"}}}', Codes.INVALID_STRUCTURE),
        ('{"models": {"language": {"granularity": "paragraph"}}}', Codes.INVALID_STRUCTURE),
    ],
)
def test_bad_requests_get_the_servers_code(text: str, code: str) -> None:
    assert violation(text).code == code


def test_messages_name_the_field_and_the_allowed_values() -> None:
    assert "between" not in violation('{"stream_window_ms": 20}').message
    assert (
        "'stream_window_ms' must be at least 500 and at most 10000, got 20"
        in violation('{"stream_window_ms": 20}').message
    )
    message = violation('{"models": {"language": {"granularity": "paragraph"}}}').message
    assert "word, sentence, utterance, passage" in message
    assert (
        "Valid model types are: face, prosody, burst, language, facemesh"
        in violation('{"models": {"eyes": {}}}').message
    )


@pytest.mark.parametrize("window", [500, 5000, 10000])
def test_window_limits_are_inclusive(window: int) -> None:
    assert PublishMessage.from_json(json.dumps({"stream_window_ms": window})).stream_window_ms == window


def test_unknown_top_level_fields_are_ignored_like_the_sdk_does() -> None:
    assert PublishMessage.from_json('{"data": "x", "future": 1}').data == "x"


def test_sdk_shaped_requests_parse() -> None:
    msg = PublishMessage.from_json(
        '{"data": "I love this", "models": {"language": {"granularity": "passage"}}, '
        '"raw_text": true, "payload_id": "t1"}'
    )
    assert msg.raw_text
    assert msg.payload_id == "t1"
    assert msg.models is not None
    assert msg.models.enabled == ("language",)
    assert msg.models.language == LanguageConfig(granularity="passage")
    assert PublishMessage.from_json('{"job_details": true}').job_details


_configs = st.builds(
    ModelsConfig,
    face=st.none()
    | st.builds(
        FaceConfig,
        facs=st.none() | st.just({}),
        descriptions=st.none() | st.just({}),
        identify_faces=st.none() | st.booleans(),
        fps_pred=st.none() | st.floats(0.1, 30),
        prob_threshold=st.none() | st.floats(0, 1),
        min_face_size=st.none() | st.floats(0, 3000),
    ),
    language=st.none()
    | st.builds(
        LanguageConfig,
        sentiment=st.none() | st.just({}),
        toxicity=st.none() | st.just({}),
        granularity=st.none() | st.sampled_from(["word", "sentence", "utterance", "passage"]),
    ),
    prosody=st.none() | st.just({}),
    burst=st.none() | st.just({}),
    facemesh=st.none() | st.just({}),
)


@given(
    st.builds(
        PublishMessage,
        data=st.none() | st.text(max_size=50),
        models=st.none() | _configs,
        stream_window_ms=st.none() | st.floats(500, 10000),
        reset_stream=st.booleans(),
        raw_text=st.booleans(),
        job_details=st.booleans(),
        payload_id=st.none() | st.text(max_size=20),
    )
)
def test_publish_messages_round_trip(msg: PublishMessage) -> None:
    assert PublishMessage.from_json(msg.to_json()) == msg


def _scores(n: int) -> Tuple[Score, ...]:
    return tuple(Score(EXPRESSIONS[i], i / 100) for i in range(n))


@pytest.mark.parametrize(
    "reply",
    [
        ErrorMessage("Request could not be parsed as valid JSON.", Codes.INVALID_JSON, "p1"),
        ErrorMessage("Out of credits.", Codes.OUT_OF_CREDITS, None, "a" * 32),
        WarningMessage("No faces could be detected in the streamed media.", Codes.NO_FACES, "p2"),
        PredictionsMessage({"face": ModelOutput(warning="No faces detected.", code=Codes.NO_FACES)}, "p3"),
        PredictionsMessage(job_id="b" * 32),
        PredictionsMessage(
            {
                "face": ModelOutput(
                    (
                        Prediction(
                            emotions=_scores(48),
                            frame=0.0,
                            bbox=BoundingBox(1, 2, 3, 4),
                            prob=0.999,
                            face_id="face_0",
                            facs=_scores(3),
                        ),
                    )
                ),
                "prosody": ModelOutput((Prediction(emotions=_scores(2), time=TimeRange(0.5, 1.0)),)),
                "language": ModelOutput(
                    (Prediction(emotions=_scores(1), text="Mary", position=(0, 4), sentiment=_scores(9)),)
                ),
                "facemesh": ModelOutput((Prediction(emotions=_scores(48)),)),
            },
            "p4",
        ),
    ],
)
def test_replies_round_trip(reply: Any) -> None:
    assert parse_reply(reply_to_json(reply)) == reply


def test_nested_warning_shape_is_what_hume_clients_read() -> None:
    obj: Dict[str, Any] = PredictionsMessage(
        {"face": ModelOutput(warning="No faces detected.", code="W0103")}, "x"
    ).to_obj()
    assert obj == {"payload_id": "x", "face": {"warning": "No faces detected.", "code": "W0103"}}


@pytest.mark.parametrize("text", ["nope", "[]", '{"face": {"predictions": [1]}}', '{"error": 3}'])
def test_replies_that_break_the_contract_are_violations(text: str) -> None:
    with pytest.raises(ProtocolViolation):
        parse_reply(text)
