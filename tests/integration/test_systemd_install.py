"""scripts/install and scripts/uninstall in a throwaway root prefix (tests/support/install.py).

The unit is enabled offline with ``systemctl --root``; nothing is started.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Dict

import pytest

from tests.support.install import NEEDS_ROOT, make_prefix, snapshot_checkout
from tests.support.install import run as _run
from tests.support.install import tree as _tree

VENV_PYTHON = "opt/hume-edge/venv/bin/python"

pytestmark = [
    *NEEDS_ROOT,
]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_checkout(tmp_path_factory.mktemp("checkout"))


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_prefix(tmp_path_factory.mktemp("root"))


@pytest.fixture(scope="module")
def installed(
    checkout: Path, prefix: Path, tmp_path_factory: pytest.TempPathFactory, offline_pip: Dict[str, str]
) -> Path:
    key = tmp_path_factory.mktemp("secrets") / "key"
    key.write_text("test-key\n")
    _run(
        [
            str(checkout / "scripts/install"),
            "--root",
            str(prefix),
            "--api-key-file",
            str(key),
            "--extras",
            "",
        ],
        env=offline_pip,
    )
    return prefix


def test_second_install_leaves_an_identical_tree(checkout: Path, installed: Path) -> None:
    before = _tree(installed)
    _run([str(checkout / "scripts/install"), "--root", str(installed), "--extras", ""])
    after = _tree(installed)
    assert sorted(after) == sorted(before)
    assert {k: v for k, v in after.items() if before[k] != v} == {}


def test_install_lays_out_user_venv_config_credentials_and_enabled_unit(
    checkout: Path, installed: Path
) -> None:
    passwd = (installed / "etc/passwd").read_text()
    assert any(
        line.startswith("hume-edge:") and line.endswith(":/usr/sbin/nologin") for line in passwd.splitlines()
    )
    assert "\naudio:" in (installed / "etc/group").read_text()
    config = installed / "etc/hume-edge/config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    device_lines = [line for line in config.read_text().splitlines() if line.startswith("device_id")]
    assert len(device_lines) == 1
    assert device_lines[0].startswith('device_id = "kiosk-')  # hashed machine id, not "raspberrypi"
    cred = installed / "etc/hume-edge/credentials"
    assert stat.S_IMODE(cred.stat().st_mode) == 0o700
    assert (cred / "hume_api_key").read_text() == "test-key\n"
    assert (cred / "mqtt_password").read_text() == ""  # LoadCredential= needs the file to exist
    for secret in cred.iterdir():
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert (secret.stat().st_uid, secret.stat().st_gid) == (0, 0)
    unit = installed / "etc/systemd/system/hume-edge.service"
    assert unit.read_text() == (checkout / "systemd/hume-edge.service").read_text()
    wants = installed / "etc/systemd/system/multi-user.target.wants/hume-edge.service"
    assert os.readlink(wants) == "/etc/systemd/system/hume-edge.service"
    assert os.readlink(installed / "usr/local/bin/hume-edge") == "/opt/hume-edge/venv/bin/hume-edge"
    # The installed package loads the installed config (the unit's ExecStart on a real system).
    check = "import sys; from agent import config; print(config.load(sys.argv[1]).device_id)"
    out = _run([str(installed / VENV_PYTHON), "-c", check, str(config)]).stdout.strip()
    assert device_lines[0] == f'device_id = "{out}"'


def test_upgrade_keeps_the_config_and_applies_explicit_flags(checkout: Path, installed: Path) -> None:
    config = installed / "etc/hume-edge/config.toml"
    # A remote broker on a trusted network: plaintext there must be said (check-config refuses it otherwise).
    edited = (
        config.read_text()
        .replace('host = "localhost"', 'host = "broker.example"')
        .replace("allow_plaintext = false", "allow_plaintext = true")
    )
    assert "allow_plaintext = true" in edited
    config.write_text(edited)
    _run(
        [
            str(checkout / "scripts/install"),
            "--root",
            str(installed),
            "--extras",
            "",
            "--device-id",
            "lobby-2",
            "--api-key-file",
            "-",
        ],
        stdin="rotated-key\n",
    )
    expected = [
        'device_id = "lobby-2"' if line.startswith("device_id") else line for line in edited.splitlines()
    ]
    assert config.read_text().splitlines() == expected
    assert (installed / "etc/hume-edge/credentials/hume_api_key").read_text() == "rotated-key\n"


def test_bad_device_id_is_refused_naming_what_is_allowed(checkout: Path, installed: Path) -> None:
    proc = subprocess.run(
        [str(checkout / "scripts/install"), "--root", str(installed), "--device-id", "lobby/2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "--device-id 'lobby/2'" in proc.stderr
    assert "letters, digits" in proc.stderr


@pytest.mark.slow
def test_venv_sees_system_packages_only_where_apt_installed_picamera2(
    checkout: Path, installed: Path, offline_pip: Dict[str, str]
) -> None:
    """Raspberry Pi OS ships picamera2/libcamera only through apt: the venv must then see dist-packages."""
    picamera2 = installed / "usr/lib/python3/dist-packages/picamera2"
    cfg = installed / "opt/hume-edge/venv/pyvenv.cfg"
    picamera2.mkdir(parents=True)
    try:
        _run([str(checkout / "scripts/install"), "--root", str(installed), "--extras", ""], env=offline_pip)
        assert "include-system-site-packages = true" in cfg.read_text().splitlines()
    finally:
        shutil.rmtree(installed / "usr/lib")
    _run([str(checkout / "scripts/install"), "--root", str(installed), "--extras", ""], env=offline_pip)
    assert "include-system-site-packages = false" in cfg.read_text().splitlines()


def test_uninstall_keeps_config_and_state_unless_purged(checkout: Path, installed: Path) -> None:
    (installed / "var/lib/hume-edge").mkdir(parents=True)
    (installed / "var/lib/hume-edge/outbox.sqlite").write_bytes(b"")
    for _ in range(2):  # idempotent
        _run([str(checkout / "scripts/uninstall"), "--root", str(installed)])
        assert not (installed / "etc/systemd/system/hume-edge.service").exists()
        assert not (installed / "etc/systemd/system/multi-user.target.wants/hume-edge.service").is_symlink()
        assert not (installed / "opt/hume-edge").exists()
        assert not (installed / "usr/local/bin/hume-edge").is_symlink()
        assert (installed / "etc/hume-edge/config.toml").exists()
        assert (installed / "etc/hume-edge/credentials/hume_api_key").exists()
        assert (installed / "var/lib/hume-edge/outbox.sqlite").exists()
        assert "\nhume-edge:" in (installed / "etc/passwd").read_text()
    for _ in range(2):
        _run([str(checkout / "scripts/uninstall"), "--root", str(installed), "--purge"])
        assert not (installed / "etc/hume-edge").exists()
        assert not (installed / "var/lib/hume-edge").exists()
        assert "hume-edge:" not in (installed / "etc/passwd").read_text()
        assert "hume-edge:" not in (installed / "etc/group").read_text()
