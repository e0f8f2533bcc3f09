"""Decoding of the v0 ``data`` field into media, with the real service's limits and error codes.

Everything is decoded in memory (no temporary files). Accepted containers:

- text: ``raw_text: true`` (at most 10,000 characters, else E0206);
- images: JPEG and PNG (at most 3,000 x 3,000 px, checked from the header before decoding, else E0205);
- audio: WAV / RIFF PCM with 8, 16, 24 or 32-bit integer samples, any channel count and rate (at most
  5000 ms, else E0203; no samples at all is E0202);
- facemesh: the landmark JSON (faces x 478 x [x, y, z]), either as plain JSON text (what SDK 0.13's
  ``send_facemesh`` sends) or base64 of it (what the legacy SDK sent); at most 10 faces;
- video: Motion-JPEG AVI (what ``cv2.VideoWriter`` with MJPG writes) is decoded frame by frame, at most
  5000 ms (else E0204); its audio track, if any, is not (audio models on video get E0102). MP4/MOV are
  recognised and their length checked (E0204), but not decoded: a short one is E0200 naming the accepted
  formats (Hume itself recommends sending single frames as images). WebM/Matroska, MP3, Ogg, FLAC and M4A
  are recognised and answered E0200 the same way. Anything else that decodes from base64 is E0200; what
  does not is E0201.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import struct
import wave
from typing import Iterator, Optional, Tuple

import numpy as np

from agent.hume.v0.protocol import (
    AUDIO_MAX_MS,
    FACEMESH_LANDMARKS,
    FACEMESH_MAX_FACES,
    IMAGE_MAX_PX,
    TEXT_MAX_CHARS,
    VIDEO_MAX_MS,
    Codes,
    ProtocolViolation,
)
from hume_emulator import detectors

ACCEPTED = (
    "JPEG or PNG images, WAV audio, Motion-JPEG AVI video, raw text (raw_text: true) "
    "or facemesh landmark JSON"
)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclasses.dataclass(frozen=True)
class Media:
    """A decoded payload. ``kind`` is the detected file type the real service names in its E0102 text."""

    kind: str  # "text" | "image" | "audio" | "video" | "facemesh"
    text: Optional[str] = None
    image: Optional[np.ndarray] = None
    """BGR uint8 (H x W x 3)."""
    audio: Optional[np.ndarray] = None
    """Mono float32 at :data:`detectors.SPEECH_RATE_HZ`."""
    landmarks: Optional[np.ndarray] = None
    """Faces x 478 x 3 float64."""
    frames: Tuple[bytes, ...] = ()
    """Video: the JPEG of every frame, decoded only when a frame is sampled (see :func:`decode_frame`)."""
    fps: float = 0.0
    """Video: frames per second of the container."""


def decode(data: str, raw_text: bool) -> Media:
    """Turn the ``data`` field into media or raise :class:`ProtocolViolation` with the service's code."""
    if raw_text:
        if len(data) > TEXT_MAX_CHARS:
            raise ProtocolViolation(
                Codes.TEXT_TOO_LONG,
                f"Your text was too long. The limit is {TEXT_MAX_CHARS:,} characters, "
                f"but the received text was {len(data):,} characters.",
            )
        return Media("text", text=data)
    if data.lstrip().startswith("["):
        return _facemesh(data)
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolViolation(
            Codes.BAD_BASE64,
            "Data could not be decoded as base64. Set raw_text to true to send text.",
        ) from None
    return _sniff(raw)


def _unknown(what: str) -> ProtocolViolation:
    return ProtocolViolation(
        Codes.UNKNOWN_FORMAT, f"Media could not be parsed into a known file format ({what}); send {ACCEPTED}."
    )


def _sniff(raw: bytes) -> Media:
    head = raw[:16]
    if head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _image(raw)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _wav(raw)
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return _avi(raw)
    if head[4:8] == b"ftyp" and head[8:12] in (b"M4A ", b"M4B "):
        raise _unknown("M4A audio is not decoded by the emulator")
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        _check_video_length(_mp4_duration_ms(raw))
        raise _unknown("only Motion-JPEG AVI video is decoded by the emulator")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        raise _unknown("only Motion-JPEG AVI video is decoded by the emulator")
    if head.startswith((b"ID3", b"OggS", b"fLaC")) or (len(head) > 1 and head[0] == 0xFF and head[1] >= 0xE0):
        raise _unknown("compressed audio is not decoded by the emulator")
    if raw.lstrip().startswith(b"["):
        return _facemesh(raw.decode("utf-8", errors="replace"))
    raise _unknown("unrecognised bytes")


def image_size(raw: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from a PNG or JPEG header without decoding pixels; None if not found."""
    if raw.startswith(b"\x89PNG") and len(raw) >= 24:
        width, height = struct.unpack(">II", raw[16:24])
        return int(width), int(height)
    i = 2
    while i + 9 < len(raw):
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", raw[i + 5 : i + 9])
            return int(width), int(height)
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:
            i += 2
            continue
        i += 2 + struct.unpack(">H", raw[i + 2 : i + 4])[0]
    return None


def _image(raw: bytes) -> Media:
    size = image_size(raw)
    if size is not None and max(size) > IMAGE_MAX_PX:
        raise ProtocolViolation(
            Codes.IMAGE_TOO_LARGE,
            f"Your image file was too large. The limit is {IMAGE_MAX_PX:,} x {IMAGE_MAX_PX:,} pixels, "
            f"but the received image was {size[0]:,} x {size[1]:,} pixels.",
        )
    cv2 = detectors.opencv()
    image = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or size is None:
        raise _unknown("the image is truncated or corrupt")
    return Media("image", image=image)


def _wav(raw: bytes) -> Media:
    try:
        with wave.open(io.BytesIO(raw), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError, struct.error) as exc:
        raise _unknown(f"WAV: {exc}") from None
    if width not in (1, 2, 3, 4) or rate <= 0 or channels <= 0:
        raise _unknown(f"WAV with {width * 8}-bit samples at {rate} Hz")
    n = len(frames) // (width * channels)
    duration_ms = n * 1000.0 / rate
    if duration_ms > AUDIO_MAX_MS:
        raise ProtocolViolation(
            Codes.AUDIO_TOO_LONG,
            f"Your audio file was too long. The limit is {AUDIO_MAX_MS} milliseconds, "
            f"but the received file was {duration_ms:.0f} milliseconds.",
        )
    if n == 0:
        raise ProtocolViolation(
            Codes.NO_AUDIO_SIGNAL, "No audio signal could be inferred from the media: it holds no samples."
        )
    samples = _pcm(frames[: n * width * channels], width).reshape(n, channels)
    return Media("audio", audio=detectors.to_mono_16k(samples, rate))


def _pcm(frames: bytes, width: int) -> np.ndarray:
    out: np.ndarray
    if width == 1:  # WAV's 8-bit PCM is unsigned
        out = np.asarray(np.frombuffer(frames, dtype=np.uint8).astype(np.int16) - 128, dtype=np.int8)
    elif width == 3:
        b = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        out = np.where(value >= 1 << 23, value - (1 << 24), value) / float(1 << 23)
    else:
        out = np.frombuffer(frames, dtype="<i2" if width == 2 else "<i4")
    return out


def decode_frame(jpeg: bytes) -> np.ndarray:
    """One video frame as BGR, with the image limits and errors."""
    image = _image(jpeg).image
    assert image is not None
    return image


def _check_video_length(duration_ms: Optional[float]) -> None:
    if duration_ms is not None and duration_ms > VIDEO_MAX_MS:
        raise ProtocolViolation(
            Codes.VIDEO_TOO_LONG,
            f"Your video file was too long. The limit is {VIDEO_MAX_MS} milliseconds, but the received file "
            f"was {duration_ms:.0f} milliseconds. Send single frames as images instead.",
        )


def _avi(raw: bytes) -> Media:
    at = raw.find(b"avih", 12, 4096)
    if at < 0 or at + 28 > len(raw):
        raise _unknown("AVI without a main header")
    us_per_frame = int(struct.unpack_from("<I", raw, at + 8)[0])
    total_frames = int(struct.unpack_from("<I", raw, at + 24)[0])
    _check_video_length(us_per_frame * total_frames / 1000.0)
    frames = tuple(_avi_frames(raw))
    fps = _avi_stream_fps(raw) or (1e6 / us_per_frame if us_per_frame else 0.0)
    if fps <= 0 or not frames:
        raise _unknown("only Motion-JPEG AVI video is decoded by the emulator")
    _check_video_length(len(frames) * 1000.0 / fps)
    return Media("video", frames=frames, fps=fps)


def _avi_stream_fps(raw: bytes) -> Optional[float]:
    """The exact rate/scale of the video stream header (the main header rounds to whole microseconds)."""
    at = raw.find(b"strh", 12, 8192)
    if at < 0 or at + 40 > len(raw) or raw[at + 8 : at + 12] != b"vids":
        return None
    scale, rate = struct.unpack_from("<II", raw, at + 8 + 20)
    return rate / scale if scale else None


def _avi_frames(raw: bytes) -> Iterator[bytes]:
    """The JPEG payloads of the ``##dc`` / ``##db`` chunks of an AVI's ``movi`` list, in order."""
    movi = raw.find(b"movi")
    if movi < 0:
        return
    i, end = movi + 4, len(raw)
    while 0 < i + 8 <= end:
        chunk_id, size = raw[i : i + 4], int(struct.unpack_from("<I", raw, i + 4)[0])
        if chunk_id in (b"LIST", b"RIFF"):
            i += 12  # descend into "rec " lists
            continue
        if chunk_id == b"idx1":
            return
        body = raw[i + 8 : i + 8 + size]
        if chunk_id[2:] in (b"dc", b"db") and body.startswith(b"\xff\xd8"):
            yield body
        i += 8 + size + (size & 1)


def _mp4_duration_ms(raw: bytes) -> Optional[float]:
    at = raw.find(b"mvhd")
    if at < 0 or at + 36 > len(raw):
        return None
    if raw[at + 4] == 1:
        timescale, duration = struct.unpack_from(">IQ", raw, at + 24)
    else:
        timescale, duration = struct.unpack_from(">II", raw, at + 16)
    return None if timescale == 0 else int(duration) * 1000.0 / int(timescale)


def _facemesh(text: str) -> Media:
    def bad(why: str) -> ProtocolViolation:
        return ProtocolViolation(
            Codes.INVALID_STRUCTURE,
            f"Facemesh data {why}: expected a JSON list of up to {FACEMESH_MAX_FACES} faces, "
            f"each {FACEMESH_LANDMARKS} landmarks of [x, y, z].",
        )

    try:
        faces = json.loads(text)
    except (ValueError, RecursionError):
        raise bad("is not valid JSON") from None
    if not isinstance(faces, list):
        raise bad("is not a list")
    if len(faces) > FACEMESH_MAX_FACES:
        raise bad(f"has {len(faces)} faces")
    if not faces:
        return Media("facemesh", landmarks=np.zeros((0, FACEMESH_LANDMARKS, 3)))
    try:
        mesh = np.array(faces, dtype=np.float64)
    except (ValueError, TypeError):
        raise bad("has the wrong shape or non-numbers") from None
    if mesh.ndim != 3 or mesh.shape[1:] != (FACEMESH_LANDMARKS, 3):
        raise bad(f"has the shape {list(mesh.shape)}")
    if not np.isfinite(mesh).all():
        raise bad("holds non-finite numbers")
    return Media("facemesh", landmarks=mesh)
