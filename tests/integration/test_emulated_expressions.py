"""Both emulators' scores follow what is visible and audible: a smile, a neutral face, closed eyes, a lively
or a calm voice (real espeak-ng speech), friendly or abusive words; and the synthetic sources show them."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

from agent.capture.synthetic import (
    CALM,
    EXPRESSION_SCENE,
    LIVELY,
    SENTENCES,
    SpeechSource,
    SpokenLine,
    SyntheticCamera,
    painted_expression,
)
from agent.hume.v0.protocol import TOXICITY_CATEGORIES, Prediction, PredictionsMessage
from agent.hume.v0.publish import PublishMessage
from agent.hume.v1 import protocol as p
from hume_emulator import detectors
from hume_emulator.models import Session
from hume_emulator.v1.emulated import AudioSession, FaultsV1, VideoSession
from tests.support.emulator import astronaut_bgr, b64, encode_image, facemesh, wav_bytes

ASTRONAUT_FACE_XY = (177, 67)
LIVELY_LINE = SpokenLine("Wow, look at that! I did not expect it to be this big!", **LIVELY)
CALM_LINE = SpokenLine("Hmm. Let me think about it.", **CALM)


def face_picture(expression: str) -> np.ndarray:
    return painted_expression(astronaut_bgr(), ASTRONAUT_FACE_XY, expression)


async def spoken(line: SpokenLine) -> np.ndarray:
    """``line`` as espeak-ng says it, 16 kHz int16, with 0.3 s of silence on either side."""
    pcm = await SpeechSource(sentences=(line,)).say(line)
    pad = np.zeros(4800, np.int16)
    return np.concatenate([pad, pcm, pad])


def v0(seed: int, **fields: Any) -> Tuple[Prediction, ...]:
    reply = Session(seed, 1).handle(PublishMessage.from_json(json.dumps(fields)))
    assert isinstance(reply, PredictionsMessage), reply
    (out,) = reply.outputs.values()
    assert out.warning is None, out
    return out.predictions


def ranked(pred: Prediction) -> List[str]:
    return [s.name for s in sorted(pred.emotions, key=lambda s: -s.score)]


def v0_face_top3(expression: str, seed: int = 0) -> List[str]:
    (face,) = v0(seed, data=b64(encode_image(face_picture(expression))), models={"face": {}})
    return ranked(face)[:3]


def v1_face_expressions(expression: str, seed: int = 0) -> List[Dict[str, Any]]:
    session = VideoSession(seed, FaultsV1(), 0.0, 2.0)
    session.on_binary(encode_image(face_picture(expression)), 0.0)
    (result,) = [m for m in session.outbox if m["type"] == "measurement.result"]
    (face,) = result["faces"]
    expressions: List[Dict[str, Any]] = face["expressions"]
    return expressions


# ------------------------------------------------------------------------------------------- faces


def test_the_smiling_astronaut_reads_joy_or_amusement_in_both_apis() -> None:
    assert {"Joy", "Amusement"} & set(v0_face_top3("smile"))
    assert {"joy", "amusement"} & {e["name"] for e in v1_face_expressions("smile")[:3]}


@pytest.mark.parametrize("expression", ["neutral", "eyes closed"])
def test_a_face_that_does_not_smile_does_not_read_joy_or_amusement(expression: str) -> None:
    assert not {"Joy", "Amusement"} & set(v0_face_top3(expression))
    assert not {"joy", "amusement"} & {e["name"] for e in v1_face_expressions(expression)[:3]}


def test_neutral_reads_calm_and_concentrated_closed_eyes_tired() -> None:
    assert set(v0_face_top3("neutral")[:2]) == {"Calmness", "Concentration"}
    assert v1_face_expressions("neutral")[0]["name"] == "concentration"
    assert v0_face_top3("eyes closed")[0] == "Tiredness"
    (face,) = v0(
        0, data=b64(encode_image(face_picture("eyes closed"))), models={"face": {"descriptions": {}}}
    )
    assert face.descriptions is not None
    assert max(face.descriptions, key=lambda s: s.score).name == "Eyes closed"


def test_every_label_is_still_there_and_the_others_stay_low() -> None:
    (face,) = v0(0, data=b64(encode_image(face_picture("smile"))), models={"face": {}})
    assert len(face.emotions) == 48
    assert sorted(s.score for s in face.emotions)[-4] < 0.45  # beyond the few cued labels


# ------------------------------------------------------------------------------------------- voice


async def test_a_lively_voice_reads_excitement_or_interest_above_calmness_a_calm_one_the_reverse() -> None:
    for line, lively in ((LIVELY_LINE, True), (CALM_LINE, False)):
        pcm = await spoken(line)
        predictions = v0(0, data=b64(wav_bytes(pcm)), models={"prosody": {}})
        assert predictions
        for pred in predictions:
            score = {s.name: s.score for s in pred.emotions}
            aroused = max(score["Excitement"], score["Interest"])
            assert (aroused > score["Calmness"]) is lively, (line.text, ranked(pred)[:3])


async def test_v1_audio_lively_reads_interest_and_fast_calm_reads_neutral_and_calm() -> None:
    for line, lively in ((LIVELY_LINE, True), (CALM_LINE, False)):
        pcm = (await spoken(line)).astype("<i2").tobytes()
        session = AudioSession(0, FaultsV1(), 0.0, 100_000.0)
        session.on_binary(pcm, 0.0)
        session.on_text(json.dumps({"type": "session.close"}))
        results = [m for m in session.outbox if m["type"] == "measurement.result"]
        assert results
        for r in results:
            expressions = {e["name"]: e["probability"] for e in r["expressions"]}
            attributes = [a["name"] for a in r["voice_attributes"]]
            assert (expressions.get("interest", 0.0) > expressions.get("neutral", 0.0)) is lively, expressions
            assert ("fast" in attributes) is lively, attributes
            assert ("calm" in attributes) is not lively, attributes


async def test_the_synthetic_speaker_alternates_lively_and_calm_lines() -> None:
    source = SpeechSource()
    styles = [line.amplitude for line in source.sentences]
    assert styles == [LIVELY["amplitude"], CALM["amplitude"]] * (len(SENTENCES) // 2)
    for line in source.sentences:
        pcm = await source.say(line)
        liveliness = detectors.voice_cues(detectors.to_mono_16k(pcm, 16000)).liveliness
        assert (liveliness > 0.6) if line.amplitude == LIVELY["amplitude"] else (liveliness < 0.4), line


# -------------------------------------------------------------------------------------------- text


def _passage(text: str, seed: int = 0) -> Prediction:
    (pred,) = v0(
        seed,
        data=text,
        raw_text=True,
        models={"language": {"granularity": "passage", "toxicity": {}, "sentiment": {}}},
    )
    return pred


def test_abusive_words_raise_toxicity_friendly_ones_do_not() -> None:
    rude = _passage("You are a stupid idiot and this is crap.")
    kind = _passage("Thank you so much, this exhibition is wonderful and I am happy!")
    plain = _passage("Where is the exit? I need to catch the last train.")
    assert rude.toxicity is not None
    assert kind.toxicity is not None
    assert plain.toxicity is not None
    toxic = {s.name: s.score for s in rude.toxicity}
    assert toxic["toxic"] > 0.5
    assert toxic["insult"] > 0.5
    assert [s.name for s in kind.toxicity] == list(TOXICITY_CATEGORIES)
    assert max(s.score for s in kind.toxicity) < 0.02
    assert max(s.score for s in plain.toxicity) < 0.02
    assert ranked(kind)[0] == "Joy"
    assert {"Anger", "Annoyance", "Contempt"} >= set(ranked(rude)[:2])
    assert kind.sentiment is not None
    assert max(kind.sentiment, key=lambda s: s.score).name in ("7", "8", "9")


# ---------------------------------------------------------------------------------------- determinism


async def test_same_seed_same_scores_another_seed_other_numbers_same_reading() -> None:
    image = b64(encode_image(face_picture("smile")))
    audio = b64(wav_bytes(await spoken(LIVELY_LINE)))

    def run(seed: int) -> List[List[Tuple[str, float]]]:
        preds = [
            *v0(seed, data=image, models={"face": {}}),
            *v0(seed, data=audio, models={"prosody": {}}),
            _passage("What a wonderful day!", seed),
        ]
        return [[(s.name, s.score) for s in pred.emotions] for pred in preds]

    assert run(3) == run(3)
    assert run(3) != run(4)
    for a, b in zip(run(3), run(4)):
        assert max(a, key=lambda s: s[1])[0] == max(b, key=lambda s: s[1])[0]
    assert v1_face_expressions("smile", 3) == v1_face_expressions("smile", 3)
    assert v1_face_expressions("smile", 3) != v1_face_expressions("smile", 4)


# ------------------------------------------------------------------------------------ synthetic scene


def test_the_synthetic_scene_changes_expression_and_the_face_stays_found() -> None:
    camera = SyntheticCamera(640, 480, 2.0, scene=EXPRESSION_SCENE, loop=True)
    total = sum(step.duration_s for step in EXPRESSION_SCENE)
    seen: Dict[str, List[detectors.FaceCues]] = {}
    for t in np.arange(0.0, total, 2.5):
        image = camera.render(float(t))
        (face,) = detectors.detect_faces(image, p.FACE_MIN_SIZE_DEFAULT)
        cues = detectors.face_cues(image, (face.x, face.y, face.w, face.h))
        seen.setdefault(camera.step_at(float(t)).expression, []).append(cues)
    assert set(seen) == {"smile", "neutral", "eyes closed"}
    assert all(c.smile > 0.7 and c.eyes_open > 0.7 for c in seen["smile"])
    assert all(c.smile < 0.2 and c.eyes_open > 0.7 for c in seen["neutral"])
    assert all(c.smile < 0.2 and c.eyes_open < 0.2 for c in seen["eyes closed"])


def test_facemesh_reads_a_wide_mouth_as_a_smile_and_shut_lids_as_tired() -> None:
    def mesh(mouth_width: float, lid_gap: float) -> List[List[List[float]]]:
        (face,) = facemesh(1)
        points = np.asarray(face)
        left, right = points[:, 0].min(), points[:, 0].max()
        top, bottom = points[:, 1].min(), points[:, 1].max()
        centre = (left + right) / 2
        points[61, :2] = (centre - mouth_width * (right - left) / 2, top + 0.75 * (bottom - top))
        points[291, :2] = (centre + mouth_width * (right - left) / 2, top + 0.75 * (bottom - top))
        for upper, lower in ((159, 145), (386, 374)):
            points[upper, 1] = top + 0.4 * (bottom - top)
            points[lower, :2] = (points[upper, 0], points[upper, 1] + lid_gap * (bottom - top))
        return [points.tolist()]

    def top3(mouth_width: float, lid_gap: float) -> List[str]:
        (pred,) = v0(0, data=json.dumps(mesh(mouth_width, lid_gap)), models={"facemesh": {}})
        return ranked(pred)[:3]

    assert {"Joy", "Amusement"} & set(top3(0.55, 0.04))
    assert not {"Joy", "Amusement"} & set(top3(0.35, 0.04))
    assert top3(0.35, 0.0)[0] == "Tiredness"
