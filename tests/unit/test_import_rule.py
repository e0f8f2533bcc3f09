"""The import rule: a command loads only what it runs.

``--version`` and ``check-config`` (the unit's ``ExecStartPre``, paid on every start) load no emulator
module and no ``aiohttp.web``; ``run`` loads no emulator module, with either backend. Each command runs in
its own interpreter, which writes ``sorted(sys.modules)`` when it exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from tests.support.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "hume-edge.example.toml"


def _probe(out: Path) -> str:
    return (
        "import atexit, sys\n"
        f"atexit.register(lambda: open({str(out)!r}, 'w').write('\\n'.join(sorted(sys.modules))))\n"
        "from agent.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ, HUME_API_KEY="k", RUNTIME_DIRECTORY=str(tmp_path))
    env.pop("NOTIFY_SOCKET", None)
    return env


def _loaded(out: Path) -> List[str]:
    return out.read_text(encoding="utf-8").split()


def _forbidden(modules: List[str], *, web: bool) -> List[str]:
    bad = [m for m in modules if m == "hume_emulator" or m.startswith("hume_emulator.")]
    bad += [m for m in modules if "emulat" in m and m.startswith("agent")]
    if web:
        bad += [m for m in modules if m == "aiohttp.web" or m.startswith("aiohttp.web_")]
    return bad


@pytest.mark.parametrize("argv", [["--version"], ["check-config", str(EXAMPLE)]])
def test_version_and_check_config_load_no_emulator_and_no_web_server(argv: List[str], tmp_path: Path) -> None:
    out = tmp_path / "modules.txt"
    proc = subprocess.run(
        [sys.executable, "-c", _probe(out), *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(tmp_path),
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    modules = _loaded(out)
    assert "agent.cli" in modules  # the probe saw the command's code path
    assert _forbidden(modules, web=True) == []


@pytest.mark.parametrize("backend", ["v1", "v0"])
def test_run_loads_no_emulator_module(backend: str, tmp_path: Path) -> None:
    out = tmp_path / "modules.txt"
    url = "ws://127.0.0.1:9" if backend == "v1" else "ws://127.0.0.1:9/v0/stream/models"
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[hume]\nbackend = "{backend}"\n[hume.{backend}]\nurl = "{url}"\n'
        '[camera]\nsource = "synthetic"\n[microphone]\nsource = "speech"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = 9\n[outbox]\npath = "{tmp_path / "o.sqlite"}"\n',
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _probe(out), "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(tmp_path),
        cwd=ROOT,
    )
    try:
        status = tmp_path / "status.json"
        # Written once every task has started: the run path is loaded by then.
        started = wait_until(lambda: status.exists() or proc.poll() is not None, 60)
        assert started, "no status snapshot within 60 s"
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    modules = _loaded(out)
    assert "agent.service" in modules
    assert f"agent.hume.{backend}.client" in modules
    assert _forbidden(modules, web=False) == []
