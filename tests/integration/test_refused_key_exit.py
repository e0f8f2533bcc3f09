"""A refused API key ends ``hume-edge run`` with 69 (EX_UNAVAILABLE), the code the unit's
``RestartPreventExitStatus=78 69`` honours: a kiosk with a wrong key must not hammer Hume in a restart loop.

Found by running it: v0, synthetic camera, the key refused within a second of start. 10 of 12 runs died with
SIGABRT after logging "stopped (exit 69)" ("terminate called without an active exception": the process
exited while the camera's thread was inside OpenCV), and systemd would have restarted that. The agent now
waits for its device threads before it exits (``FrameSource.close``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from agent.errors import EX_UNAVAILABLE
from hume_emulator.emulator import Emulator
from tests.support.processes import agent_process
from tests.support.toml_text import toml_text

pytestmark = pytest.mark.timeout(120)

EXIT_TIMEOUT_S = 60.0
ATTEMPTS = 10
"""The abort was a race: before the fix it came in 3, then 8 of these 10 runs (about a second each)."""


@pytest.mark.parametrize("attempt", range(ATTEMPTS))
async def test_a_refused_key_exits_69_not_with_an_abort(
    emulator: Emulator, tmp_path: Path, attempt: int
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        toml_text(
            {
                "device_id": f"refused-{attempt}",
                "hume": {"backend": "v0", "api_key": "not-the-key", "v0": {"url": emulator.url}},
                "camera": {"source": "synthetic"},
                "microphone": {"source": "speech"},
                "session": {"mode": "always"},
                "mqtt": {"port": 1},  # nothing listens: the agent must stop for the key alone
                "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            }
        ),
        encoding="utf-8",
    )
    log = tmp_path / "agent.log"
    env = {k: v for k, v in os.environ.items() if k != "HUME_API_KEY"}
    proc = await agent_process(config, cwd=tmp_path, log=log, env={**env, "RUNTIME_DIRECTORY": str(tmp_path)})
    code = await asyncio.wait_for(proc.wait(), EXIT_TIMEOUT_S)
    text = log.read_text(errors="replace")
    assert code == EX_UNAVAILABLE, f"exit {code}:\n{text[-3000:]}"
    assert "refused the API key" in text
    assert "terminate called" not in text
