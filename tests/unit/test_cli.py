"""The command line teaches: --help with an example everywhere; errors exit with the documented codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import cli
from agent.errors import EX_CONFIG

COMMANDS = ("run", "check-config", "emulator", "demo", "status", "fleet", "broker-acl")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out
    assert f"hume-edge {command}" in out


def test_top_level_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    assert "78 config error" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("hume-edge ")


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage:" in capsys.readouterr().out


def test_check_config_example_ok(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUME_API_KEY", "x")
    example = Path(__file__).resolve().parents[2] / "config" / "hume-edge.example.toml"
    assert cli.main(["check-config", str(example)]) == 0
    assert "[mqtt]" in capsys.readouterr().out


def test_check_config_misspelt_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[camera]\nfsp = 2\n", encoding="utf-8")
    assert cli.main(["check-config", str(bad)]) == EX_CONFIG
    err = capsys.readouterr().err
    assert "camera.fsp: unknown key" in err
    assert str(bad) in err


def test_check_config_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[hume]\napi_key = "do-not-print-me"\n', encoding="utf-8")
    assert cli.main(["check-config", str(cfg)]) == 0
    assert "do-not-print-me" not in capsys.readouterr().out


def test_run_with_bad_config_exits_78(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt]\nport = 0\n", encoding="utf-8")
    assert cli.main(["run", "--config", str(bad)]) == EX_CONFIG


def test_run_without_api_key_exits_78(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUME_API_KEY", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[outbox]\npath = "{tmp_path / "o.sqlite"}"\n', encoding="utf-8")
    assert cli.main(["run", "--config", str(cfg)]) == EX_CONFIG


def test_commands_work_without_the_optional_extras(tmp_path: Path) -> None:
    """A dashboard-only install (no vision / audio extras) still checks configs and shows status."""
    example = Path(__file__).resolve().parents[2] / "config" / "hume-edge.example.toml"
    blocked = "; ".join(f"sys.modules[{m!r}] = None" for m in ("cv2", "pyaudio", "simplejpeg", "skimage"))
    code = f"import sys; {blocked}; from agent.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "check-config", str(example)]
    env = dict(os.environ, HUME_API_KEY="x")
    check = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, env=env)
    assert check.returncode == 0, check.stderr
    status = subprocess.run(
        [sys.executable, "-c", code, "status", "--path", str(tmp_path / "none.json")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 3, status.stdout + status.stderr  # "not running", not a crash
