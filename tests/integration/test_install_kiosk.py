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
    return wheelhouse(tmp_path_factory.mktemp("kiosk-wheelhouse"))


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


DISTRO_PYTHON = "/usr/bin/python3"
DISTRO_PACKAGES = "/usr/lib/python3/dist-packages/"


def _distro_has(*modules: str) -> bool:
    """Whether the distribution's own Python imports each module from its dist-packages."""
    probe = "import os, sys\nfor m in sys.argv[1:]: print(os.path.realpath(__import__(m).__file__))"
    if not Path(DISTRO_PYTHON).exists():
        return False
    done = run([DISTRO_PYTHON, "-s", "-c", probe, *modules], expect=None)
    return done.returncode == 0 and all(line.startswith(DISTRO_PACKAGES) for line in done.stdout.split())


def _install(tmp_path: Path, wheels: dict, *flags: str) -> tuple:
    """Install with the distribution's python3 first on PATH, as on a kiosk; (stderr, where the release's
    Python imports numpy and cv2 from, its size in MB)."""
    root = make_prefix(tmp_path / "root")
    checkout = snapshot_checkout(tmp_path / "checkout")
    key = tmp_path / "key"
    key.write_text("test-key\n")
    env = {**wheels, "PATH": f"/usr/bin:/bin:{wheels['PATH']}"}
    done = run(
        [str(checkout / "scripts/install"), "--root", str(root), "--api-key-file", str(key), *flags], env=env
    )
    size = re.search(r"^install: release \S+ is (\d+) MB", done.stderr, re.M)
    assert size, done.stderr
    python = root / "opt/hume-edge/venv/bin/python"
    where = run([str(python), "-I", "-c", "import numpy, cv2; print(numpy.__file__); print(cv2.__file__)"])
    return done.stderr, where.stdout.split(), int(size.group(1))


@pytest.mark.skipif(
    not _distro_has("numpy", "cv2", "pyaudio"),
    reason="needs Debian's python3-numpy, python3-opencv (with opencv-data) and python3-pyaudio: "
    "scripts/setup --dev installs them",
)
def test_kiosk_install_takes_opencv_numpy_and_pyaudio_from_the_distribution(
    tmp_path: Path, kiosk_wheels: dict
) -> None:
    """A release then carries only the agent and its pure-Python dependencies (goal: <= 60 MB)."""
    stderr, where, size_mb = _install(tmp_path, kiosk_wheels)
    print(f"kiosk release with the distribution's packages: {size_mb} MB")
    taken = re.search(r"^install: from the distribution: numpy \S+, pyaudio \S+, cv2 \S+", stderr, re.M)
    assert taken, stderr
    assert all(path.startswith(DISTRO_PACKAGES) for path in where), where
    assert size_mb <= 60
    site = next((tmp_path / "root/opt/hume-edge/venv/lib").glob("python3*/site-packages"))
    installed = {p.name.lower() for p in site.iterdir()}
    assert not {"numpy", "cv2", "pyaudio"} & installed, sorted(installed)
    assert "simplejpeg" in installed  # the vision extra's encoder, without its OpenCV wheel


@pytest.mark.skipif(not Path(DISTRO_PYTHON).exists(), reason="needs the distribution's python3")
def test_kiosk_install_falls_back_to_wheels(tmp_path: Path, kiosk_wheels: dict) -> None:
    """--wheels-only (and any machine without the distribution's packages) installs PyPI's wheels."""
    stderr, where, size_mb = _install(tmp_path, kiosk_wheels, "--wheels-only")
    print(f"kiosk release with wheels: {size_mb} MB")
    assert "from the distribution" not in stderr
    assert not any(path.startswith(DISTRO_PACKAGES) for path in where), where
