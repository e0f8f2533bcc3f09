#!/usr/bin/env python3
"""Benchmarks 1 and 2: CPU per media-second, and bytes / API cost per visitor-minute, ours vs. Hume's pattern.

Both sides get the same media, in real time: a 1280x720 BGR camera frame (the synthetic face, pre-rendered
so rendering costs neither side) every 1 / fps seconds at the agent's default fps, and 16 kHz mono audio
of a visitor talking in chunks of the default ``microphone.chunk_ms``: the agent's synthetic speaker
(espeak-ng; each line followed by 2 s of a quiet room at -60 dBFS).

* ours: the agent's presence check (``PresenceDetector``: every 2nd frame, as in the default presence
  mode; it also finds the faces ``camera.crop`` keeps) and ``FramePipeline`` (rate limit, static skip,
  crop to the faces (``camera.crop = "faces"``, the default), resize to the default 640x480 box, JPEG)
  on a worker thread as the service runs them, ``voice_activity`` and the silence gate
  (``agent.visit.audio_gate``) on each chunk, and the v0 client (``V0Backend``, default models) with its
  results consumed. ``ours-frame`` is the same with ``camera.crop = "frame"`` (the whole frame).
* baseline: the pattern of Hume's streaming examples with the official SDK 0.13: each camera frame in full
  as PNG, written to a temp file and sent with ``send_file`` (``Config(face=StreamFace())``), one frame in
  flight (the newest camera frame goes when the reply came); audio written as WAV temp files and sent with
  ``send_file`` (prosody + burst), chunks buffered while a reply is outstanding. One socket per modality,
  like ours.

Each side runs in its own child process (its CPU is ``os.times()`` of that process, all threads); the
emulator runs in a third one behind a proxy that counts the bytes on the wire, so its decoding and face
detection count for neither side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

import _common

_common.ensure_venv()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from hume import AsyncHumeClient  # noqa: E402
from hume.expression_measurement.stream import Config, StreamFace, StreamModelPredictions  # noqa: E402

from agent import config as config_mod  # noqa: E402
from agent.capture.synthetic import SpeechSource, SyntheticCamera  # noqa: E402
from agent.hume import pricing  # noqa: E402
from agent.hume.v0.client import V0Backend  # noqa: E402
from agent.media.audio import AudioChunk, voice_activity, wav_bytes  # noqa: E402
from agent.media.frames import Frame  # noqa: E402
from agent.media.video import FramePipeline  # noqa: E402
from agent.visit.audio_gate import AudioGate  # noqa: E402
from agent.visit.presence import PresenceDetector  # noqa: E402

CAMERA_SIZE = (1280, 720)
DISTINCT_FRAMES = 16
NOISE_RMS = 33.0
"""A quiet room between the sentences: about -60 dBFS, a USB microphone's noise floor."""
DRAIN_S = 3.0
ROLES = ("ours", "ours-frame", "baseline")
"""The agent at its defaults (faces only on the wire), the agent sending whole frames, Hume's pattern."""


def defaults() -> config_mod.Config:
    return config_mod.from_dict({}, environ={})


def speech_pcm() -> np.ndarray:
    """A visitor talking: the agent's synthetic speaker (its lines, each followed by 2 s of quiet room)."""
    loop = asyncio.run(SpeechSource().speech_loop()).astype(np.float64)
    loop += np.random.default_rng(0).normal(0, NOISE_RMS, len(loop))
    pcm: np.ndarray = np.clip(np.rint(loop), -32768, 32767).astype(np.int16)
    return pcm


class Media:
    """The same camera frames and audio chunks for both sides, paced in real time."""

    def __init__(self, seconds: float) -> None:
        cfg = defaults()
        self.seconds = seconds
        self.fps = min(cfg.camera.fps, cfg.hume.fps_pred)
        self.chunk_ms = cfg.microphone.chunk_ms
        camera = SyntheticCamera(*CAMERA_SIZE, fps=self.fps)
        self.frames = [camera.render(i / self.fps) for i in range(DISTINCT_FRAMES)]
        speech = speech_pcm()
        n = 16 * self.chunk_ms
        reps = int(np.ceil((seconds * 16000 + n) / len(speech)))
        stream = np.tile(speech, reps).astype("<i2")
        self.chunks = [stream[i : i + n].tobytes() for i in range(0, int(seconds * 16000), n)]
        self.counts = {"frames": 0, "chunks": 0}

    async def frame_ticks(self, on_frame: Any) -> None:
        start = time.monotonic()
        for k in range(int(self.seconds * self.fps)):
            await asyncio.sleep(max(0.0, start + k / self.fps - time.monotonic()))
            self.counts["frames"] += 1
            await on_frame(Frame(self.frames[k % len(self.frames)], "bgr", time.time()))

    async def chunk_ticks(self, on_chunk: Any) -> None:
        start = time.monotonic()
        for k, chunk in enumerate(self.chunks):
            await asyncio.sleep(max(0.0, start + (k + 1) * self.chunk_ms / 1000 - time.monotonic()))
            self.counts["chunks"] += 1
            await on_chunk(chunk)


# --------------------------------------------------------------------------------------------------
# The two sides (each in its own process)


async def run_ours(url: str, media: Media, crop: str) -> Dict[str, Any]:
    cfg = config_mod.from_dict(
        {"hume": {"backend": "v0", "api_key": _common.API_KEY, "v0": {"url": url}}, "camera": {"crop": crop}},
        environ={},
    )
    pipeline = FramePipeline(cfg.camera, max_fps=min(cfg.camera.fps, cfg.hume.fps_pred))
    presence = PresenceDetector(min_face_px=cfg.hume.min_face_size, sent_width=cfg.camera.width)
    backend = V0Backend(cfg.hume)
    gate = AudioGate(cfg.microphone, spill_hangover=False)  # as the service runs it on v0
    found = {"face_hits": 0, "observations": 0}

    async def on_frame(frame: Frame) -> None:
        await asyncio.to_thread(presence.present, frame)
        encoded = await asyncio.to_thread(pipeline.process, frame, presence.last_faces)
        if encoded is not None:
            backend.send_frame(encoded.jpeg, encoded.captured_at, "bench")

    async def on_chunk(chunk: bytes) -> None:
        voice_activity(chunk)
        chunk_s = media.chunk_ms / 1000
        captured = AudioChunk(chunk, time.time() - chunk_s, time.monotonic() - chunk_s)
        for piece in gate.admit(captured, since_mono=float("-inf")):  # the whole bench is one allowed visit
            backend.send_audio(piece.pcm16, piece.captured_at, "bench")

    async def results() -> None:
        while True:
            obs = await backend.receive()
            found["observations"] += 1
            if obs.model == "face" and obs.measurements:
                found["face_hits"] += 1

    cpu0, t0 = _common.cpu_s(), time.monotonic()
    tasks = [asyncio.ensure_future(backend.run()), asyncio.ensure_future(results())]
    await asyncio.gather(media.frame_ticks(on_frame), media.chunk_ticks(on_chunk))
    await asyncio.sleep(DRAIN_S)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"cpu_s": _common.cpu_s() - cpu0, "wall_s": time.monotonic() - t0, **found, **pipeline.counters}


async def run_baseline(base_url: str, media: Media) -> Dict[str, Any]:
    found = {"face_hits": 0, "observations": 0, "sent": 0}
    newest: List[Optional[Frame]] = [None]
    audio: List[bytes] = []
    wake = {"video": asyncio.Event(), "audio": asyncio.Event()}
    done = asyncio.Event()

    async def on_frame(frame: Frame) -> None:
        newest[0] = frame
        wake["video"].set()

    async def on_chunk(chunk: bytes) -> None:
        audio.append(chunk)
        wake["audio"].set()

    async def send_temp(sock: Any, data: bytes, suffix: str, config: Any) -> Any:
        with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as fh:
            fh.write(data)
        try:
            return await sock.send_file(fh.name, config=config)
        finally:
            os.unlink(fh.name)

    async def video(sock: Any) -> None:
        while not done.is_set():
            await wake["video"].wait()
            wake["video"].clear()
            frame, newest[0] = newest[0], None
            if frame is None:
                continue
            _, png = cv2.imencode(".png", frame.image)
            reply = await send_temp(sock, png.tobytes(), ".png", Config(face=StreamFace()))
            found["sent"] += 1
            found["observations"] += 1
            if isinstance(reply, StreamModelPredictions) and reply.face and reply.face.predictions:
                found["face_hits"] += 1

    async def voice(sock: Any) -> None:
        while not done.is_set():
            await wake["audio"].wait()
            wake["audio"].clear()
            if not audio:
                continue
            pcm = b"".join(audio[:5])  # the API takes at most 5 s per payload
            del audio[:5]
            await send_temp(sock, wav_bytes(pcm), ".wav", Config(prosody={}, burst={}))
            found["observations"] += 1

    client = AsyncHumeClient(api_key=_common.API_KEY, base_url=base_url)
    cpu0, t0 = _common.cpu_s(), time.monotonic()
    stream = client.expression_measurement.stream
    async with stream.connect() as video_sock, stream.connect() as audio_sock:
        senders = [asyncio.ensure_future(video(video_sock)), asyncio.ensure_future(voice(audio_sock))]
        await asyncio.gather(media.frame_ticks(on_frame), media.chunk_ticks(on_chunk))
        done.set()
        for event in wake.values():
            event.set()
        await asyncio.wait(senders, timeout=DRAIN_S)
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
    return {"cpu_s": _common.cpu_s() - cpu0, "wall_s": time.monotonic() - t0, **found}


def child(role: str, target: str, seconds: float) -> None:
    media = Media(seconds)
    if role == "baseline":
        result = asyncio.run(run_baseline(target, media))
    else:
        result = asyncio.run(run_ours(target, media, crop="frame" if role == "ours-frame" else "faces"))
    result.update(media.counts, media_s=seconds)
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------------
# The driver


def run_side(role: str, host: _common.EmulatorHost, seconds: float) -> Dict[str, Any]:
    host.ask("reset")
    target = host.base_url if role == "baseline" else host.url
    out = subprocess.run(
        [sys.executable, __file__, "--role", role, "--target", target, "--seconds", str(seconds)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=seconds + 120,
    ).stdout
    result: Dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result.update(host.ask("stats"))
    return result


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--role", choices=ROLES, help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=20.0, help="media seconds per side (default: 20)")
    args = p.parse_args()
    if args.role:
        child(args.role, args.target, args.seconds)
        return
    seconds = 3.0 if args.quick else args.seconds
    with _common.EmulatorHost() as host:
        sides = {role: run_side(role, host, seconds) for role in ROLES}
    report(args, sides)


def report(args: Any, sides: Dict[str, Dict[str, Any]]) -> None:
    cfg = defaults()
    per: Dict[str, Dict[str, float]] = {}
    rows = []
    for role, r in sides.items():
        media_min = r["media_s"] / 60
        cpu_per_s = r["cpu_s"] / r["media_s"]
        wire = (r["up"] + r["down"]) / media_min
        video = r["data_video"] / media_min
        audio = (r["data_all"] - r["data_video"]) / media_min
        images = r["face_requests"] / media_min
        audio_min = r["v0_audio_s"] / 60 / media_min  # seconds of audio the emulator received
        usd = images * pricing.IMAGE_USD + audio_min * pricing.AUDIO_USD_PER_MIN
        per[role] = {"cpu": cpu_per_s, "wire": wire, "video": video, "usd": usd}
        rows.append(
            [
                role,
                f"{r['cpu_s']:.2f}",
                f"{r['media_s']:.0f}",
                f"{cpu_per_s:.4f}",
                f"{100 * cpu_per_s:.2f} %",
                r["frames"],
                r["face_requests"],
                f"{r['face_hits']}/{r['face_requests']}",
                f"{r['up'] / media_min / 1e6:.3f}",
                f"{r['down'] / media_min / 1e6:.3f}",
                f"{video / 1e6:.3f}",
                f"{audio / 1e6:.3f}",
                f"{images:.0f}",
                f"${usd:.4f}",
            ]
        )
    headers = [
        "side", "CPU s", "media s", "CPU s / media s", "of one core", "frames offered", "frames sent",
        "face found / sent", "MB up / min", "MB down / min", "base64 video MB / min", "base64 audio MB / min",
        "images / min", "USD / visitor-min",
    ]  # fmt: skip
    ours, whole, base = per["ours"], per["ours-frame"], per["baseline"]
    cpu_ratio = ours["cpu"] / base["cpu"]
    wire_ratio = ours["wire"] / base["wire"]
    found = {role: (r["face_hits"], r["face_requests"]) for role, r in sides.items()}
    details = "\n".join(
        [
            _common.markdown(headers, rows),
            "",
            f"Defaults: camera {cfg.camera.width}x{cfg.camera.height} box, {cfg.camera.fps:g} fps, JPEG "
            f"q{cfg.camera.jpeg_quality}; models {', '.join(cfg.hume.models)}; audio 16 kHz mono in "
            f"{cfg.microphone.chunk_ms} ms chunks. Camera frames {CAMERA_SIZE[0]}x{CAMERA_SIZE[1]} BGR.",
            "CPU: os.times() of each side's process from its first frame to 3 s after its last (replies "
            "drained); the emulator's CPU is in another process and counts for neither.",
            "Bytes: everything both ways through a TCP proxy in front of the emulator (HTTP upgrade and "
            "WebSocket framing included; the SDK's websockets negotiates permessage-deflate, our aiohttp "
            "client does not), per minute of media (= visitor-minute while streaming). The base64 columns "
            "are the payloads' data fields as the emulator decoded them: both sides hear the same audio "
            "(WAV, 16 kHz 16-bit); ours sends only what its silence gate passes. Audio cost: the seconds "
            "the emulator received.",
            f"Cost: Hume's newer rate set (agent/hume/pricing.py, 'reconciled, May 2026'): "
            f"${pricing.IMAGE_USD}/image for each frame sent, ${pricing.AUDIO_USD_PER_MIN}/min of audio "
            "(older set: one third of each). Billing is per image, not per byte: the same frame rate "
            "costs the same.",
        ]
    )
    headline = [
        _common.row(
            "1 media CPU", "CPU s per media-second",
            (f"{ours['cpu']:.4f}", f"{base['cpu']:.4f}", f"{cpu_ratio:.3f}x"),
            "<= 0.10x baseline", cpu_ratio <= 0.10,
        ),
        _common.row(
            "1 media CPU", "share of one core at defaults",
            (f"{100 * ours['cpu']:.2f} %", f"{100 * base['cpu']:.2f} %", ""),
            "<= 2 % of one core", ours["cpu"] <= 0.02,
        ),
        _common.row(
            "2 wire", "bytes per visitor-minute",
            (f"{ours['wire'] / 1e6:.3f} MB", f"{base['wire'] / 1e6:.2f} MB", f"{wire_ratio:.3f}x"),
            "<= 0.10x baseline", wire_ratio <= 0.10,
        ),
        _common.row(
            "2 wire", "bytes per visitor-minute, camera.crop = frame",
            (f"{whole['wire'] / 1e6:.3f} MB", f"{base['wire'] / 1e6:.2f} MB",
             f"{whole['wire'] / base['wire']:.3f}x"),
            "(no goal)", None,
        ),
        _common.row(
            "2 wire", "base64 video (face) payload bytes",
            (f"{ours['video'] / 1e6:.3f} MB", f"{base['video'] / 1e6:.2f} MB",
             f"{ours['video'] / base['video']:.3f}x"),
            "(no goal)", None,
        ),
        _common.row(
            "2 wire", "face found in sent frames",
            (f"{found['ours'][0]}/{found['ours'][1]}", f"{found['baseline'][0]}/{found['baseline'][1]}", ""),
            "every sent frame", found["ours"][0] == found["ours"][1] > 0,
        ),
        _common.row(
            "2 wire", "face found in sent frames, camera.crop = frame",
            (f"{found['ours-frame'][0]}/{found['ours-frame'][1]}", "", ""),
            "(no goal)", None,
        ),
        _common.row(
            "2 wire", "API cost per visitor-minute",
            (f"${ours['usd']:.4f}", f"${base['usd']:.4f}", f"{ours['usd'] / base['usd']:.2f}x"),
            "(no goal)", None,
        ),
    ]  # fmt: skip
    _common.finish(args, "Benchmarks 1-2: media pipeline CPU, bytes and API cost", details, headline)


if __name__ == "__main__":
    main()
