"""The shipped unit passes ``systemd-analyze verify`` cleanly and its exposure stays at most 2.0.

``verify`` fails when ExecStart's program is missing, so it checks a copy whose paths point at this
checkout's venv; it reports unknown keys and bad values only as warnings with exit 0, so any stderr
output fails the test (systemd 252's ``verify`` exits 0 on both).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "hume-edge.service"
INSTALLED_PROGRAM = "/opt/hume-edge/venv/bin/hume-edge"
MAX_EXPOSURE_TENTHS = 20

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (apt: systemd)"
)


def _keys(text: str) -> Dict[str, List[str]]:
    """``Section.Key -> [values]`` (systemd allows a key more than once)."""
    keys: Dict[str, List[str]] = defaultdict(list)
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        keys[f"{section}.{key}"].append(value)
    return keys


@pytest.fixture
def local_unit(tmp_path: Path) -> Path:
    """The shipped unit with its program pointing at this venv's ``hume-edge`` script."""
    program = Path(sys.executable).parent / "hume-edge"
    assert program.exists(), f"{program} missing: install the project into the venv (scripts/setup)"
    unit = tmp_path / "hume-edge.service"
    shipped = UNIT.read_text()
    assert INSTALLED_PROGRAM in shipped
    unit.write_text(shipped.replace(INSTALLED_PROGRAM, str(program)))
    # The program's path is the only change: undone, the copy is the shipped unit byte for byte.
    assert unit.read_text().replace(str(program), INSTALLED_PROGRAM) == shipped
    return unit


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False)


def test_verify_is_clean(local_unit: Path) -> None:
    proc = _analyze("verify", str(local_unit))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", f"systemd-analyze verify warned:\n{proc.stderr}"


def test_security_exposure_at_most_two(local_unit: Path) -> None:
    proc = _analyze("security", "--offline=true", f"--threshold={MAX_EXPOSURE_TENTHS}", str(local_unit))
    overall = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
    assert overall, proc.stdout + proc.stderr
    assert proc.returncode == 0, f"exposure {overall.group(1)} > {MAX_EXPOSURE_TENTHS / 10}\n{proc.stdout}"
    assert float(overall.group(1)) <= MAX_EXPOSURE_TENTHS / 10


def test_camera_and_sound_devices_stay_reachable(local_unit: Path) -> None:
    proc = _analyze("security", "--offline=true", "--json=short", str(local_unit))
    assert proc.returncode == 0, proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    allowed = checks["DeviceAllow="]["description"]
    for device in ("char-video4linux:rw", "char-media:rw", "char-dma_heap:rw", "char-alsa:rw"):
        assert device in allowed
    keys = _keys(UNIT.read_text())
    assert keys["Service.SupplementaryGroups"] == ["video audio"]
    assert "Service.PrivateDevices" not in keys  # would hide /dev/video* and /dev/snd
    assert "Service.PrivateUsers" not in keys  # would unmap the video and audio groups


def test_unit_keeps_the_service_contract() -> None:
    keys = _keys(UNIT.read_text())
    assert keys["Service.Type"] == ["notify"]
    assert keys["Service.NotifyAccess"] == ["main"]
    assert keys["Service.ExecStart"] == [f"{INSTALLED_PROGRAM} run --config /etc/hume-edge/config.toml"]
    assert keys["Service.ExecStartPre"] == [f"-{INSTALLED_PROGRAM} check-config /etc/hume-edge/config.toml"]
    assert keys["Service.Restart"] == ["on-failure"]
    assert "78" in keys["Service.RestartPreventExitStatus"][0].split()
    assert keys["Service.WatchdogSec"] == ["30"]
    assert keys["Service.TimeoutStopSec"] == ["20"]
    assert keys["Service.StateDirectory"] == ["hume-edge"]
    assert keys["Service.RuntimeDirectory"] == ["hume-edge"]
    assert keys["Service.ConfigurationDirectory"] == ["hume-edge"]
    assert sorted(keys["Service.LoadCredential"]) == [
        "hume_api_key:/etc/hume-edge/credentials/hume_api_key",
        "mqtt_password:/etc/hume-edge/credentials/mqtt_password",
    ]
    assert keys["Service.User"] == ["hume-edge"]
    assert keys["Service.LimitCORE"] == ["0"]  # a native crash must not dump frames, audio and keys to disk
    assert keys["Install.WantedBy"] == ["multi-user.target"]
