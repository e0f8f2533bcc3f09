"""The whole agent against a real mosquitto and the real emulator.

1. ``hume-edge run`` as a process on the embedded defaults (synthetic face camera, espeak-ng voice), under
   strace: face and prosody summaries reach a subscriber with Hume's labels and scores in [0, 1], every
   message validates against the shipped schema, SIGTERM stops it cleanly, and no file it wrote holds an
   image or audio.
2. A scripted scene in-process (a face appears and speaks, leaves, a second face arrives): exactly two
   sessions, ``reset_stream`` on the first payload of each socket after each boundary and never elsewhere,
   nothing sent while the kiosk is empty, and no face id shared between the two visits.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import pytest

from agent import config as config_mod
from agent.capture.synthetic import SceneStep, SyntheticCamera
from agent.errors import EX_UNAVAILABLE
from agent.hume.v0.protocol import EXPRESSIONS
from agent.hume.v0.publish import PublishMessage
from agent.media.audio import Resampler, decode_wav
from agent.service import run_agent
from hume_emulator.emulator import Emulator
from tests.support.emulator import espeak_wav
from tests.support.kiosk import PREFIX, SceneVoice, agent_config, sequenced, validator
from tests.support.mosquitto import Broker, Received, Subscriber
from tests.support.processes import agent_process
from tests.support.toml_text import toml_text

pytestmark = pytest.mark.timeout(180)

MEDIA_SUFFIXES = (".jpg", ".jpeg", ".png", ".wav", ".raw", ".pcm", ".mp3", ".mp4", ".avi", ".h264")
MEDIA_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"ID3", b"OggS")


def written_paths(trace: str) -> Set[str]:
    """Paths the traced process tree opened for writing or created (strace -e openat,creat,rename…)."""
    paths: Set[str] = set()
    for line in trace.splitlines():
        m = re.search(r'open(?:at)?\((?:[^,]+, )?"([^"]+)", ([A-Z_|]+)', line)
        if m and re.search(r"O_WRONLY|O_RDWR|O_CREAT", m.group(2)) and "ENOENT" not in line:
            paths.add(m.group(1))
        m = re.search(r'(?:creat|rename|renameat2?|link|symlink)\(.*"([^"]+)"', line)
        if m:
            paths.add(m.group(1))
    return paths


def looks_like_media(path: Path) -> bool:
    if path.suffix.lower() in MEDIA_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return any(head.startswith(m) for m in MEDIA_MAGIC)


@pytest.mark.skipif(
    shutil.which("strace") is None, reason="strace is not installed (scripts/setup --dev installs it)"
)
async def test_agent_process_publishes_valid_summaries_and_writes_no_media(
    emulator: Emulator, mosquitto: Broker, subscriber: Any, tmp_path: Path
) -> None:
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(toml_text(agent_config(emulator, mosquitto, tmp_path)), encoding="utf-8")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trace = tmp_path / "strace.txt"
    env = dict(os.environ, RUNTIME_DIRECTORY=str(run_dir))
    env.pop("HUME_API_KEY", None)
    log_path = tmp_path / "agent.log"
    strace = (
        "strace",
        "-f",
        "-qq",
        "-o",
        str(trace),
        "-e",
        "trace=open,openat,creat,rename,renameat,renameat2,link",
    )
    proc = await agent_process(cfg_path, cwd=tmp_path, log=log_path, env=env, wrapper=strace)
    try:

        def have_both(msgs: List[Received]) -> bool:
            topics = {m.topic for m in msgs}
            return PREFIX + "summary/face" in topics and PREFIX + "summary/prosody" in topics

        got = await sub.until(have_both, timeout=90)
        assert got, (
            "no face and prosody summaries within 90 s:\n" + log_path.read_text(errors="replace")[-3000:]
        )
        # strace does not pass signals on: stop the agent itself, as systemd would.
        agent_pid = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        os.kill(agent_pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=30)
    finally:
        if proc.returncode is None:  # a failed test leaves neither strace nor the agent behind
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    log = log_path.read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    assert await sub.until(lambda msgs: any(m.topic == PREFIX + "aggregate" for m in msgs), timeout=10), (
        "the open session's aggregate was not delivered at a clean stop"
    )

    labels = set(EXPRESSIONS)
    schema = validator()
    for suffix, payload in sequenced(sub.messages):
        schema.validate(payload)
        if suffix in ("summary/face", "summary/prosody") and payload["schema"] == "hume-edge/summary/1":
            tops = [f["top"] for f in payload.get("faces", [])] or [payload["top"]]
            for top in tops:
                assert top, payload
                for item in top:
                    assert item["name"] == item["hume_name"].lower(), "one label case on both backends"
                    assert item["hume_name"] in labels
                    assert 0.0 <= item["score"] <= 1.0
    assert sub.on("status")[-1].payload == b"stopped"

    # Nothing a visitor would not expect on disk: list every file the process tree wrote.
    written = written_paths(trace.read_text(encoding="utf-8", errors="replace"))
    assert written, "strace saw no writes at all: the trace is not working"
    offenders = [p for p in written if Path(p).suffix.lower() in MEDIA_SUFFIXES]
    offenders += [
        p for p in written if Path(p).is_file() and not p.startswith("/dev/") and looks_like_media(Path(p))
    ]
    assert not offenders, f"media written to disk: {offenders}"
    unexpected = {
        p for p in written
        if not p.startswith(("/dev/", "/proc/", str(tmp_path)))
        and "__pycache__" not in p
    }  # fmt: skip
    assert not unexpected, f"files written outside the agent's state and runtime directories: {unexpected}"


# --------------------------------------------------------------------------------------------------
# Scripted scene, in-process


def requests_by_socket(requests: List[Tuple[int, PublishMessage]]) -> Dict[str, List[PublishMessage]]:
    out: Dict[str, List[PublishMessage]] = {"video": [], "audio": []}
    for _, msg in requests:
        models = msg.models.enabled if msg.models else ()
        if "face" in models:
            out["video"].append(msg)
        elif "prosody" in models or "burst" in models:
            out["audio"].append(msg)
    return out


def resets(msgs: List[PublishMessage]) -> List[int]:
    return [i for i, m in enumerate(msgs) if m.reset_stream]


async def test_scripted_scene_two_visitors(
    emulator: Emulator, mosquitto: Broker, subscriber: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))  # the status snapshot stays out of the checkout
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    scene = [SceneStep(5.0, "a"), SceneStep(9.0, None), SceneStep(5.0, "b"), SceneStep(3600.0, None)]
    camera = SyntheticCamera(640, 480, 2.0, scene=scene)
    samples, rate = decode_wav(
        espeak_wav("Hello, I would like to know more about this exhibition. It is wonderful.")
    )
    speech = Resampler(rate).process(samples)
    voice = SceneVoice(camera, speech)
    cfg = config_mod.from_dict(
        agent_config(
            emulator,
            mosquitto,
            tmp_path,
            session={"grace_s": 2.0},
            hume={"v0": {"url": emulator.url, "identify_faces": True}},
        ),
        environ={},
    )
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_agent(cfg, stop, sources=(camera, voice)))
    try:
        # The empty kiosk (about 7-14 s into the scene): count payloads at both ends of a quiet stretch.
        await asyncio.sleep(9.5)  # scenario: the scene's clock (empty from 5 s to 14 s, sessions end at ~7 s)
        quiet_from = len(emulator.requests)
        await asyncio.sleep(3.5)  # scenario: a quiet stretch of the empty kiosk
        quiet_to = len(emulator.requests)
        ended_twice = await sub.until(
            lambda msgs: sum(1 for s, p in sequenced(msgs) if s == "session" and p["event"] == "end") >= 2,
            timeout=30,
        )
    finally:
        stop.set()
        code = await asyncio.wait_for(task, timeout=30)
    assert code == 0
    assert ended_twice, [p for s, p in sequenced(sub.messages) if s == "session"]
    assert quiet_to == quiet_from, "payloads were sent to Hume while the kiosk was empty"

    messages = sequenced(sub.messages)
    schema = validator()
    for _, payload in messages:
        schema.validate(payload)
    sessions = [p for s, p in messages if s == "session"]
    starts = [p["session"] for p in sessions if p["event"] == "start"]
    ends = [p["session"] for p in sessions if p["event"] == "end"]
    assert len(starts) == 2, sessions
    assert starts == ends, sessions
    assert starts[0] != starts[1], sessions
    aggregates = [p["session"] for s, p in messages if s == "aggregate"]
    assert sorted(aggregates) == sorted(starts)
    for s, p in messages:
        if s.startswith("summary/"):
            assert p["session"] in starts

    # reset_stream: on the first payload of each socket in each session, nowhere else.
    per_socket_1 = requests_by_socket(emulator.requests[:quiet_from])
    per_socket_2 = requests_by_socket(emulator.requests[quiet_to:])
    for name in ("video", "audio"):
        assert per_socket_1[name], f"no {name} payloads in the first session"
        assert per_socket_2[name], f"no {name} payloads in the second session"
        assert resets(per_socket_1[name]) == [0], (name, resets(per_socket_1[name]))
        assert resets(per_socket_2[name]) == [0], (name, resets(per_socket_2[name]))

    # identify_faces: no face id of the second visit appeared in the first.
    faces: Dict[str, Set[str]] = {sid: set() for sid in starts}
    for s, p in messages:
        if s == "summary/face" and p["schema"] == "hume-edge/summary/1":  # not the idle message at the end
            faces[p["session"]].update(f["face_id"] for f in p["faces"])
    assert faces[starts[0]], faces
    assert faces[starts[1]], faces
    assert not faces[starts[0]] & faces[starts[1]], faces


async def test_wrong_api_key_at_start_exits_69_with_a_clear_message(
    emulator: Emulator,
    mosquitto: Broker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    data = agent_config(emulator, mosquitto, tmp_path, hume={"api_key": "not-the-key"})
    code = await asyncio.wait_for(run_agent(config_mod.from_dict(data, environ={})), timeout=60)
    assert code == EX_UNAVAILABLE
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("401" in e or "refused" in e or "invalid" in e for e in errors), errors
    assert not any("not-the-key" in r.getMessage() for r in caplog.records)
    assert not any("did not stop" in e for e in errors), errors  # every task honoured its cancellation


async def test_commands_drive_a_session_and_text_reaches_the_language_model(
    emulator: Emulator, mosquitto: Broker, subscriber: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kiosk UI (no camera, no microphone) starts a visit, sends what the visitor typed, ends the visit."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    sub: Subscriber = subscriber(mosquitto, [PREFIX + "#"])
    data = agent_config(
        emulator,
        mosquitto,
        tmp_path,
        hume={"models": ["language"]},
        session={"mode": "command"},
        camera={"source": "none"},
        microphone={"source": "none"},
    )
    stop = asyncio.Event()
    task = asyncio.ensure_future(run_agent(config_mod.from_dict(data, environ={}), stop))
    try:
        assert await sub.until(
            lambda ms: any(m.topic == PREFIX + "status" and m.payload == b"online" for m in ms), 30
        )
        sub.publish(PREFIX + "cmd/text", b"ignored: nobody is here yet")
        sub.publish(PREFIX + "cmd/session", b"start")
        assert await sub.until(lambda ms: any(s == "session" for s, _ in sequenced(ms)), 30)
        sub.publish(PREFIX + "cmd/text", b"I love this exhibition. The staff were wonderful and kind.")
        assert await sub.until(lambda ms: any(s == "summary/language" for s, _ in sequenced(ms)), 30)
        sub.publish(PREFIX + "cmd/session", b"end")
        assert await sub.until(lambda ms: any(s == "aggregate" for s, _ in sequenced(ms)), 30)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, timeout=30) == 0
    results = [m.json() for m in sub.on("cmd/result")]
    assert [r["ok"] for r in results] == [True, True, True, True]
    language = [p for s, p in sequenced(sub.messages) if s == "summary/language"]
    validator().validate(language[0])
    assert 1.0 <= language[0]["sentiment"]["expected"] <= 9.0
    texts = [m for _, m in emulator.requests if m.raw_text]
    assert len(texts) == 1, "text sent while no session was active"
    assert texts[0].reset_stream  # the first payload of the visit
