"""The judge: Hume's official Python SDK (hume 0.13, the last with the streaming client) against the emulator.

Real media for every model (the astronaut photo as JPEG, espeak-ng speech as WAV, text, face-mesh
landmarks) goes through the SDK's own send helpers, and every reply must parse into the SDK's own types;
errors and warnings must arrive as the SDK's error / warning types (or nested warnings) with their codes.
"""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
import pytest
import pytest_asyncio

hume = pytest.importorskip("hume", reason="the official SDK is the judge: pip install 'hume>=0.13,<0.14'")

from hume import AsyncHumeClient  # noqa: E402
from hume.core.api_error import ApiError  # noqa: E402
from hume.expression_measurement.stream import (  # noqa: E402
    Config,
    StreamErrorMessage,
    StreamFace,
    StreamLanguage,
    StreamModelPredictions,
    StreamWarningMessage,
)
from hume.expression_measurement.stream.stream.types import StreamModelsEndpointPayload  # noqa: E402

from agent.hume.v0.protocol import (  # noqa: E402
    EXPRESSIONS,
    FACE_DESCRIPTIONS,
    FACS_LABELS,
    LANGUAGE_EXPRESSIONS,
    TOXICITY_CATEGORIES,
)
from hume_emulator.emulator import Emulator  # noqa: E402
from tests.support.emulator import (  # noqa: E402
    TEST_KEY,
    astronaut_bgr,
    b64,
    encode_image,
    espeak_wav,
    facemesh,
    mjpeg_avi,
    wav_bytes,
)

TIMEOUT_S = 20.0


@pytest_asyncio.fixture
async def sock(emulator: Emulator) -> AsyncIterator[Any]:
    client = AsyncHumeClient(api_key=TEST_KEY, base_url=emulator.base_url)
    async with client.expression_measurement.stream.connect() as socket:
        yield socket


async def bounded(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, TIMEOUT_S)


def names(items: Any) -> list:
    return [item.name for item in items]


async def test_face_on_the_astronaut(sock: Any) -> None:
    config = Config(face=StreamFace(identify_faces=True, facs={}, descriptions={}))
    reply = await bounded(sock.send_file(b64(encode_image(astronaut_bgr())), config=config, payload_id="f1"))
    assert isinstance(reply, StreamModelPredictions)
    assert reply.payload_id == "f1"
    (face,) = reply.face.predictions
    assert face.prob >= 0.99
    assert face.face_id == "face_0"
    assert 150 < face.bbox.x < 210
    assert names(face.emotions) == list(EXPRESSIONS)
    assert names(face.facs) == list(FACS_LABELS)
    assert names(face.descriptions) == list(FACE_DESCRIPTIONS)


async def test_face_from_a_file_path_like_sdk_users_send_it(sock: Any, tmp_path: Path) -> None:
    path = tmp_path / "astronaut.jpg"
    path.write_bytes(encode_image(astronaut_bgr()))
    reply = await bounded(sock.send_file(str(path), config=Config(face=StreamFace())))
    assert reply.face.predictions[0].face_id == "unknown"


async def test_face_on_a_short_motion_jpeg_video(sock: Any, tmp_path: Path) -> None:
    path = tmp_path / "visit.avi"
    path.write_bytes(mjpeg_avi(tmp_path, [astronaut_bgr()] * 6, fps=6))
    reply = await bounded(sock.send_file(str(path), config=Config(face=StreamFace(fps_pred=2))))
    assert isinstance(reply, StreamModelPredictions)
    assert [(p.frame, p.time) for p in reply.face.predictions] == [(0, 0.0), (3, 0.5)]


async def test_prosody_on_espeak_speech(sock: Any) -> None:
    speech = espeak_wav("Hello there. I am really happy to see you today.")
    reply = await bounded(sock.send_file(b64(speech), config=Config(prosody={}), payload_id="p1"))
    assert isinstance(reply, StreamModelPredictions)
    assert reply.payload_id == "p1"
    assert reply.prosody.predictions
    first = reply.prosody.predictions[0]
    assert 0 <= first.time.begin < first.time.end
    assert names(first.emotions) == list(EXPRESSIONS)


async def test_burst_on_a_short_exclamation(sock: Any) -> None:
    reply = await bounded(sock.send_file(b64(espeak_wav("Ha!")), config=Config(burst={})))
    assert isinstance(reply, StreamModelPredictions)
    (burst,) = reply.burst.predictions
    assert names(burst.emotions) == list(EXPRESSIONS)


async def test_language_with_sentiment_and_toxicity(sock: Any) -> None:
    text = "I love this place. You are an idiot!"
    config = Config(language=StreamLanguage(granularity="sentence", sentiment={}, toxicity={}))
    reply = await bounded(sock.send_text(text, config=config, payload_id="t1"))
    assert isinstance(reply, StreamModelPredictions)
    assert reply.payload_id == "t1"
    kind, rude = reply.language.predictions
    assert (kind.text, kind.position.begin, kind.position.end) == ("I love this place.", 0, 18)
    assert text[int(rude.position.begin) : int(rude.position.end)] == rude.text
    assert names(kind.emotions) == list(LANGUAGE_EXPRESSIONS)
    assert names(kind.sentiment) == [str(i) for i in range(1, 10)]
    assert names(rude.toxicity) == list(TOXICITY_CATEGORIES)
    assert rude.toxicity[0].score > kind.toxicity[0].score


async def test_language_defaults_to_words(sock: Any) -> None:
    reply = await bounded(sock.send_text("Mary had a little lamb", config=Config(language=StreamLanguage())))
    assert [(p.text, p.position.begin, p.position.end) for p in reply.language.predictions[:2]] == [
        ("Mary", 0, 4),
        ("had", 5, 8),
    ]


async def test_facemesh_landmarks(sock: Any) -> None:
    reply = await bounded(sock.send_facemesh(facemesh(2), config=Config(facemesh={}), payload_id="m1"))
    assert isinstance(reply, StreamModelPredictions)
    assert len(reply.facemesh.predictions) == 2
    assert names(reply.facemesh.predictions[0].emotions) == list(EXPRESSIONS)


async def test_job_details_and_reset(sock: Any) -> None:
    first = await bounded(sock.get_job_details())
    again = await bounded(sock.get_job_details())
    assert isinstance(first, StreamModelPredictions)
    assert len(first.job_details.job_id) == 32
    assert again.job_details.job_id == first.job_details.job_id
    reset = await bounded(sock.reset())
    assert isinstance(reset, StreamModelPredictions)
    assert reset.job_details is None


async def test_stream_window_through_send_publish(sock: Any) -> None:
    chunk = b64(wav_bytes(espeak_wav_samples("Hello")[:11025], rate=22050))  # espeak's first 500 ms
    times = []
    for reset in (False, False, True):
        payload = StreamModelsEndpointPayload(
            data=chunk, models=Config(prosody={}), stream_window_ms=5000, reset_stream=reset
        )
        await bounded(sock.send_publish(payload))
        reply = await bounded(sock.recv())
        times.append([(p.time.begin, p.time.end) for p in reply.prosody.predictions])
    # The second payload sees the first as context; after reset_stream the context is gone,
    # but the stream clock runs on (third payload starts at 1.0 s).
    assert times[1][0][0] < 0.5 <= times[1][-1][1]
    assert min(b for b, _ in times[2]) >= 1.0


def espeak_wav_samples(text: str) -> np.ndarray:
    with wave.open(io.BytesIO(espeak_wav(text))) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)


# ------------------------------------------------------------------------------------- warnings


async def test_no_face_is_a_nested_warning_the_sdk_keeps_in_model_extra(sock: Any) -> None:
    blank = b64(encode_image(np.full((240, 320, 3), 90, np.uint8)))
    reply = await bounded(sock.send_file(blank, config=Config(face=StreamFace()), payload_id="w"))
    assert isinstance(reply, StreamModelPredictions)
    assert reply.payload_id == "w"
    assert reply.face.model_extra == {"warning": "No faces detected.", "code": "W0103"}


@pytest.mark.parametrize(
    ("config", "code"),
    [
        (Config(prosody={}), "W0105"),
        (Config(burst={}), "W0101"),
    ],
)
async def test_silence_gives_nested_audio_warnings(sock: Any, config: Config, code: str) -> None:
    reply = await bounded(sock.send_file(b64(wav_bytes(np.zeros(8000, np.int16))), config=config))
    model = "prosody" if config.prosody is not None else "burst"
    assert getattr(reply, model).model_extra["code"] == code


async def test_empty_text_and_facemesh_warnings(sock: Any) -> None:
    reply = await bounded(sock.send_text("   ", config=Config(language=StreamLanguage())))
    assert reply.language.model_extra["code"] == "W0104"
    reply = await bounded(sock.send_facemesh([], config=Config(facemesh={})))
    assert reply.facemesh.model_extra["code"] == "W0102"


async def test_injected_top_level_warning_is_the_sdks_warning_type(emulator: Emulator, sock: Any) -> None:
    emulator.faults.warning_code = "W0105"
    reply = await bounded(sock.send_text("hi", config=Config(language=StreamLanguage()), payload_id="tw"))
    assert isinstance(reply, StreamWarningMessage)
    assert (reply.code, reply.payload_id) == ("W0105", "tw")


# --------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("data", "config", "code"),
    [
        (b64(b"not a known format"), Config(face=StreamFace()), "E0200"),
        ("not base64 at all!", Config(face=StreamFace()), "E0201"),
        (b64(wav_bytes(np.zeros(0, np.int16))), Config(prosody={}), "E0202"),
        (b64(wav_bytes(np.zeros(80016, np.int16))), Config(prosody={}), "E0203"),
        (b64(encode_image(np.zeros((2, 3001, 3), np.uint8), ".png")), Config(face=StreamFace()), "E0205"),
    ],
    ids=["unknown-format", "bad-base64", "no-audio-signal", "audio-too-long", "image-too-large"],
)
async def test_media_errors_are_the_sdks_error_type(sock: Any, data: str, config: Config, code: str) -> None:
    reply = await bounded(sock.send_file(data, config=config, payload_id="e"))
    assert isinstance(reply, StreamErrorMessage)
    assert (reply.code, reply.payload_id) == (code, "e")


async def test_text_sent_without_raw_text(sock: Any) -> None:
    reply = await bounded(sock.send_file("Mary had a little lamb", config=Config(language=StreamLanguage())))
    assert isinstance(reply, StreamErrorMessage)
    assert reply.code == "E0201"


async def test_model_file_mismatch_has_the_real_text(sock: Any) -> None:
    reply = await bounded(sock.send_file(b64(encode_image(astronaut_bgr())), config=Config(prosody={})))
    assert isinstance(reply, StreamErrorMessage)
    assert reply.code == "E0102"
    assert reply.error == (
        "Streaming payload configured with model type 'prosody', which is not supported for the "
        "detected file type 'image'."
    )


async def test_text_over_the_limit(sock: Any) -> None:
    reply = await bounded(sock.send_text("a" * 10001, config=Config(language=StreamLanguage())))
    assert isinstance(reply, StreamErrorMessage)
    assert reply.code == "E0206"


async def test_structure_errors_keep_the_connection_open(sock: Any) -> None:
    payload = StreamModelsEndpointPayload(data="x", models=Config(face=StreamFace()), stream_window_ms=20)
    await bounded(sock.send_publish(payload))
    reply = await bounded(sock.recv())
    assert isinstance(reply, StreamErrorMessage)
    assert reply.code == "E0101"
    await bounded(sock._websocket.send("{not json"))
    reply = await bounded(sock.recv())
    assert isinstance(reply, StreamErrorMessage)
    assert reply.code == "E0100"
    assert isinstance(await bounded(sock.get_job_details()), StreamModelPredictions)


async def test_out_of_credits_fault(emulator: Emulator, sock: Any) -> None:
    emulator.faults.error_code = "E0300"
    reply = await bounded(sock.send_text("hi", config=Config(language=StreamLanguage()), payload_id="c"))
    assert isinstance(reply, StreamErrorMessage)
    assert (reply.code, reply.payload_id) == ("E0300", "c")
    assert "purchase more credits" in reply.error


# ----------------------------------------------------------------------------------------- auth


async def test_a_wrong_key_is_apierror_401(emulator: Emulator) -> None:
    client = AsyncHumeClient(api_key="wrong", base_url=emulator.base_url)
    with pytest.raises(ApiError) as info:
        async with client.expression_measurement.stream.connect():
            pass
    assert info.value.status_code == 401
    assert info.value.body == "Websocket initialized with invalid credentials."
