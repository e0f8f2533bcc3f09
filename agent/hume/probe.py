"""``hume-edge probe``: a short, explicitly billed check of the real Hume link, before a fleet goes live.

We have never spoken to the real v1 API (limited release); the emulator follows the published contract. The
probe opens the configured backend's sessions with the kiosk's key, sends a few seconds of the media this
package ships (``probe_media/``: one face photo, NASA's public-domain astronaut, and a short espeak-ng line;
nothing is captured and nothing is written but the optional transcript), and prints what came back: the
handshake, latency, message types and their fields, labels. Anything our client does not know (a message
type, a field, a close code, a response header) is a **protocol difference**, listed by name.

Billed: it refuses to connect without ``--yes`` and prints the cost ceiling first, from
:mod:`agent.hume.pricing` (v1: every session that took media is billed at least 10 s, so a probe of at
most 10 s of media costs exactly its sessions' minimum). ``--transcript FILE`` writes every message both
ways as JSON, redacted (no key, no media: binary frames and base64 data become byte counts; scores kept),
for a bug report.

Exit status: 0 the link works and speaks the contract we know; 3 it works, with protocol differences
(listed); 1 the link failed (unreachable, refused, no session, no result); 69 the key was refused (HTTP
401/403); 78 bad config; 2 not run (``--yes`` missing, bad options).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import io
import json
import sys
import time
import wave
from importlib import resources
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, TextIO, Tuple

import aiohttp

from agent.config import HumeConfig
from agent.errors import EX_CONFIG, EX_UNAVAILABLE, ConfigError
from agent.hume.probe_report import (
    VIDEO_FPS,
    EndpointReport,
    cost_ceiling,
    render,
    scores_text,
    transcript,
)
from agent.hume.types import AUDIO_MODELS
from agent.hume.v0 import protocol as v0
from agent.hume.v1 import protocol as v1
from agent.hume.v1.handshake import ws_base
from agent.untrusted import clip

EX_DIFFERENCES = 3
EX_NOT_RUN = 2
SECONDS_DEFAULT = 3.0
SECONDS_MAX = 10.0
"""At most the v1 billing minimum: a longer probe would cost more and tell nothing more."""
TIMEOUT_S = 15.0
"""For each step (handshake, first reply, the session's end)."""


def media_path(name: str) -> Any:
    return resources.files("agent.hume").joinpath("probe_media").joinpath(name)  # one part a call: 3.9


def face_jpeg() -> bytes:
    """The bundled face (240 x 240 JPEG, 10 KB; OpenCV's Haar cascade finds a 72 px face in it)."""
    data: bytes = media_path("face.jpg").read_bytes()
    return data


def speech_pcm() -> bytes:
    """The bundled line of speech as 16 kHz mono s16le (2.9 s)."""
    with wave.open(io.BytesIO(media_path("speech.wav").read_bytes())) as w:
        frames: bytes = w.readframes(w.getnframes())
    return frames


# --------------------------------------------------------------------------------------------------
# What one endpoint said


# --------------------------------------------------------------------------------------------------
# v1


class _V1Session:
    def __init__(self, report: EndpointReport, t0: float) -> None:
        self.report = report
        self.t0 = t0
        self.updated = asyncio.Event()
        self.closed = asyncio.Event()
        self.sent_at: Deque[float] = collections.deque()

    def on_text(self, text: str) -> None:
        r = self.report
        now = time.monotonic()
        try:
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            r.differ("unreadable", clip(text, 40))
            r.record(self.t0, "in", {"unreadable": clip(text, 200)})
            return
        r.record(self.t0, "in", {"message": obj})
        kind = str(obj.get("type"))
        r.types[kind] = r.types.get(kind, 0) + 1
        r.fields.setdefault(kind, sorted(str(k) for k in obj)[:40])
        unknown = v1.unknown_type(obj, r.name)
        if unknown is not None:
            r.differ("type", unknown)
            return
        for field in v1.unknown_fields(obj, r.name):
            r.differ("field", field)
        try:
            parsed = v1.parse_server_obj(obj, r.name)
        except (ValueError, TypeError, KeyError) as exc:
            r.differ("unreadable", f"{kind}: {clip(exc, 80)}")
            return
        if isinstance(parsed, v1.SessionUpdated):
            self.updated.set()
        elif isinstance(parsed, v1.SessionClosed):
            self.closed.set()
        elif isinstance(parsed, v1.ErrorMessage) and parsed.code in v1.VIDEO_FRAME_ERRORS and self.sent_at:
            self.sent_at.popleft()
        if isinstance(parsed, v1.ErrorMessage) and parsed.code not in vars(v1.Codes).values():
            r.differ("error_code", parsed.code)
        if isinstance(parsed, v1.VideoResult):
            r.results += 1
            if self.sent_at:
                r.latencies_s.append(now - self.sent_at.popleft())
            for face in obj.get("faces") or []:
                if isinstance(face, dict) and not r.labels:
                    r.labels = scores_text(face.get("expressions"))
        elif isinstance(parsed, v1.AudioResult):
            r.results += 1
            end_frame = max(0, parsed.audio_end_ms // v1.AUDIO_FRAME_MS - 1)
            if end_frame < len(self.sent_at):
                r.latencies_s.append(max(0.0, now - self.sent_at[end_frame]))
            r.labels = scores_text(obj.get("expressions")) + scores_text(obj.get("voice_attributes"))[:2]


async def _probe_v1_endpoint(
    http: aiohttp.ClientSession, cfg: HumeConfig, endpoint: str, seconds: float
) -> EndpointReport:
    report = EndpointReport(endpoint)
    url = ws_base(cfg.v1.url) + (v1.AUDIO_PATH if endpoint == "audio" else v1.VIDEO_PATH)
    t0 = time.monotonic()
    try:
        ws = await asyncio.wait_for(
            http.ws_connect(
                url, headers={v1.API_KEY_HEADER: cfg.api_key}, max_msg_size=1 << 20, heartbeat=20
            ),
            TIMEOUT_S,
        )
    except aiohttp.WSServerHandshakeError as exc:
        report.status = exc.status
        report.headers_seen(exc.headers)
        report.refused_key = exc.status in (401, 403)
        report.error = f"handshake refused with HTTP {exc.status}"
        return report
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        report.error = f"cannot connect: {clip(exc or type(exc).__name__, 120)}"
        return report
    report.handshake_s = round(time.monotonic() - t0, 4)
    response = getattr(ws, "_response", None)
    report.status = getattr(response, "status", 101)
    report.headers_seen(getattr(response, "headers", None))
    session = _V1Session(report, t0)

    async def read() -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                session.on_text(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                report.differ("binary_message", len(msg.data))

    reader = asyncio.ensure_future(read())
    try:
        update = (
            v1.audio_session_update(cfg.v1.measurement_timer_ms)
            if endpoint == "audio"
            else v1.video_session_update(cfg.v1.face_threshold, cfg.min_face_size)
        )
        await ws.send_str(update)
        report.record(t0, "out", {"message": json.loads(update)})
        await asyncio.wait_for(session.updated.wait(), TIMEOUT_S)
        for chunk, pause_s in _v1_media(endpoint, seconds):
            await ws.send_bytes(chunk)
            session.sent_at.append(time.monotonic())
            report.sent += 1
            report.record(t0, "out", {"binary_bytes": len(chunk)})
            await asyncio.sleep(pause_s)  # real time: the contract's send rate
        await ws.send_str(v1.SESSION_CLOSE)
        report.record(t0, "out", {"message": {"type": "session.close"}})
        await asyncio.wait_for(session.closed.wait(), TIMEOUT_S)
        await asyncio.wait_for(reader, TIMEOUT_S)
    except asyncio.TimeoutError:
        report.error = f"no reply within {TIMEOUT_S:g} s (last: {_last_type(report)})"
    except (aiohttp.ClientError, ConnectionError) as exc:
        report.error = f"connection failed: {clip(exc or type(exc).__name__, 120)}"
    finally:
        reader.cancel()
        await ws.close()
    report.close_code = ws.close_code
    if ws.close_code is not None and ws.close_code not in v1.KNOWN_CLOSE_CODES:
        report.differ("close_code", ws.close_code)
    if report.error is None and not report.results:
        report.error = "the session ended without a measurement.result"
    return report


def _v1_media(endpoint: str, seconds: float) -> List[Tuple[bytes, float]]:
    """(message, pause after it): 100 ms audio frames in real time, or JPEG frames at VIDEO_FPS."""
    if endpoint == "video":
        jpeg = face_jpeg()
        return [(jpeg, 1.0 / VIDEO_FPS)] * max(1, round(seconds * VIDEO_FPS))
    pcm = speech_pcm()
    step = v1.AUDIO_FRAME_MS * 32
    total = min(len(pcm), int(seconds * 32000) // 2 * 2)
    return [(pcm[i : min(total, i + step)], v1.AUDIO_FRAME_MS / 1000) for i in range(0, total, step)]


def _last_type(report: EndpointReport) -> str:
    for event in reversed(report.events):
        if event["dir"] == "in" and isinstance(event.get("message"), dict):
            return str(event["message"].get("type"))
    return "nothing"


# --------------------------------------------------------------------------------------------------
# v0 (legacy): one socket, one face payload and one audio payload


async def _probe_v0(http: aiohttp.ClientSession, cfg: HumeConfig, seconds: float) -> List[EndpointReport]:
    report = EndpointReport("v0")
    t0 = time.monotonic()
    try:
        ws = await asyncio.wait_for(
            http.ws_connect(cfg.v0.url, headers={v0.API_KEY_HEADER: cfg.api_key}, heartbeat=20), TIMEOUT_S
        )
    except aiohttp.WSServerHandshakeError as exc:
        report.status = exc.status
        report.headers_seen(exc.headers)
        report.refused_key = exc.status in (401, 403)
        report.error = f"handshake refused with HTTP {exc.status}"
        return [report]
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        report.error = f"cannot connect: {clip(exc or type(exc).__name__, 120)}"
        return [report]
    report.handshake_s = round(time.monotonic() - t0, 4)
    response = getattr(ws, "_response", None)
    report.status = getattr(response, "status", 101)
    report.headers_seen(getattr(response, "headers", None))
    pcm = speech_pcm()[: int(min(seconds, 5.0) * 32000) // 2 * 2]
    payloads: List[Tuple[str, Dict[str, Dict[str, Any]], bytes]] = []
    if "face" in cfg.models:
        payloads.append(("probe-face", {"face": {}}, face_jpeg()))
    audio_models: Dict[str, Dict[str, Any]] = {m: {} for m in cfg.models if m in AUDIO_MODELS}
    if audio_models:
        payloads.append(("probe-audio", audio_models, _wav(pcm)))
    try:
        for payload_id, models, media in payloads:
            text = json.dumps(
                {"models": models, "data": base64.b64encode(media).decode(), "payload_id": payload_id}
            )
            sent_at = time.monotonic()
            await ws.send_str(text)
            report.sent += 1
            shown = {"models": models, "payload_id": payload_id, "data": f"<{len(media)} bytes>"}
            report.record(t0, "out", {"message": shown})
            msg = await asyncio.wait_for(ws.receive(), TIMEOUT_S)
            if msg.type != aiohttp.WSMsgType.TEXT:
                report.error = f"the socket ended instead of replying ({msg.type.name})"
                break
            report.latencies_s.append(time.monotonic() - sent_at)
            _v0_reply(report, t0, msg.data)
    except asyncio.TimeoutError:
        report.error = f"no reply within {TIMEOUT_S:g} s"
    finally:
        await ws.close()
    report.close_code = ws.close_code
    if ws.close_code is not None and ws.close_code not in v0.KNOWN_CLOSE_CODES:
        report.differ("close_code", ws.close_code)
    return [report]


def _wav(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm)
    return out.getvalue()


def _v0_reply(report: EndpointReport, t0: float, text: str) -> None:
    try:
        obj = v0.decode_reply(text)
        reply = v0.parse_reply_obj(obj)
    except v0.ProtocolViolation as exc:
        report.differ("unreadable", clip(exc.message, 60))
        report.record(t0, "in", {"unreadable": clip(text, 200)})
        return
    report.record(t0, "in", {"message": obj})
    kind = "error" if "error" in obj else "warning" if "warning" in obj else "predictions"
    report.types[kind] = report.types.get(kind, 0) + 1
    report.fields.setdefault(kind, sorted(str(k) for k in obj)[:40])
    for field in v0.unknown_reply_fields(obj):
        report.differ("field", field)
    if isinstance(reply, v0.ErrorMessage):
        report.error = f"error reply {clip(reply.code, 20)}: {clip(reply.error, 120)}"
        return
    report.results += 1
    for model in ("face", "prosody", "burst"):
        preds = (obj.get(model) or {}).get("predictions") if isinstance(obj.get(model), dict) else None
        if preds and isinstance(preds[0], dict):
            top = sorted(preds[0].get("emotions") or [], key=lambda e: -float(e.get("score", 0)))
            report.labels.extend(f"{model}: {s}" for s in scores_text(top)[:2])


# --------------------------------------------------------------------------------------------------
# The command


async def probe(cfg: HumeConfig, seconds: float) -> List[EndpointReport]:
    """Run the probe against ``cfg``'s backend; one report per endpoint (v1) or the socket (v0)."""
    async with aiohttp.ClientSession() as http:
        if cfg.backend == "v0":
            return await _probe_v0(http, cfg, seconds)
        endpoints = (["audio"] if any(m in cfg.models for m in AUDIO_MODELS) else []) + (
            ["video"] if "face" in cfg.models else []
        )
        reports = await asyncio.gather(*(_probe_v1_endpoint(http, cfg, e, seconds) for e in endpoints))
        return list(reports)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``hume-edge probe`` options."""
    parser.add_argument(
        "--config", type=Path, metavar="PATH", help="the kiosk's TOML config (default: defaults)"
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="really connect: the probe is billed by Hume (the ceiling is printed first)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=SECONDS_DEFAULT,
        metavar="S",
        help=f"media to send per session, 0.5-{SECONDS_MAX:g} (default: %(default)s)",
    )
    parser.add_argument(
        "--transcript",
        type=Path,
        metavar="FILE",
        help="write every message both ways as JSON, redacted (no key, no media; scores kept)",
    )


def run_from_args(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """``hume-edge probe``: see the module doc for the exit status."""
    from agent import config as config_mod  # noqa: PLC0415 - the config package is the heaviest import here

    stream = out or sys.stdout
    if not 0.5 <= args.seconds <= SECONDS_MAX:
        print(
            f"hume-edge probe: --seconds {args.seconds:g}: must be between 0.5 and {SECONDS_MAX:g}",
            file=sys.stderr,
        )
        return EX_NOT_RUN
    try:
        full = config_mod.load(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_CONFIG
    # What run refuses about the Hume link, the probe refuses too (no key, a key that would travel in
    # clear or in the URL); test media and the broker are not its business: it sends its own media.
    problems = [p for p in config_mod.run_problems(full) if p.startswith("hume.")]
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return EX_CONFIG
    cfg = full.hume
    usd, why = cost_ceiling(cfg, args.seconds)
    url = config_mod.redact_url(cfg.url)
    print(f"hume-edge probe: {cfg.backend} at {url}, models {', '.join(cfg.models)}", file=stream)
    print(f"cost ceiling: ${usd:.4f} ({why})", file=stream)
    if not args.yes:
        print("not run: this is billed by Hume; add --yes to connect", file=stream)
        return EX_NOT_RUN
    reports = asyncio.run(probe(cfg, args.seconds))
    for line in render(cfg, reports):
        print(line, file=stream)
    if args.transcript is not None:
        args.transcript.write_text(transcript(cfg, reports, usd), encoding="utf-8")
        print(f"transcript: {args.transcript} (redacted: no key, no media)", file=stream)
    if any(r.refused_key for r in reports):
        return EX_UNAVAILABLE
    if any(r.error for r in reports):
        return 1
    return EX_DIFFERENCES if any(r.differences for r in reports) else 0
