"""check-config and run agree: every config ``run`` refuses, ``check-config`` refuses, same exit, same words.

The unit's ``ExecStartPre=hume-edge check-config`` is only a guide if it refuses what ``run`` would. Each
row is a real ``hume-edge`` process of each command on the same file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from agent.errors import EX_CONFIG

HUME_EDGE = str(Path(sys.executable).parent / "hume-edge")
REAL = '[camera]\nsource = "opencv"\n[microphone]\nsource = "pyaudio"\n'
KEY = '[hume]\napi_key = "k"\n'

CASES: Dict[str, tuple] = {  # name: (config text, words every refusal line must contain)
    "missing key": (REAL, ["hume.api_key: no Hume API key"]),
    "plaintext remote v1 url": (
        KEY + '[hume.v1]\nurl = "ws://hume.example.com"\n' + REAL,
        ["hume.v1.url = 'ws://hume.example.com': plaintext to hume.example.com"],
    ),
    "plaintext remote v0 url": (
        '[hume]\napi_key = "k"\nbackend = "v0"\n[hume.v0]\nurl = "http://10.1.2.3/v0/stream/models"\n' + REAL,
        ["hume.v0.url = 'http://10.1.2.3/v0/stream/models': plaintext to 10.1.2.3"],
    ),
    "synthetic source, remote endpoint": (
        KEY + '[camera]\nsource = "synthetic"\n[microphone]\nsource = "speech"\n',
        [
            "camera.source = 'synthetic': test media would stream to Hume at api.cloud.hume.ai",
            "microphone.source = 'speech': test media would stream",
            "hume.allow_test_sources = true",
        ],
    ),
    "video file, remote endpoint": (
        KEY + '[camera]\nsource = "opencv"\ndevice = "/tmp/clip.mp4"\n[microphone]\nsource = "none"\n',
        ["camera.device = '/tmp/clip.mp4' (a video file): test media would stream"],
    ),
    "a key in the url": (
        '[hume]\napi_key = "k"\nbackend = "v0"\n[hume.v0]\nurl = "wss://api.hume.ai/v0/stream/models?apikey=sk-123"\n'
        + REAL,
        [
            "hume.v0.url = 'wss://api.hume.ai/v0/stream/models?********': may carry a secret in a query "
            "parameter ('apikey')",
            "hume.api_key, $HUME_API_KEY or the hume_api_key credential",
        ],
    ),
    # A name blocklist let these through, and printed them (#31): found by parsing now.
    "a percent-encoded key name": (
        KEY + '[hume.v1]\nurl = "wss://api.hume.ai/v1?api%6Bey=sk-123"\n' + REAL,
        ["hume.v1.url = 'wss://api.hume.ai/v1?********': may carry a secret in a query parameter ('apikey')"],
    ),
    "a key in the user info": (
        KEY + '[hume.v1]\nurl = "wss://user:sk-123@api.hume.ai"\n' + REAL,
        ["hume.v1.url = 'wss://********@api.hume.ai': may carry a secret in user info"],
    ),
    "a key in a path parameter": (
        KEY + '[hume.v1]\nurl = "wss://api.hume.ai/v1;apikey=sk-123"\n' + REAL,
        ["hume.v1.url = 'wss://api.hume.ai/v1;********': may carry a secret in a path parameter ('apikey')"],
    ),
    "a key in the fragment": (
        KEY + '[hume.v1]\nurl = "wss://api.hume.ai/v1#apikey=sk-123"\n' + REAL,
        [
            "hume.v1.url = 'wss://api.hume.ai/v1#********': "
            "may carry a secret in a fragment parameter ('apikey')"
        ],
    ),
    "a bare token as the query": (
        KEY + '[hume.v1]\nurl = "wss://api.hume.ai/v1?sk-123"\n' + REAL,
        [
            "hume.v1.url = 'wss://api.hume.ai/v1?********': "
            "may carry a secret in a query parameter (unnamed here)"
        ],
    ),
    "a remote broker without TLS": (
        KEY + REAL + '[mqtt]\nhost = "broker.example"\nusername = "kiosk-1"\npassword = "pw"\n',
        ["mqtt.host = 'broker.example' is not on this machine and mqtt.tls = false", "mqtt.allow_plaintext"],
    ),
    "old flat v0 and v1 keys": (
        '[hume]\napi_key = "k"\nurl = "wss://x"\nv1_url = "wss://y"\nbackoff_max_s = 3\n' + REAL,
        [
            "hume.url: moved to hume.v0.url (key 'url' in a [hume.v0] table)",
            "hume.v1_url: moved to hume.v1.url (key 'url' in a [hume.v1] table)",
            "hume.backoff_max_s: moved to hume.v0.backoff_max_s",
        ],
    ),
}


def _problems(text: str) -> List[str]:
    return sorted(line.strip() for line in text.splitlines() if line.strip().startswith("- "))


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_config_and_run_refuse_alike(name: str, tmp_path: Path) -> None:
    text, expected = CASES[name]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[outbox]\npath = "{tmp_path / "o.sqlite"}"\n' + text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("HUME_API_KEY", "CREDENTIALS_DIRECTORY")}
    env["RUNTIME_DIRECTORY"] = str(tmp_path)
    out = {}
    for argv in (["check-config", str(cfg)], ["run", "--config", str(cfg)]):
        proc = subprocess.run(
            [HUME_EDGE, *argv], check=False, capture_output=True, text=True, timeout=60, env=env
        )
        assert proc.returncode == EX_CONFIG, (argv, proc.stdout, proc.stderr)
        out[argv[0]] = _problems(proc.stderr)
    assert out["check-config"] == out["run"], out
    joined = "\n".join(out["run"])
    assert "sk-123" not in joined
    for words in expected:
        assert words in joined, joined


def test_loopback_emulator_and_allow_key_accept_test_media(tmp_path: Path) -> None:
    """The demo's way (loopback emulator) and the documented opt-in both pass check-config."""
    synthetic = '[camera]\nsource = "synthetic"\n[microphone]\nsource = "speech"\n'
    env = dict(os.environ, HUME_API_KEY="k")
    for extra in ('[hume.v1]\nurl = "ws://127.0.0.1:8765"\n', "[hume]\nallow_test_sources = true\n"):
        cfg = tmp_path / "c.toml"
        cfg.write_text(extra + synthetic, encoding="utf-8")
        proc = subprocess.run(
            [HUME_EDGE, "check-config", str(cfg)], check=False, capture_output=True, text=True, env=env
        )
        assert proc.returncode == 0, proc.stderr


def test_a_cameras_device_node_is_a_camera_and_a_file_under_dev_is_not(tmp_path: Path) -> None:
    """``camera.device = "/dev/video0"`` (how Linux names a camera, plugged in or not) passes check-config
    against Hume's live API; a regular file under /dev/ is still test media (issue #30)."""
    env = dict(os.environ, HUME_API_KEY="k")
    shm = Path("/dev/shm")
    clip = shm / f"hume-edge-test-{os.getpid()}.mp4" if shm.is_dir() else None
    try:
        cases = [("/dev/video0", 0), ("/dev/v4l/by-id/usb-Cam-video-index0", 0), ("0", 0)]
        if clip is not None:
            clip.write_bytes(b"not a camera")
            cases.append((str(clip), EX_CONFIG))
        cases.append(("/dev/../tmp/clip.mp4", EX_CONFIG))
        for device, code in cases:
            cfg = tmp_path / "c.toml"
            cfg.write_text(f'[camera]\nsource = "opencv"\ndevice = "{device}"\n', encoding="utf-8")
            proc = subprocess.run(
                [HUME_EDGE, "check-config", str(cfg)], check=False, capture_output=True, text=True, env=env
            )
            assert proc.returncode == code, (device, proc.stderr)
            if code:
                assert f"camera.device = {device!r} (a video file)" in proc.stderr
    finally:
        if clip is not None:
            clip.unlink(missing_ok=True)
