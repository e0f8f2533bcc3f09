"""The emulator's models on one connection's state: detections, windows, spans, ids, determinism."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.hume.v0.protocol import (
    EXPRESSIONS,
    FACE_DESCRIPTIONS,
    FACS_LABELS,
    LANGUAGE_EXPRESSIONS,
    SENTIMENT_LEVELS,
    TOXICITY_CATEGORIES,
    Codes,
    ErrorMessage,
    ModelOutput,
    Prediction,
    PredictionsMessage,
    Reply,
    WarningMessage,
    parse_reply,
    reply_to_json,
)
from agent.hume.v0.publish import PublishMessage
from hume_emulator.models import Session, job_id_for, text_spans, warning_reply
from tests.support.emulator import (
    astronaut_bgr,
    b64,
    encode_image,
    facemesh,
    mjpeg_avi,
    silence,
    voice,
    wav_bytes,
)


def ask(session: Session, **fields: Any) -> Reply:
    return session.handle(PublishMessage.from_json(json.dumps(fields)))


def predictions(reply: Reply, model: str) -> Tuple[Prediction, ...]:
    assert isinstance(reply, PredictionsMessage), reply
    out = reply.outputs[model]
    assert out.warning is None, out
    return out.predictions


def warning(reply: Reply, model: str) -> Optional[str]:
    assert isinstance(reply, PredictionsMessage), reply
    return reply.outputs[model].code


def error(reply: Reply) -> str:
    assert isinstance(reply, ErrorMessage), reply
    assert reply.code is not None
    return reply.code


def image(img: np.ndarray, **face: Any) -> Dict[str, Any]:
    return {"data": b64(encode_image(img)), "models": {"face": face}}


def audio(samples: np.ndarray, **extra: Any) -> Dict[str, Any]:
    return {"data": b64(wav_bytes(samples)), "models": {"prosody": {}, "burst": {}}, **extra}


def scores(pred: Prediction) -> List[float]:
    return [s.score for s in pred.emotions]


# ------------------------------------------------------------------------------------------- face


def test_the_astronauts_face_is_found_with_defaults() -> None:
    (face,) = predictions(ask(Session(0, 1), **image(astronaut_bgr())), "face")
    assert face.bbox is not None
    assert 150 < face.bbox.x < 210
    assert 40 < face.bbox.y < 100
    assert 70 < face.bbox.w < 130
    assert face.prob is not None
    assert face.prob >= 0.99
    assert face.face_id == "unknown"
    assert face.frame == 0
    assert face.face_time is None
    assert [s.name for s in face.emotions] == list(EXPRESSIONS)
    assert all(0 <= s.score <= 1 for s in face.emotions)
    assert face.facs is None
    assert face.descriptions is None


def test_facs_and_descriptions_only_when_configured() -> None:
    (face,) = predictions(ask(Session(0, 1), **image(astronaut_bgr(), facs={}, descriptions={})), "face")
    assert face.facs is not None
    assert [s.name for s in face.facs] == list(FACS_LABELS)
    assert face.descriptions is not None
    assert [s.name for s in face.descriptions] == list(FACE_DESCRIPTIONS)


@pytest.mark.parametrize(
    "face_cfg", [{"prob_threshold": 1.0}, {"min_face_size": 150}], ids=["prob_threshold", "min_face_size"]
)
def test_face_filters_apply(face_cfg: Dict[str, Any]) -> None:
    assert warning(ask(Session(0, 1), **image(astronaut_bgr(), **face_cfg)), "face") == Codes.NO_FACES


def test_min_face_size_defaults_to_60_px() -> None:
    small = cv2.resize(astronaut_bgr(), (256, 256))  # the face is about 47 px here
    assert warning(ask(Session(0, 1), **image(small)), "face") == Codes.NO_FACES
    assert predictions(ask(Session(0, 1), **image(small, min_face_size=30)), "face")


def test_a_blank_frame_has_no_faces_nested_warning() -> None:
    reply = ask(Session(0, 1), **image(np.full((240, 320, 3), 128, np.uint8)), payload_id="b")
    assert isinstance(reply, PredictionsMessage)
    assert reply.payload_id == "b"
    assert reply.outputs["face"] == ModelOutput(warning="No faces detected.", code=Codes.NO_FACES)


def _placed(dx: int) -> np.ndarray:
    """The astronaut on a wider dark canvas, ``dx`` px from the left: a visitor moving sideways."""
    canvas = np.zeros((512, 1100, 3), np.uint8)
    canvas[:, dx : dx + 512] = astronaut_bgr()
    return canvas


def test_identify_faces_keeps_ids_across_frames_and_reset_stream() -> None:
    session = Session(0, 1)
    ids = []
    for i, dx in enumerate([0, 8, 16, 24]):
        reply = ask(session, **image(_placed(dx), identify_faces=True), reset_stream=i == 2)
        ids.extend(p.face_id for p in predictions(reply, "face"))
    assert ids == ["face_0"] * 4
    far = ask(session, **image(_placed(500), identify_faces=True))
    assert [p.face_id for p in predictions(far, "face")] == ["face_1"]
    back = ask(session, **image(_placed(24), identify_faces=True))
    assert [p.face_id for p in predictions(back, "face")] == ["face_0"]


def test_scores_follow_the_image_and_repeat_for_the_same_image() -> None:
    bright = cv2.convertScaleAbs(astronaut_bgr(), alpha=1.2, beta=30)
    (a,) = predictions(ask(Session(0, 1), **image(astronaut_bgr())), "face")
    (b,) = predictions(ask(Session(0, 2), **image(astronaut_bgr())), "face")
    (c,) = predictions(ask(Session(0, 1), **image(bright)), "face")
    (d,) = predictions(ask(Session(1, 1), **image(astronaut_bgr())), "face")
    assert scores(a) == scores(b)
    assert scores(a) != scores(c)
    assert scores(a) != scores(d)


def _video(tmp_path: Path, n: int = 10, fps: float = 10.0) -> Dict[str, Any]:
    frames = [_placed(4 * i)[:, :600] for i in range(n)]
    return {"data": b64(mjpeg_avi(tmp_path, frames, fps)), "models": {"face": {"identify_faces": True}}}


@pytest.mark.parametrize(
    ("fps_pred", "frames"), [(None, [0, 4, 7]), (1.0, [0]), (5.0, [0, 2, 4, 6, 8]), (30.0, list(range(10)))]
)
def test_fps_pred_selects_video_frames(tmp_path: Path, fps_pred: Optional[float], frames: List[int]) -> None:
    request = _video(tmp_path)
    if fps_pred is not None:
        request["models"]["face"]["fps_pred"] = fps_pred
    preds = predictions(ask(Session(0, 1), **request), "face")
    assert [p.frame for p in preds] == frames
    assert [p.face_time for p in preds] == [pytest.approx(f / 10.0) for f in frames]
    assert {p.face_id for p in preds} == {"face_0"}


def test_audio_models_on_video_are_e0102(tmp_path: Path) -> None:
    request = _video(tmp_path, n=2)
    request["models"] = {"prosody": {}}
    assert error(ask(Session(0, 1), **request)) == Codes.MODEL_FILE_MISMATCH


# ------------------------------------------------------------------------------------------- audio


def _times(reply: Reply, model: str = "prosody") -> List[Tuple[float, float]]:
    out = []
    for p in predictions(reply, model):
        assert p.time is not None
        out.append((p.time.begin, p.time.end))
    return out


def test_second_payload_is_on_the_streams_clock_with_context_prepended() -> None:
    session = Session(0, 1)
    assert _times(ask(session, **audio(voice(500)))) == [(0.0, 0.5)]
    assert _times(ask(session, **audio(voice(500)))) == [(0.0, 1.0)]


@pytest.mark.parametrize(
    "extra", [{"reset_stream": True}, {"stream_window_ms": 500}], ids=["reset", "window"]
)
def test_reset_or_a_short_window_drops_the_context_but_not_the_clock(extra: Dict[str, Any]) -> None:
    session = Session(0, 1)
    ask(session, **audio(voice(500)))
    assert _times(ask(session, **audio(voice(500), **extra))) == [(0.5, 1.0)]


def test_a_600_ms_window_prepends_the_last_100_ms() -> None:
    session = Session(0, 1)
    ask(session, **audio(voice(500)))
    assert _times(ask(session, **audio(voice(500), stream_window_ms=600))) == [(0.4, 1.0)]


def test_context_changes_the_scores_of_a_payload() -> None:
    with_context, without = Session(0, 1), Session(0, 1)
    ask(with_context, **audio(voice(500, pitch_hz=220)))
    ask(without, **audio(voice(500, pitch_hz=220)), reset_stream=True)
    a = predictions(ask(with_context, **audio(voice(500))), "prosody")
    b = predictions(ask(without, **audio(voice(500), reset_stream=True)), "prosody")
    assert scores(a[0]) != scores(b[0])


def test_speech_already_reported_is_not_reported_again() -> None:
    session = Session(0, 1)
    ask(session, **audio(np.concatenate([voice(500), silence(1000)])))
    assert warning(ask(session, **audio(silence(500))), "prosody") == Codes.NO_SPEECH


def test_silence_gives_nested_no_speech_and_no_burst_warnings() -> None:
    reply = ask(Session(0, 1), **audio(silence(1000) + 20))  # a constant offset, not speech
    assert warning(reply, "prosody") == Codes.NO_SPEECH
    assert warning(reply, "burst") == Codes.NO_BURSTS


def test_bursts_are_short_isolated_vocalisations() -> None:
    session = Session(0, 1)
    short = np.concatenate([silence(300), voice(300), silence(300)])
    assert _times(ask(session, **audio(short)), "burst") == [(0.3, 0.6)]
    assert warning(ask(session, reset_stream=True, **audio(voice(2000))), "burst") == Codes.NO_BURSTS


def test_only_requested_audio_models_answer() -> None:
    reply = ask(Session(0, 1), data=b64(wav_bytes(voice(500))), models={"prosody": {}})
    assert isinstance(reply, PredictionsMessage)
    assert set(reply.outputs) == {"prosody"}


def test_audio_emotions_use_the_48_labels() -> None:
    (p,) = predictions(ask(Session(0, 1), **audio(voice(500))), "prosody")
    assert [s.name for s in p.emotions] == list(EXPRESSIONS)


# ---------------------------------------------------------------------------------------- language


def _language(text: str, **cfg: Any) -> Tuple[Prediction, ...]:
    return predictions(ask(Session(0, 1), data=text, raw_text=True, models={"language": cfg}), "language")


def test_words_match_hume_documented_example() -> None:
    preds = _language("Mary had a little lamb")
    assert [(p.text, p.position) for p in preds[:2]] == [("Mary", (0, 4)), ("had", (5, 8))]
    assert len(preds) == 5
    assert [s.name for s in preds[0].emotions] == list(LANGUAGE_EXPRESSIONS)


@pytest.mark.parametrize(
    ("granularity", "spans"),
    [
        ("sentence", ["Hi there!", "How are you?", "Fine."]),
        ("utterance", ["Hi there!  How are you?", "Fine."]),
        ("passage", ["Hi there!  How are you?\n  Fine."]),
        ("word", ["Hi", "there", "How", "are", "you", "Fine"]),
    ],
)
def test_granularities(granularity: str, spans: List[str]) -> None:
    text = " Hi there!  How are you?\n  Fine. "
    preds = _language(text, granularity=granularity)
    assert [p.text for p in preds] == spans
    for p in preds:
        assert p.position is not None
        assert text[p.position[0] : p.position[1]] == p.text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["word", "sentence", "utterance", "passage"]))
def test_positions_always_index_the_text(text: str, granularity: str) -> None:
    spans = text_spans(text, granularity)
    for begin, end in spans:
        assert 0 <= begin < end <= len(text)
        assert text[begin:end] == text[begin:end].strip()
    assert spans == sorted(spans)


def test_sentiment_and_toxicity_only_when_asked_and_follow_the_words() -> None:
    plain = _language("I love this", granularity="passage")[0]
    assert plain.sentiment is None
    assert plain.toxicity is None
    kind, rude = _language(
        "I love this. You idiot, shut up.", granularity="sentence", sentiment={}, toxicity={}
    )
    assert kind.sentiment is not None
    assert [s.name for s in kind.sentiment] == list(SENTIMENT_LEVELS)
    assert sum(s.score for s in kind.sentiment) == pytest.approx(1.0, abs=1e-4)
    assert max(kind.sentiment, key=lambda s: s.score).name in ("7", "8", "9")
    assert kind.toxicity is not None
    assert rude.toxicity is not None
    assert [s.name for s in rude.toxicity] == list(TOXICITY_CATEGORIES)
    assert rude.toxicity[0].score > kind.toxicity[0].score + 0.3


@pytest.mark.parametrize("text", ["", "   ", "?!"])
def test_text_without_words_gets_the_no_language_warning(text: str) -> None:
    reply = ask(Session(0, 1), data=text, raw_text=True, models={"language": {}})
    assert warning(reply, "language") == Codes.NO_LANGUAGE


# ---------------------------------------------------------------------------------------- facemesh


def test_facemesh_scores_each_face_and_follow_the_mouth() -> None:
    session = Session(0, 1)
    closed = predictions(ask(session, data=json.dumps(facemesh(2)), models={"facemesh": {}}), "facemesh")
    opened = predictions(ask(session, data=json.dumps(facemesh(2, 1.0)), models={"facemesh": {}}), "facemesh")
    assert len(closed) == 2
    assert [s.name for s in closed[0].emotions] == list(EXPRESSIONS)
    assert scores(closed[0]) != scores(opened[0])


def test_no_facemesh_is_the_nested_w0102() -> None:
    assert warning(ask(Session(0, 1), data="[]", models={"facemesh": {}}), "facemesh") == Codes.NO_FACEMESH


# ------------------------------------------------------------------------------- errors and details


def test_e0102_uses_the_real_message_text() -> None:
    reply = ask(
        Session(0, 1), data=b64(encode_image(astronaut_bgr())), models={"prosody": {}}, payload_id="q"
    )
    assert reply == ErrorMessage(
        "Streaming payload configured with model type 'prosody', which is not supported for the detected "
        "file type 'image'.",
        Codes.MODEL_FILE_MISMATCH,
        "q",
    )


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"data": "hello", "raw_text": True, "models": {"face": {}}}, Codes.MODEL_FILE_MISMATCH),
        ({"data": json.dumps(facemesh(1)), "models": {"language": {}}}, Codes.MODEL_FILE_MISMATCH),
        ({"data": "hello world", "models": {"language": {}}}, Codes.BAD_BASE64),
        ({"models": {"face": {}}}, Codes.INVALID_STRUCTURE),
        ({"data": "aGVsbG8="}, Codes.INVALID_STRUCTURE),
        ({"data": "aGVsbG8=", "models": {}}, Codes.INVALID_STRUCTURE),
        ({}, Codes.INVALID_STRUCTURE),
    ],
)
def test_request_errors_echo_payload_id_and_job_details(fields: Dict[str, Any], code: str) -> None:
    session = Session(0, 1)
    details = "data" in fields  # without data, job_details alone is a valid request
    reply = ask(session, payload_id="p", job_details=details, **fields)
    assert error(reply) == code
    assert isinstance(reply, ErrorMessage)
    assert reply.payload_id == "p"
    assert reply.job_id == (session.job_id if details else None)


def test_job_id_is_32_chars_stable_per_connection() -> None:
    session = Session(3, 7)
    first = ask(session, job_details=True)
    assert first == PredictionsMessage(job_id=session.job_id)
    assert len(session.job_id) == 32
    reply = ask(session, job_details=True, data="hi", raw_text=True, models={"language": {}})
    assert isinstance(reply, PredictionsMessage)
    assert reply.job_id == session.job_id
    assert job_id_for(3, 7) == session.job_id
    assert job_id_for(3, 8) != session.job_id


def test_reset_alone_is_acknowledged_with_an_empty_reply() -> None:
    assert ask(Session(0, 1), reset_stream=True, payload_id="r") == PredictionsMessage(payload_id="r")


def test_identical_input_and_seed_give_identical_replies() -> None:
    requests = [
        image(astronaut_bgr(), identify_faces=True, facs={}),
        audio(voice(800)),
        {"data": "What a wonderful day!", "raw_text": True, "models": {"language": {"sentiment": {}}}},
        {"data": json.dumps(facemesh(1)), "models": {"facemesh": {}}},
    ]
    a, b, c = Session(5, 1), Session(5, 1), Session(6, 1)
    for request in requests:
        assert reply_to_json(ask(a, **request)) == reply_to_json(ask(b, **request))
    assert reply_to_json(ask(a, **requests[2])) != reply_to_json(ask(c, **requests[2]))


def test_injected_warning_nests_under_a_requested_model_else_top_level() -> None:
    msg = PublishMessage.from_json(json.dumps(image(astronaut_bgr()) | {"payload_id": "w"}))
    reply = Session(0, 1).handle(msg)
    nested = warning_reply(Codes.NO_FACES, msg, reply)
    assert isinstance(nested, PredictionsMessage)
    assert nested.outputs["face"].code == Codes.NO_FACES
    assert nested.payload_id == "w"
    top = warning_reply(Codes.NO_SPEECH, msg, reply)
    assert top == WarningMessage("No speech could be detected in the streamed media.", Codes.NO_SPEECH, "w")


_SMALL_MEDIA = [
    b64(encode_image(np.full((64, 64, 3), 100, np.uint8))),
    b64(wav_bytes(voice(300))),
    json.dumps(facemesh(1)),
    "[]",
    b64(b"garbage"),
    "not base64!",
    "",
]


_REQUESTS = st.fixed_dictionaries(
    {
        "raw_text": st.booleans(),
        "reset_stream": st.booleans(),
        "job_details": st.booleans(),
    },
    optional={
        "data": st.sampled_from(_SMALL_MEDIA) | st.text(max_size=30),
        "models": st.dictionaries(
            st.sampled_from(["face", "prosody", "burst", "language", "facemesh"]), st.just({}), max_size=3
        ),
        "payload_id": st.text(max_size=10),
        "stream_window_ms": st.integers(500, 10000),
    },
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_REQUESTS, min_size=1, max_size=3))
def test_every_request_gets_exactly_one_well_formed_reply_echoing_it(requests: List[Dict[str, Any]]) -> None:
    session = Session(0, 1)
    for request in requests:
        reply = session.handle(PublishMessage.from_json(json.dumps(request)))
        assert parse_reply(reply_to_json(reply)) == reply
        assert reply.payload_id == request.get("payload_id")
        assert reply.job_id == (session.job_id if request["job_details"] else None)
        if isinstance(reply, PredictionsMessage) and "data" in request:
            assert set(reply.outputs) == set(request["models"])
