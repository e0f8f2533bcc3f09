"""``hume-edge probe`` as an operator runs it, against the emulators: billed, so it refuses without --yes;
no protocol difference against the contract; an injected unknown field, message type and close code are
listed (exit 3); the transcript carries no key and no media; a refused key exits 69.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path
from typing import AsyncIterator, Dict, Tuple

import pytest_asyncio

from agent.hume.probe import face_jpeg
from hume_emulator.emulator import Emulator, EmulatorSettings
from hume_emulator.v1.emulator import EmulatorV1, EmulatorV1Settings

EXE = Path(sys.executable).with_name("hume-edge")
KEY = "probe-secret-key-0123456789"
TIMEOUT_S = 90.0


@pytest_asyncio.fixture
async def emulator_v1() -> AsyncIterator[EmulatorV1]:
    async with EmulatorV1(EmulatorV1Settings(api_keys=(KEY,))) as emu:
        yield emu


async def probe(tmp_path: Path, config: str, *args: str, key: str = KEY) -> Tuple[int, str]:
    path = tmp_path / "config.toml"
    path.write_text(config)
    env: Dict[str, str] = {**os.environ, "HUME_API_KEY": key}
    proc = await asyncio.create_subprocess_exec(
        str(EXE), "probe", "--config", str(path), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def v1_config(emu: EmulatorV1) -> str:
    return f'[hume]\nbackend = "v1"\n[hume.v1]\nurl = "{emu.base_url}"\n'


async def test_refuses_without_yes_after_printing_the_cost_ceiling(
    emulator_v1: EmulatorV1, tmp_path: Path
) -> None:
    code, out = await probe(tmp_path, v1_config(emulator_v1))
    assert code == 2, out
    assert "cost ceiling: $0.0181" in out  # two sessions x 10 s minimum: audio $0.0107 + video $0.0075
    assert "add --yes" in out
    assert emulator_v1.connections == 0


async def test_the_contract_shows_no_difference_and_the_transcript_is_redacted(
    emulator_v1: EmulatorV1, tmp_path: Path
) -> None:
    transcript = tmp_path / "probe.json"
    code, out = await probe(tmp_path, v1_config(emulator_v1), "--yes", "--transcript", str(transcript))
    assert code == 0, out
    assert "protocol differences: none" in out
    assert "measurement.result: faces, frame_id, type" in out
    assert "video: handshake HTTP 101" in out
    assert "latency p50" in out
    assert {s.endpoint for s in emulator_v1.sessions} == {"audio", "video"}
    text = transcript.read_text()
    assert KEY not in text
    assert base64.b64encode(face_jpeg()[:300]).decode()[:200] not in text  # no media, not even as base64
    body = json.loads(text)
    events = [e for r in body["endpoints"] for e in r["events"]]
    assert any("binary_bytes" in e for e in events)
    assert any("probability" in json.dumps(e) for e in events if e["dir"] == "in")  # scores kept


async def test_an_unknown_field_message_type_and_close_code_are_listed(
    emulator_v1: EmulatorV1, tmp_path: Path
) -> None:
    emulator_v1.faults.drift_field = 1
    emulator_v1.faults.drift_message = 1
    emulator_v1.faults.drift_close_code = 4001
    code, out = await probe(tmp_path, v1_config(emulator_v1), "--yes", "--seconds", "1")
    assert code == 3, out
    for difference in (
        "video type:emulated.drift",
        "video field:measurement.result.emulated_drift",
        "audio type:emulated.drift",
        "audio field:session.created.emulated_drift",
        "video close_code:4001",
    ):
        assert difference in out


async def test_a_refused_key_exits_69(emulator_v1: EmulatorV1, tmp_path: Path) -> None:
    code, out = await probe(tmp_path, v1_config(emulator_v1), "--yes", key="wrong-key")
    assert code == 69, out
    assert "handshake refused with HTTP 401" in out
    assert "wrong-key" not in out


async def test_v0_backend_is_probed_too(tmp_path: Path) -> None:
    async with Emulator(EmulatorSettings(api_keys=(KEY,))) as emu:
        config = f'[hume]\nbackend = "v0"\n[hume.v0]\nurl = "{emu.url}"\n'
        code, out = await probe(tmp_path, config, "--yes", "--seconds", "2")
    assert code == 0, out
    assert "protocol differences: none" in out
    assert "face: " in out  # labels of the face reply
    assert len(emu.requests) == 2


async def test_a_key_that_would_travel_in_clear_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    code, out = await probe(tmp_path, '[hume.v1]\nurl = "ws://192.0.2.1:8765"\n', "--yes")
    assert code == 78, out
    assert "plaintext to 192.0.2.1" in out
    assert "cost ceiling" not in out
