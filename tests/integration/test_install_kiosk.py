"""A kiosk install carries what a kiosk runs: real devices in its config, no demo-only dependency.

``scripts/install --root DIR`` with its default extras (vision, audio), resolved from a local wheelhouse
built from this checkout's kiosk dependencies: the config it writes names a real camera and microphone
(no synthetic face or voice) and Hume's live v1 API; the venv has OpenCV but neither scikit-image nor
SciPy; the installer prints the release's size.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent import config as config_mod
from tests.support.install import NEEDS_ROOT, make_prefix, run, snapshot_checkout, wheelhouse

pytestmark = [pytest.mark.slow, *NEEDS_ROOT]


@pytest.fixture(scope="module")
def kiosk_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return wheelhouse(tmp_path_factory.mktemp("kiosk-wheelhouse"), "vision,audio")


def test_kiosk_install_writes_real_devices_and_no_demo_dependency(tmp_path: Path, kiosk_wheels: dict) -> None:
    root = make_prefix(tmp_path / "root")
    checkout = snapshot_checkout(tmp_path / "checkout")
    key = tmp_path / "key"
    key.write_text("test-key\n")
    done = run(
        [str(checkout / "scripts/install"), "--root", str(root), "--api-key-file", str(key)], env=kiosk_wheels
    )

    size = re.search(r"^install: release \S+ is (\d+) MB \(extras: vision,audio\)$", done.stderr, re.M)
    assert size, done.stderr
    print(f"kiosk release: {size.group(1)} MB")

    cfg = config_mod.load(root / "etc/hume-edge/config.toml", environ={"HUME_API_KEY": "k"})
    assert (cfg.camera.source, cfg.camera.device) == ("opencv", "0")  # no picamera2 on this machine
    assert cfg.microphone.source == "pyaudio"
    assert cfg.hume.backend == "v1"
    assert cfg.hume.url == "wss://api.cloud.hume.ai"
    assert config_mod.run_problems(cfg) == []

    site = next((root / "opt/hume-edge/venv/lib").glob("python3*/site-packages"))
    installed = {p.name.lower() for p in site.iterdir()}
    assert "cv2" in installed
    assert not {"skimage", "scipy", "networkx", "imageio", "tifffile"} & installed, sorted(installed)
