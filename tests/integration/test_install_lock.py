"""Kiosk installs take exactly the locked files: a substituted package is refused (#31).

Before, ``scripts/install`` resolved unpinned ranges (``aiohttp>=3.9,<4``) from whatever index or mirror it
reached, so a tampered or newer file was installed as it came. Now every dependency is pinned in
``requirements/kiosk.lock`` with its sha256 and installed with ``--require-hashes``: here the wheelhouse the
installer resolves from holds a paho-mqtt wheel with one byte changed (still a valid wheel: its zip comment),
and the install fails naming the hash mismatch, switching nothing. ``--extras`` outside the lock is refused
before anything is built.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict

import pytest

from tests.support.install import NEEDS_ROOT, make_prefix, pip_from, run, snapshot_checkout

pytestmark = [pytest.mark.slow, *NEEDS_ROOT]


def test_a_substituted_wheel_is_refused(tmp_path: Path, offline_pip: Dict[str, str]) -> None:
    wheels = tmp_path / "wheels"
    shutil.copytree(offline_pip["PIP_FIND_LINKS"], wheels)
    (paho,) = wheels.glob("paho_mqtt-*.whl")
    data = bytearray(paho.read_bytes())
    assert data[-2:] == b"\x00\x00", "expected an empty zip comment at the end"
    paho.write_bytes(bytes(data[:-2]) + b"\x01\x00x")  # a one-byte zip comment: still a valid wheel
    checkout = snapshot_checkout(tmp_path / "checkout")
    key = tmp_path / "key"
    key.write_text("test-key\n")
    root = make_prefix(tmp_path / "root")
    args = [
        str(checkout / "scripts/install"),
        "--root",
        str(root),
        "--extras",
        "",
        "--api-key-file",
        str(key),
    ]
    done = run(args, expect=None, env=pip_from(wheels))
    assert done.returncode != 0, done.stderr[-3000:]
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in done.stderr, done.stderr[-3000:]
    assert not (root / "opt/hume-edge/venv").exists(), "a release was switched to"


def test_extras_outside_the_lock_are_refused(tmp_path: Path) -> None:
    checkout = snapshot_checkout(tmp_path / "checkout")
    root = make_prefix(tmp_path / "root")
    done = run(
        [str(checkout / "scripts/install"), "--root", str(root), "--extras", "vision,demo"], expect=None
    )
    assert done.returncode != 0
    assert "demo is not in requirements/kiosk.lock (locked: vision audio gpio)" in done.stderr
