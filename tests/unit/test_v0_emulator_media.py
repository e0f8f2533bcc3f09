"""Decoding of the ``data`` field: accepted containers, documented limits and their error codes."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from agent.hume.v0.protocol import Codes, ProtocolViolation
from hume_emulator.media import decode, decode_frame, image_size
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


def code_of(data: str, raw_text: bool = False) -> str:
    with pytest.raises(ProtocolViolation) as info:
        decode(data, raw_text)
    return info.value.code


def test_raw_text_is_text_up_to_ten_thousand_characters() -> None:
    assert decode("x" * 10000, raw_text=True).text == "x" * 10000
    assert code_of("x" * 10001, raw_text=True) == Codes.TEXT_TOO_LONG
    with pytest.raises(ProtocolViolation, match=r"limit is 10,000 characters.*10,001"):
        decode("x" * 10001, raw_text=True)


def test_text_without_raw_text_is_bad_base64() -> None:
    assert code_of("Mary had a little lamb") == Codes.BAD_BASE64


def test_base64_of_unknown_bytes_is_unknown_format() -> None:
    assert code_of(b64(b"just some bytes, not media")) == Codes.UNKNOWN_FORMAT
    assert code_of("") == Codes.UNKNOWN_FORMAT


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_jpeg_and_png_decode_to_bgr(ext: str) -> None:
    media = decode(b64(encode_image(astronaut_bgr(), ext)), raw_text=False)
    assert media.kind == "image"
    assert media.image is not None
    assert media.image.shape == (512, 512, 3)


def test_mime_wrapped_base64_is_accepted() -> None:
    text = base64.encodebytes(encode_image(astronaut_bgr())).decode()
    assert "\n" in text
    assert decode(text, raw_text=False).kind == "image"


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_image_size_is_read_from_the_header(ext: str) -> None:
    assert image_size(encode_image(np.zeros((7, 301, 3), np.uint8), ext)) == (301, 7)


@pytest.mark.parametrize(("width", "height", "ok"), [(3000, 1, True), (1, 3000, True), (3001, 1, False)])
def test_image_limit_is_3000_px_a_side(width: int, height: int, ok: bool) -> None:
    data = b64(encode_image(np.zeros((height, width, 3), np.uint8), ".png"))
    if ok:
        assert decode(data, raw_text=False).kind == "image"
    else:
        assert code_of(data) == Codes.IMAGE_TOO_LARGE


def test_truncated_jpeg_is_unknown_format() -> None:
    assert code_of(b64(encode_image(astronaut_bgr())[:40])) == Codes.UNKNOWN_FORMAT


@pytest.mark.parametrize(
    ("samples", "rate", "width"),
    [
        (voice(1000), 16000, 2),
        (np.stack([voice(1000, 44100), voice(1000, 44100)], axis=1), 44100, 2),
        ((voice(1000, 8000) // 256 + 128).astype(np.uint8), 8000, 1),
        (voice(1000, 48000).astype(np.int32) << 16, 48000, 4),
    ],
)
def test_wav_of_any_rate_width_and_channels_becomes_16k_mono(
    samples: np.ndarray, rate: int, width: int
) -> None:
    media = decode(b64(wav_bytes(samples, rate, width)), raw_text=False)
    assert media.kind == "audio"
    assert media.audio is not None
    assert media.audio.shape == (16000,)
    assert 0.05 < float(np.abs(media.audio).max()) <= 1.0


def test_24_bit_wav_decodes() -> None:
    pcm = voice(500).astype(np.int32) << 8
    raw = b"".join(struct.pack("<i", int(v))[:3] for v in pcm)
    wav = bytearray(wav_bytes(np.zeros(len(pcm) * 3 // 2, np.int16)))
    header = wav[:44]
    header[22:24] = struct.pack("<H", 1)
    header[28:36] = struct.pack("<IHH", 16000 * 3, 3, 24)
    media = decode(b64(bytes(header) + raw), raw_text=False)
    assert media.audio is not None
    assert media.audio.shape == (8000,)


def test_audio_limit_is_5000_ms() -> None:
    assert decode(b64(wav_bytes(voice(5000))), raw_text=False).kind == "audio"
    assert code_of(b64(wav_bytes(voice(5001)))) == Codes.AUDIO_TOO_LONG
    with pytest.raises(ProtocolViolation, match=r"limit is 5000 milliseconds.*5001"):
        decode(b64(wav_bytes(voice(5001))), raw_text=False)


def test_audio_without_samples_is_no_audio_signal() -> None:
    assert code_of(b64(wav_bytes(silence(0)))) == Codes.NO_AUDIO_SIGNAL


def test_digital_silence_is_still_audio() -> None:
    assert decode(b64(wav_bytes(silence(500))), raw_text=False).kind == "audio"


def test_corrupt_wav_is_unknown_format() -> None:
    assert code_of(b64(b"RIFF\x00\x00\x00\x00WAVEjunk")) == Codes.UNKNOWN_FORMAT


def test_video_longer_than_5000_ms_is_e0204(tmp_path: Path) -> None:
    assert code_of(b64(mjpeg_avi(tmp_path, [np.zeros((48, 64, 3), np.uint8)] * 60))) == Codes.VIDEO_TOO_LONG


def test_motion_jpeg_avi_is_decoded_frame_by_frame(tmp_path: Path) -> None:
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(10)]
    media = decode(b64(mjpeg_avi(tmp_path, frames, fps=10)), raw_text=False)
    assert media.kind == "video"
    assert media.fps == pytest.approx(10.0)
    assert len(media.frames) == 10
    assert [round(decode_frame(f).mean() / 20) for f in media.frames] == list(range(10))


def _mp4(duration_ms: int) -> str:
    ftyp = struct.pack(">I4s4sI4s", 20, b"ftyp", b"isom", 0, b"isom")
    mvhd_body = struct.pack(">B3xIIII", 0, 0, 0, 1000, duration_ms) + bytes(80)
    mvhd = struct.pack(">I4s", 8 + len(mvhd_body), b"mvhd") + mvhd_body
    moov = struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd
    return b64(ftyp + moov)


def test_mp4_duration_is_read_from_mvhd() -> None:
    assert code_of(_mp4(5001)) == Codes.VIDEO_TOO_LONG
    assert code_of(_mp4(4000)) == Codes.UNKNOWN_FORMAT


@pytest.mark.parametrize("magic", [b"ID3\x03", b"OggS\x00", b"fLaC\x00", b"\x1a\x45\xdf\xa3\x01"])
def test_other_containers_are_named_in_the_error(magic: bytes) -> None:
    with pytest.raises(ProtocolViolation, match="JPEG or PNG images, WAV audio, Motion-JPEG AVI") as info:
        decode(b64(magic + bytes(64)), raw_text=False)
    assert info.value.code == Codes.UNKNOWN_FORMAT


def test_facemesh_as_plain_json_like_sdk_0_13_sends_it() -> None:
    media = decode(json.dumps(facemesh(2)), raw_text=False)
    assert media.kind == "facemesh"
    assert media.landmarks is not None
    assert media.landmarks.shape == (2, 478, 3)


def test_facemesh_as_base64_like_the_legacy_sdk_sent_it() -> None:
    media = decode(b64(json.dumps(facemesh(1)).encode()), raw_text=False)
    assert media.landmarks is not None
    assert media.landmarks.shape == (1, 478, 3)


def test_empty_facemesh_is_zero_faces() -> None:
    media = decode("[]", raw_text=False)
    assert media.landmarks is not None
    assert media.landmarks.shape[0] == 0


@pytest.mark.parametrize(
    "data",
    [
        json.dumps(facemesh(11)),
        json.dumps([[[0.1, 0.2, 0.3]] * 477]),
        json.dumps([[[0.1, 0.2]] * 478]),
        json.dumps([[["a", 0.2, 0.3]] * 478]),
        "[[[1, 2, 3]",
    ],
)
def test_bad_facemesh_is_e0101_naming_the_limits(data: str) -> None:
    with pytest.raises(ProtocolViolation, match="up to 10 faces, each 478 landmarks") as info:
        decode(data, raw_text=False)
    assert info.value.code == Codes.INVALID_STRUCTURE
