#!/usr/bin/env python3
"""Benchmark 8: cost per kiosk-day, the agent at defaults (v1 and v0) against continuous streaming.

What a kiosk owner pays Hume is decided by *when* media goes up: Hume bills media-seconds (v1: each
audio second, 1/3 s per frame, at least 10 s per session; v0: audio per second, each frame as an image),
not bytes. So this plays a scripted stretch of a real kiosk in real time (about four minutes) and
scales it to a day.

Measured, in one run, every side against its own emulator (v0 and v1 on one port) behind a TCP proxy
that counts the bytes on the wire, all sides on the same scene at the same moments (a shared monotonic
start): the agent's real pipeline (``run_agent`` with its presence check, sessions, silence gate and
backend) fed by a scripted camera and microphone, for v1 and v0 (and v1 with ``silence_gate = false``:
the other audio policy), and the naive pattern of Hume's examples at the same frame rate: every camera
frame and every 100 ms of audio, all the time (v1: the official SDK's realtime sockets, JPEG as the agent
encodes it; v0: ``media.py``'s baseline, the SDK's ``send_file`` with PNG and WAV). The script is an
empty lead-in, then one *unit* of visitors: two passers-by glancing 1.5 s and 3 s, a quiet visitor of
20 s, a group of two for 45 s who take turns to speak, and a visitor of 2 minutes who speaks now and
then, is silent for long stretches and speaks for 10 s with the face turned away. Between episodes the
kiosk is empty for 10-20 s (more than ``session.grace_s``, so each visit ends on its own).

Billed media-seconds are read from the emulators: v1 from each ``session.closed`` (``received`` audio
ms and frames, with the 10 s minimum per session that took media), v0 from the payloads (images with
the face model, seconds of WAV audio). Visitor-seconds missed are read from the results that came back
to the agent: time of a visit in which the visitor was measurable (face in view, or speaking) and no
frame of it (a frame stands for the time until the camera's next one) and no audio of it was
measured. RSS is sampled once a second in each agent.

Computed: the day. ``DAY_H`` = 12 opening hours; at occupancy p (share of the day with someone in
front of the kiosk) the day holds ``p * day / visitor-seconds per unit`` units, the rest is empty
kiosk. Agent sides: units x what one unit cost + empty seconds x the lead-in's rate (nothing is sent to
an empty kiosk). Naive sides stream all day, so their bills scale with the hours (their bytes still
follow the scene: an empty wall compresses better). 10 % is computed by the same formula, not
interpolated. Prices: ``agent/hume/pricing.py``, Hume's newer published set (reconciled from
hume.ai/pricing, May 2026); v1's own prices are not published, so its media-seconds are priced at the
same table's per-minute rates (audio only $0.0639/min; video $0.045/min, the older video-only rate x3,
as the newer set is exactly 3x the older and lists no video-only rate).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncGenerator, Callable, Dict, List, Optional, Sequence, Tuple

import _common
import _day

_common.ensure_venv()

import numpy as np  # noqa: E402

from agent import config as config_mod  # noqa: E402
from agent import service  # noqa: E402
from agent.capture.camera import FrameSource  # noqa: E402
from agent.capture.microphone import AudioSource  # noqa: E402
from agent.capture.synthetic import SceneStep, SpeechSource, SyntheticCamera  # noqa: E402
from agent.dev.localbroker import LocalBroker  # noqa: E402
from agent.hub import Agent  # noqa: E402
from agent.hume import pricing  # noqa: E402
from agent.hume.backend import Backend  # noqa: E402
from agent.hume.types import Observation  # noqa: E402
from agent.media.audio import AUDIO_RATE, AudioChunk  # noqa: E402
from agent.media.frames import Frame  # noqa: E402
from hume_emulator.detectors import MERGE_GAP_S, SILENCE_FLOOR_RMS  # noqa: E402
from tests.support.recorder import Recorder  # noqa: E402

DAY_H = 12.0
"""A kiosk-day: the opening hours of a shop or museum."""
OCCUPANCIES = (0.05, 0.10, 0.20)
COST_GOAL = 0.15
"""Goal: the agent's bill at 10 % occupancy at most this share of the naive pattern's."""
STARTUP_S = 10.0
"""Children import, connect and warm up before the shared start."""
QUICK_STARTUP_S = 5.0
"""The same for ``--quick`` (only that the script runs is checked: a child late to the start joins the
scene late)."""
STEP_S = 0.05
NOISE_RMS = 33.0
"""The quiet room: about -60 dBFS, a USB microphone's noise floor."""
SIDES = ("agent-v1", "agent-v0", "agent-v1-nogate", "naive-v1", "naive-v0")
QUICK_SIDES = ("agent-v1", "agent-v0", "naive-v1", "naive-v0")


# --------------------------------------------------------------------------------------------------
# The script


@dataclasses.dataclass(frozen=True)
class Episode:
    """Someone in front of the kiosk; times in seconds from the episode's start."""

    kind: str
    """"glance", "visit" or "group"."""
    start_s: float
    duration_s: float
    faces: Tuple[Tuple[float, float, str], ...]
    """(from, to, who): who is "a", "b" or "ab" (a group); no face outside these (turned away)."""
    speech: Tuple[Tuple[float, float], ...] = ()

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclasses.dataclass(frozen=True)
class Script:
    lead_s: float
    episodes: Tuple[Episode, ...]
    total_s: float

    @property
    def unit_s(self) -> float:
        """The unit's window: from the end of the lead-in to the end of the script."""
        return self.total_s - self.lead_s

    @property
    def visitor_s(self) -> float:
        return sum(e.duration_s for e in self.episodes)

    def faces_at(self, t: float) -> str:
        for e in self.episodes:
            if e.start_s <= t < e.end_s:
                for a, b, who in e.faces:
                    if a <= t - e.start_s < b:
                        return who
        return ""

    def speech_at(self, t: float) -> Optional[float]:
        """Seconds into the speech track at ``t`` if someone speaks then, else None."""
        spoken = 0.0
        for e in self.episodes:
            for a, b in e.speech:
                if e.start_s + a <= t < e.start_s + b:
                    return spoken + t - e.start_s - a
                spoken += b - a
        return None


def make_script(quick: bool) -> Script:
    if quick:  # one of each kind of moment, 21 s: a glance, a visit with speech that ends on its own
        episodes = [
            (2.0, Episode("glance", 0, 2.0, ((0, 2.0, "a"),))),
            (7.0, Episode("visit", 0, 8.0, ((0, 8.0, "a"),), ((2.0, 5.0),))),
        ]
        lead = 2.0
    else:
        episodes = [
            (10.0, Episode("glance", 0, 1.5, ((0, 1.5, "a"),))),
            (10.0, Episode("glance", 0, 3.0, ((0, 3.0, "b"),))),
            (10.0, Episode("visit", 0, 20.0, ((0, 20.0, "b"),))),
            (
                10.0,
                Episode(
                    "group",
                    0,
                    45.0,
                    ((0, 45.0, "ab"),),
                    ((5.0, 10.0), (14.0, 18.0), (25.0, 31.0), (38.0, 41.0)),
                ),
            ),
            (
                20.0,
                Episode(
                    "visit",
                    0,
                    120.0,
                    ((0, 60.0, "a"), (72.0, 120.0, "a")),  # 60-72 s: turned away, still talking
                    ((6.0, 14.0), (30.0, 36.0), (60.0, 70.0), (95.0, 103.0)),
                ),
            ),
        ]
        lead = 15.0
    placed = []
    t = lead
    for gap, e in episodes:
        placed.append(dataclasses.replace(e, start_s=t))
        t += e.duration_s + gap
    return Script(lead, tuple(placed), t)


async def speech_track() -> np.ndarray:
    """The synthetic speaker's lines (espeak-ng, 16 kHz), with short pauses between them."""
    track: np.ndarray = await SpeechSource(pause_s=0.3).speech_loop()
    return track


class ScriptCamera(FrameSource):
    """The script's faces on the synthetic camera's wall: nobody, visitor a, visitor b, or both."""

    def __init__(self, script: Script, t0: float, fps: float) -> None:
        self.script = script
        self.t0 = t0
        forever = 10.0**9
        self._cams = {
            who: SyntheticCamera(640, 480, fps, scene=[SceneStep(forever, None if who == "" else who)])
            for who in ("", "a", "b")
        }
        self._wall = self._cams[""].render(0.0)
        self.captured: List[float] = []
        """Script times of the frames delivered (a loaded machine delivers fewer than fps)."""
        super().__init__(fps)

    def describe(self) -> str:
        return "scripted kiosk camera"

    def render(self, t: float) -> np.ndarray:
        who = self.script.faces_at(t)
        # The synthetic head sways with a 4.8 s period; a person's movements do not repeat, and frames
        # sampled in step with a period would look static to the agent's static-frame skip.
        t = t + 2.1 * np.sin(0.37 * t) + 1.3 * np.sin(0.61 * t)
        if len(who) < 2:
            return self._cams[who].render(t)
        image = self._cams["a"].render(t)
        other = self._cams["b"].render(t)
        mask = (other != self._wall).any(axis=2)
        image[mask] = other[mask]
        return image

    def _open(self) -> None:
        """Nothing to open."""

    def _read(self) -> Frame:
        t = time.monotonic() - self.t0
        self.captured.append(round(t, 3))
        return Frame(self.render(t), "bgr", time.time())

    def _close(self) -> None:
        """Nothing to release."""


class ScriptMicrophone(AudioSource):
    """The quiet room, with the script's speech where someone speaks; chunk k is script [k, k+1) chunks."""

    def __init__(self, script: Script, t0: float, chunk_ms: int, track: np.ndarray) -> None:
        self.script = script
        self.t0 = t0
        self.track = track
        super().__init__(chunk_ms)

    def describe(self) -> str:
        return "scripted kiosk microphone"

    def chunk(self, k: int) -> np.ndarray:
        n = AUDIO_RATE * self.chunk_ms // 1000
        block = np.random.default_rng(k).normal(0, NOISE_RMS, n)
        t_first = k * self.chunk_ms / 1000
        for i in range(0, n, AUDIO_RATE // 100):  # decided per 10 ms
            spoken = self.script.speech_at(t_first + i / AUDIO_RATE)
            if spoken is not None:
                at = int(spoken * AUDIO_RATE) % len(self.track)
                piece = np.take(self.track, range(at, at + AUDIO_RATE // 100), mode="wrap")
                block[i : i + len(piece)] += piece[: n - i]
        out: np.ndarray = np.clip(np.rint(block), -32768, 32767).astype(np.int16)
        return out

    async def chunks(self) -> AsyncGenerator[AudioChunk, None]:
        k = max(0, int((time.monotonic() - self.t0) * 1000 // self.chunk_ms))
        wall0 = time.time() - (time.monotonic() - self.t0)
        while True:
            await asyncio.sleep(max(0.0, self.t0 + (k + 1) * self.chunk_ms / 1000 - time.monotonic()))
            self.chunks_sent += 1
            at_s = k * self.chunk_ms / 1000
            yield AudioChunk(self.chunk(k).astype("<i2").tobytes(), wall0 + at_s, self.t0 + at_s)
            k += 1


# --------------------------------------------------------------------------------------------------
# The sides (each in its own process)


async def run_agent_side(role: str, args: argparse.Namespace, script: Script, work: Path) -> Dict[str, Any]:
    host, port = args.broker.rsplit(":", 1)
    hume: Dict[str, Any] = {"api_key": _common.API_KEY}
    if role.startswith("agent-v1"):
        hume.update(backend="v1", v1={"url": args.target})
    else:
        hume.update(backend="v0", v0={"url": "ws" + args.target[4:] + "/v0/stream/models"})
    cfg = config_mod.from_dict(
        {
            "device_id": role,
            "hume": hume,
            "mqtt": {"host": host, "port": int(port)},
            "outbox": {"path": str(work / f"{role}.sqlite")},
            "microphone": {"silence_gate": role != "agent-v1-nogate"},
        },
        environ={},
    )
    made: List[Recorder] = []
    trace: List[Tuple[str, float, float]] = []
    """(what, script time it happened, capture time): frames and audio handed to the backend, boundaries,
    results as they came back; printed with ``KIOSKDAY_TRACE`` set: where a visit's first seconds go."""

    def at() -> float:
        return round(time.monotonic() - args.t0, 3)

    def captured(wall: float) -> float:
        return round(wall - (time.time() - (time.monotonic() - args.t0)), 3)

    class Traced(Recorder):
        def send_frame(self, jpeg: bytes, captured_at: float, session_id: Optional[str]) -> None:
            trace.append(("frame", at(), captured(captured_at)))
            super().send_frame(jpeg, captured_at, session_id)

        def send_audio(self, pcm16: bytes, captured_at: float, session_id: Optional[str]) -> None:
            trace.append(("audio", at(), captured(captured_at)))
            super().send_audio(pcm16, captured_at, session_id)

        def mark_boundary(self) -> None:
            trace.append(("boundary", at(), at()))
            super().mark_boundary()

        async def receive(self) -> Observation:
            obs = await super().receive()
            trace.append((obs.model, at(), captured(obs.captured_at)))
            return obs

    def recording(c: config_mod.Config) -> Backend:
        made.append(Traced(service.make_backend(c)))
        return made[-1]

    static: List[float] = []  # capture times of frames skipped as near-identical to the last one sent
    agents: List[Agent] = []

    def record_static(agent: Agent) -> None:
        agent.pipeline.on_static = static.append
        agents.append(agent)

    camera = ScriptCamera(script, args.t0, min(cfg.camera.fps, cfg.hume.fps_pred))
    microphone = ScriptMicrophone(script, args.t0, cfg.microphone.chunk_ms, await speech_track())
    stop = asyncio.Event()
    rss: List[Tuple[float, float]] = []

    async def sample() -> None:
        while True:
            rss.append((time.monotonic() - args.t0, _common.rss_mb(os.getpid())))
            await asyncio.sleep(1.0)

    async def stopper() -> None:
        await asyncio.sleep(max(0.0, args.t0 + script.total_s - time.monotonic()))
        stop.set()

    tasks = [asyncio.ensure_future(sample()), asyncio.ensure_future(stopper())]
    code = await service.run_agent(
        cfg, stop, sources=(camera, microphone), make_backend=recording, on_agent=record_static
    )
    for task in tasks:
        task.cancel()
    wall0 = time.time() - (time.monotonic() - args.t0)
    chunk_s = cfg.microphone.chunk_ms / 1000
    results = []
    for obs in made[0].results if made else ():
        begin = obs.captured_at - wall0
        spans = [
            m.end_s - m.begin_s for m in obs.measurements if m.begin_s is not None and m.end_s is not None
        ]
        length = (
            0.0 if obs.model == "face" else (max(spans) if role.startswith("agent-v1") and spans else chunk_s)
        )
        results.append((obs.model, round(begin, 3), round(begin + length, 3)))
    skipped = [round(t - wall0, 3) for t in static]
    notices = agents[0].desk.notice.notices if agents else 0  # each raised (then withdrawn) once
    out = {
        "exit": code,
        "results": results,
        "rss": rss,
        "captured": camera.captured,
        "static": skipped,
        "notices": notices,
    }
    if os.environ.get("KIOSKDAY_TRACE"):
        out["trace"] = trace
    return out


async def run_naive_v1(args: argparse.Namespace, script: Script) -> Dict[str, Any]:
    """Hume's v1 example pattern: both realtime sockets open all day, every frame and all audio sent."""
    from hume_expression_measurement import AsyncExpressionMeasurementClient  # noqa: PLC0415
    from hume_expression_measurement.environment import ExpressionMeasurementClientEnvironment  # noqa: PLC0415
    from hume_expression_measurement.types import SessionClose  # noqa: PLC0415
    from websockets.exceptions import ConnectionClosed  # noqa: PLC0415

    from agent.media.video import _select_encoders  # noqa: PLC0415 - the agent's JPEG encoder: the same bytes

    cfg = config_mod.from_dict({}, environ={})
    fps = min(cfg.camera.fps, cfg.hume.fps_pred)
    camera = ScriptCamera(script, args.t0, fps)
    microphone = ScriptMicrophone(script, args.t0, cfg.microphone.chunk_ms, await speech_track())
    encode = _select_encoders()[0]
    env = ExpressionMeasurementClientEnvironment(base=args.target, production="ws" + args.target[4:])
    client = AsyncExpressionMeasurementClient(api_key=_common.API_KEY, environment=env)
    sent = {"frames": 0, "audio_frames": 0}
    close = SessionClose(type="session.close")

    async def drain(sock: Any) -> None:
        try:
            async for _ in sock:
                pass
        except ConnectionClosed as exc:
            print(f"naive-v1: a socket closed: {exc}", file=sys.stderr)

    async with client.video.connect() as video, client.audio.connect() as audio:
        readers = [asyncio.ensure_future(drain(video)), asyncio.ensure_future(drain(audio))]

        async def frames() -> None:
            for k in range(int(script.total_s * fps)):
                await asyncio.sleep(max(0.0, args.t0 + k / fps - time.monotonic()))
                await video.send_image_frame(encode(camera.render(k / fps), cfg.camera.jpeg_quality))
                sent["frames"] += 1

        async def voice() -> None:
            async for chunk in microphone.chunks():
                if chunk.captured_at - (time.time() - (time.monotonic() - args.t0)) >= script.total_s:
                    return
                for i in range(0, len(chunk.pcm16), 3200):  # the SDK's 100 ms frames
                    await audio.send_audio_frame(chunk.pcm16[i : i + 3200])
                    sent["audio_frames"] += 1

        await asyncio.gather(frames(), voice())
        await video.send_video_session_close(close)
        await audio.send_audio_session_close(close)
        await asyncio.wait(readers, timeout=15)
    return sent


async def run_naive_v0(args: argparse.Namespace, script: Script) -> Dict[str, Any]:
    """Hume's v0 example pattern: ``media.py``'s baseline (SDK ``send_file``, PNG frames, WAV audio)."""
    import media  # noqa: PLC0415 - brings the v0 SDK; only this side needs it

    cfg = config_mod.from_dict({}, environ={})
    fps = min(cfg.camera.fps, cfg.hume.fps_pred)
    camera = ScriptCamera(script, args.t0, fps)
    microphone = ScriptMicrophone(script, args.t0, cfg.microphone.chunk_ms, await speech_track())

    class ScriptMedia:
        chunk_ms = cfg.microphone.chunk_ms
        counts = {"frames": 0, "chunks": 0}

        async def frame_ticks(self, on_frame: Any) -> None:
            for k in range(int(script.total_s * fps)):
                await asyncio.sleep(max(0.0, args.t0 + k / fps - time.monotonic()))
                self.counts["frames"] += 1
                await on_frame(Frame(camera.render(k / fps), "bgr", time.time()))

        async def chunk_ticks(self, on_chunk: Any) -> None:
            n = int(script.total_s * 1000 / self.chunk_ms)
            async for chunk in microphone.chunks():
                self.counts["chunks"] += 1
                await on_chunk(chunk.pcm16)
                if self.counts["chunks"] >= n:
                    return

    result: Dict[str, Any] = await media.run_baseline(args.target, ScriptMedia())
    return result


def child(args: argparse.Namespace) -> None:
    script = make_script(args.quick)
    with tempfile.TemporaryDirectory(prefix="hume-edge-kioskday-") as tmp:
        os.environ["RUNTIME_DIRECTORY"] = tmp
        if args.role.startswith("agent"):
            result = asyncio.run(run_agent_side(args.role, args, script, Path(tmp)))
        elif args.role == "naive-v1":
            result = asyncio.run(run_naive_v1(args, script))
        else:
            result = asyncio.run(run_naive_v0(args, script))
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------------
# The driver


def billed(stats: Dict[str, Any], v1: bool) -> Dict[str, float]:
    """Billed media of one side between two emulator snapshots (see ``_emuhost.py``)."""
    if v1:
        return {"video_s": stats["v1_billed_video_s"], "audio_s": stats["v1_billed_audio_s"], "images": 0.0}
    return {"video_s": 0.0, "audio_s": stats["v0_audio_s"], "images": float(stats["face_requests"])}


def diff(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    return {k: (b[k] - a[k]) if isinstance(b[k], (int, float)) else b[k] for k in b}


def speaking_in(script: Script, track: np.ndarray) -> Callable[[float], bool]:
    """Whether the visitor is speaking at script time ``t``: the script has them speak and the speech track
    is voiced there, pauses under ``MERGE_GAP_S`` (250 ms) bridged, on 10 ms frames (voiced: RMS above
    the emulator's silence floor, -40 dBFS).

    The track is espeak-ng's lines with their own pauses (0.3 s between lines and longer ones between
    sentences, digital silence). Counting those as speech made 2.65 s of the 2.95 s v1 was said to miss
    while the 120 s visitor talked turned away (a run on 2026-12-08) silence, not speech: v1's prosody
    answers per utterance, and the emulator splits utterances at pauses of 250 ms or more, as this does,
    while v0's answers span whole 1 s payloads and so covered the pauses. Recomputed on that run's
    results: worst visit v1 4.85 -> 2.2 s, v0 1.55 -> 1.15 s."""
    step = AUDIO_RATE // 100
    frames = track[: len(track) // step * step].astype(np.float64).reshape(-1, step)
    voiced = np.sqrt((frames**2).mean(axis=1)) > SILENCE_FLOOR_RMS * 32768
    bridged = voiced.copy()
    last = None
    for i in np.flatnonzero(voiced):
        if last is not None and 0 < (i - last - 1) * 0.01 < MERGE_GAP_S:
            bridged[last + 1 : i] = True
        last = i

    def speaking(t: float) -> bool:
        spoken = script.speech_at(t)
        return spoken is not None and bool(bridged[int(spoken * 100) % len(bridged)])

    return speaking


def missed(
    script: Script,
    results: Sequence[Sequence[Any]],
    captured: Sequence[float],
    static: Sequence[float],
    fps: float,
    *,
    speaking: Optional[Callable[[float], bool]] = None,
) -> List[Dict[str, Any]]:
    """Per episode: measurable seconds, and those of which nothing was measured (see module doc).

    A measured frame stands for the time until the camera delivered the next frame (a starved machine
    delivering fewer frames is not the agent's choice of what to send), and so does a frame skipped as
    near-identical to the last one sent (``static``: its picture was measured), a measured piece of audio for
    its span; the rest of the time in which the visitor was measurable (face in view, or speaking: by
    ``speaking`` (:func:`speaking_in`), else wherever the script has them speak) is missed. Read on a
    50 ms grid.
    """
    shots = np.array([*sorted(captured), float("inf")])
    owned = []  # [start, end) of each measured frame's interval
    for t in sorted([r[1] for r in results if r[0] == "face"] + list(static)):
        k = int(np.clip(np.searchsorted(shots, t + 0.02) - 1, 0, len(shots) - 2))
        owned.append((shots[k], min(shots[k + 1], shots[k] + 2.0 / fps)))
    audio = [(r[1], r[2]) for r in results if r[0] != "face"]
    out = []
    for e in script.episodes:
        grid = e.start_s + STEP_S * (np.arange(int(e.duration_s / STEP_S)) + 0.5)
        face = np.array([bool(script.faces_at(t)) for t in grid])
        voice = np.array(
            [speaking(t) if speaking is not None else script.speech_at(t) is not None for t in grid]
        )
        seen = np.zeros(len(grid), dtype=bool)
        for a, b in owned:
            seen |= (grid >= a) & (grid < b)
        heard = np.zeros(len(grid), dtype=bool)
        for a, b in audio:
            heard |= (grid >= a) & (grid < b)
        measurable = face | voice
        covered = (face & seen) | (voice & heard)
        out.append(
            {
                "kind": e.kind,
                "duration_s": e.duration_s,
                "measurable_s": round(float(measurable.sum()) * STEP_S, 2),
                "missed_s": round(float((measurable & ~covered).sum()) * STEP_S, 2),
            }
        )
    return out


def run_side(role: str, target: str, args: argparse.Namespace, t0: float, broker: str) -> Any:
    """One side as a child process, its JSON result on its stdout."""
    cmd = [sys.executable, __file__, "--role", role, "--target", target, "--t0", repr(t0), "--broker", broker]
    return subprocess.Popen(cmd + (["--quick"] if args.quick else []), stdout=subprocess.PIPE, text=True)


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--role", choices=SIDES, help=argparse.SUPPRESS)
    p.add_argument("--target", help=argparse.SUPPRESS)
    p.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    p.add_argument("--broker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role:
        child(args)
        return
    script = make_script(args.quick)
    sides = QUICK_SIDES if args.quick else SIDES
    with tempfile.TemporaryDirectory(prefix="hume-edge-bench-") as tmp:
        hosts = {role: _common.EmulatorHost(detect=role.startswith("agent")) for role in sides}
        try:
            with LocalBroker(Path(tmp) / "broker") as broker:
                t0 = time.monotonic() + (QUICK_STARTUP_S if args.quick else STARTUP_S)
                procs = {
                    role: run_side(role, hosts[role].base_url, args, t0, f"{broker.host}:{broker.port}")
                    for role in sides
                }
                time.sleep(max(0.0, t0 + script.lead_s - time.monotonic()))
                lead = {role: hosts[role].ask("stats") for role in sides}
                outs = {}
                for role, proc in procs.items():
                    out, _ = proc.communicate(timeout=script.total_s + 180)
                    if proc.returncode != 0 or not out.strip():
                        raise RuntimeError(f"{role} failed (exit {proc.returncode})")
                    outs[role] = json.loads(out.strip().splitlines()[-1])
                end = {role: hosts[role].ask("stats") for role in sides}
        finally:
            for host in hosts.values():
                host.close()
    if os.environ.get("KIOSKDAY_DUMP"):
        Path(os.environ["KIOSKDAY_DUMP"]).write_text(json.dumps([lead, end, outs]), encoding="utf-8")
    report(args, Run(script, sides, lead, end, outs))


@dataclasses.dataclass(frozen=True)
class Run:
    """What one run measured: each side's emulator snapshots after the lead-in and at the end, and
    what each side's process printed."""

    script: Script
    sides: Sequence[str]
    lead: Dict[str, Dict[str, Any]]
    end: Dict[str, Dict[str, Any]]
    outs: Dict[str, Dict[str, Any]]


def report(args: argparse.Namespace, run: Run) -> None:
    script, sides, lead, end, outs = run.script, run.sides, run.lead, run.end, run.outs
    day_s = DAY_H * 3600
    cfg = config_mod.from_dict({}, environ={})
    per: Dict[str, Dict[str, Any]] = {}
    speaking = speaking_in(script, asyncio.run(speech_track()))
    for role in sides:
        v1 = role.endswith("v1") or role == "agent-v1-nogate"
        unit = diff(lead[role], end[role])
        lead_bytes_per_s = (lead[role]["up"] + lead[role]["down"]) / script.lead_s
        unit_bytes = unit["up"] + unit["down"]
        if role.startswith("naive"):
            whole = billed(end[role], v1)
            rate = {k: v / script.total_s for k, v in whole.items()}
            unit_bill = {k: v * script.unit_s for k, v in rate.items()}
            lead_bill_per_s = rate
        else:
            unit_bill = billed(unit, v1)
            lead_bill_per_s = {k: v / script.lead_s for k, v in billed(lead[role], v1).items()}
        days = {
            occ: _day.day(
                unit_bill,
                lead_bill_per_s,
                unit_bytes,
                lead_bytes_per_s,
                occupancy=occ,
                day_s=day_s,
                unit_s=script.unit_s,
                visitor_s=script.visitor_s,
                v1=v1,
            )
            for occ in OCCUPANCIES
        }
        entry: Dict[str, Any] = {"v1": v1, "days": days, "unit_bill": unit_bill, "unit": unit}
        if role.startswith("agent"):
            rss = [m for t, m in outs[role]["rss"] if t >= script.lead_s]
            fps = min(cfg.camera.fps, cfg.hume.fps_pred)
            out = outs[role]
            visits = missed(script, out["results"], out["captured"], out["static"], fps, speaking=speaking)
            entry.update(
                rss_mean=sum(rss) / len(rss),
                rss_max=max(rss),
                visits=visits,
                worst_missed=max(v["missed_s"] for v in visits if v["kind"] != "glance"),
                glance_measured=sum(
                    v["measurable_s"] - v["missed_s"] for v in visits if v["kind"] == "glance"
                ),
            )
        per[role] = entry
    rows = []
    for role in sides:
        e = per[role]
        naive = per["naive-v1" if e["v1"] else "naive-v0"]
        for occ in OCCUPANCIES:
            d = e["days"][occ]
            b = d["bill"]
            billed_s = b["video_s"] + b["audio_s"]
            rows.append(
                [
                    role,
                    f"{occ:.0%}",
                    f"{billed_s / 3600:.2f} h"
                    if e["v1"]
                    else f"{b['images']:,.0f} img + {b['audio_s'] / 3600:.2f} h",
                    f"{b['video_s'] / 3600:.2f} / {b['audio_s'] / 3600:.2f} h",
                    f"${d['usd']:.2f}",
                    f"{d['usd'] / naive['days'][occ]['usd']:.3f}x",
                    f"{d['bytes'] / 1e6:,.1f} MB",
                    "" if "visits" not in e else " / ".join(f"{v['missed_s']:g}" for v in e["visits"]),
                    "" if "rss_mean" not in e else f"{e['rss_mean']:.1f} / {e['rss_max']:.1f}",
                ]
            )
    headers = [
        "side", "occupancy", "billed per day", "video / audio billed", "USD per day", "vs naive (same API)",
        "bytes per day", "visitor-s missed per episode", "RSS mean / max MB",
    ]  # fmt: skip
    episodes = ", ".join(f"{e.kind} {e.duration_s:g} s" for e in script.episodes)
    units10 = 0.10 * day_s / script.visitor_s  # units a day at 10 % occupancy (_day.day's formula)
    sessions = {
        role: end[role]["v1_sessions"] - lead[role]["v1_sessions"] for role in sides if per[role]["v1"]
    }
    details = "\n".join(
        [
            _common.markdown(headers, rows),
            "",
            f"Script: {script.lead_s:g} s empty, then one unit of {episodes} ({script.visitor_s:g} visitor-s "
            f"in a {script.unit_s:g} s window); a kiosk-day is {DAY_H:g} h. Missed: seconds of each "
            "episode (in the order above) in which the visitor was measurable and nothing of it was "
            "measured (a frame stands for the time until the camera's next one; speaking is where the "
            f"speech track is voiced, pauses under {MERGE_GAP_S * 1000:g} ms bridged). Agent defaults: "
            "debounce "
            f"{cfg.session.debounce_s:g} s, grace "
            f"{cfg.session.grace_s:g} s, hume.v1.min_session_s {cfg.hume.v1.min_session_s:g} s, silence gate "
            f"{cfg.microphone.gate_preroll_ms} ms pre-roll / {cfg.microphone.gate_hangover_ms} ms hang-over, "
            f"{cfg.camera.fps:g} fps.",
            "v1 sessions opened in the unit: "
            + ", ".join(f"{role} {n}" for role, n in sessions.items())
            + "; glance seconds measured (paid): "
            + ", ".join(f"{r} {per[r]['glance_measured']:g} s" for r in sides if "visits" in per[r])
            + ". Visit notices raised in the script (each then withdrawn; a glance raises one too, as the "
            "notice goes up at the debounce's first frame): "
            + ", ".join(
                f"{r} {outs[r].get('notices', 0)} ({outs[r].get('notices', 0) * units10:,.0f} a day at 10 %)"
                for r in sides
                if "visits" in per[r]
            )
            + ".",
            f"Prices: agent/hume/pricing.py, Hume's newer set (May 2026): v0 ${pricing.IMAGE_USD}/image, "
            f"audio ${pricing.AUDIO_USD_PER_MIN}/min; v1 (unpublished) audio "
            f"${pricing.AUDIO_USD_PER_MIN}/min, video ${pricing.V1_VIDEO_USD_PER_MIN}/min "
            "(older video-only x3).",
        ]
    )
    at10 = {role: per[role]["days"][0.10] for role in sides}
    debounce = cfg.session.debounce_s
    headline = []
    for api in ("v1", "v0"):
        ours, naive = at10[f"agent-{api}"], at10[f"naive-{api}"]
        ratio = ours["usd"] / naive["usd"]
        headline.append(
            _common.row(
                "8 kiosk-day", f"{api}: USD per {DAY_H:g} h day at 10 % occupancy",
                (f"${ours['usd']:.2f}", f"${naive['usd']:.2f}", f"{ratio:.3f}x"),
                f"<= {COST_GOAL:g}x naive", ratio <= COST_GOAL,
            )
        )  # fmt: skip
    for api in ("v1", "v0"):
        ours, naive = at10[f"agent-{api}"], at10[f"naive-{api}"]
        headline.append(
            _common.row(
                "8 kiosk-day", f"{api}: bytes per day at 10 %",
                (f"{ours['bytes'] / 1e6:,.0f} MB", f"{naive['bytes'] / 1e6:,.0f} MB",
                 f"{ours['bytes'] / naive['bytes']:.3f}x"),
                "(no goal)", None,
            )
        )  # fmt: skip
    worst = {api: per[f"agent-{api}"]["worst_missed"] for api in ("v1", "v0")}
    headline.append(
        _common.row(
            "8 kiosk-day", "visitor-seconds missed, worst visit (v1 / v0)",
            (f"{worst['v1']:g} / {worst['v0']:g} s", "", ""),
            f"<= debounce ({debounce:g} s)", max(worst.values()) <= debounce,
        )
    )  # fmt: skip
    if "agent-v1-nogate" in per:
        gated, ungated = at10["agent-v1"], at10["agent-v1-nogate"]
        headline.append(
            _common.row(
                "8 kiosk-day", "v1 audio policy: silence gate vs all audio of a visit",
                (f"${gated['usd']:.2f}", f"${ungated['usd']:.2f}", f"{gated['usd'] / ungated['usd']:.2f}x"),
                "(no goal)", None,
            )
        )  # fmt: skip
    headline.append(
        _common.row(
            "8 kiosk-day", "agent RSS during the day (v1 / v0)",
            (f"{per['agent-v1']['rss_mean']:.1f} / {per['agent-v0']['rss_mean']:.1f} MB", "", ""),
            "(see 5 memory)", None,
        )
    )  # fmt: skip
    _common.finish(args, "Benchmark 8: cost per kiosk-day", details, headline)


if __name__ == "__main__":
    main()
