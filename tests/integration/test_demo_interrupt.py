"""Ctrl-C on ``hume-edge demo`` in a terminal ends it cleanly.

A terminal sends SIGINT to its whole foreground process group. The demo's private mosquitto used to be in
that group, died first, and the demo ended with ``status offline`` and a lost-connection warning. Here the
demo runs in a process group of its own and the test signals the group, as the terminal does.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROGRAM = str(Path(sys.executable).parent / "hume-edge")


def test_ctrl_c_in_a_terminal_stops_the_demo_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HUME_API_KEY", "NOTIFY_SOCKET")}
    proc = subprocess.Popen(
        [PROGRAM, "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        start_new_session=True,  # the test plays the terminal: it owns the group it signals
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    try:
        while not any("visit" in line and ("face" in line or "prosody" in line) for line in seen):
            assert time.monotonic() < deadline, "no summary within 60 s:\n" + "".join(seen)
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
                assert line or proc.poll() is None, "demo ended:\n" + "".join(seen) + proc.stderr.read()
                seen.append(line)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = "".join(seen) + out
    assert proc.returncode == 0, output + err
    assert "status    stopped" in output, output
    assert "status    offline" not in output, output
    assert "lost the MQTT connection" not in err, err
    assert "summaries; the first arrived after" in output, output
