"""Helpers for tests of scripts/install, scripts/uninstall and the Ansible role in a throwaway root prefix.

The prefix holds only what the scripts touch: minimal ``etc/passwd``/``group``/``shadow``/``gshadow`` (the
system user is made with ``useradd --root``), ``etc/hostname`` and ``etc/machine-id``. The scripts run from
a snapshot of this checkout, so edits made meanwhile in the working tree cannot make two runs differ, and a
test can change its own snapshot (a deliberately broken build) without touching the repository.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT_PARTS = ("agent", "hume_emulator", "config", "systemd", "scripts", "requirements")
CHECKOUT_FILES = ("pyproject.toml", "README.md")
INSTALL_TIMEOUT_S = 600

NEEDS_ROOT = [
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="needs root, as a kiosk install does: scripts/install refuses anyone else, and useradd --root "
        "chroots into the prefix (run the suite as root, or sudo scripts/test, to include it)",
    ),
    pytest.mark.skipif(
        not (shutil.which("useradd") and shutil.which("systemctl")), reason="needs useradd and systemctl"
    ),
]
"""The marks of a test that runs scripts/install, scripts/uninstall or the Ansible role."""


def snapshot_checkout(dest: Path) -> Path:
    """A copy of the parts of this checkout the installer reads, at ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in CHECKOUT_FILES:
        shutil.copy2(ROOT / name, dest / name)
    for name in CHECKOUT_PARTS:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def make_prefix(root: Path) -> Path:
    """A root prefix ``scripts/install --root`` accepts, with an image-default host name."""
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\nvideo:x:44:\n")  # no audio group: the installer adds it
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\nvideo:!::\n")
    (etc / "hostname").write_text("raspberrypi\n")  # an image default: not unique in a fleet
    (etc / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    return root


def run(
    args: List[str], stdin: str = "", expect: Optional[int] = 0, env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; assert its exit code unless ``expect`` is None."""
    proc = subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False, env=env
    )
    if expect is not None:
        assert proc.returncode == expect, f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def tree(root: Path) -> Dict[str, Tuple[str, ...]]:
    """Every path under ``root`` -> (mode, owner, content hash or link target).

    Bytecode is compared by name only: a .pyc embeds its source file's mtime, which a reinstall changes.
    """
    found: Dict[str, Tuple[str, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = (oct(st.st_mode), f"{st.st_uid}:{st.st_gid}")
            else:
                digest = "pyc" if name.endswith(".pyc") else hashlib.sha256(path.read_bytes()).hexdigest()
                found[rel] = (oct(st.st_mode), f"{st.st_uid}:{st.st_gid}", digest)
    return found


@pytest.fixture(scope="session")
def offline_pip(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """An environment in which the installer's pip resolves from a local wheelhouse, never the index.

    Each release build is a fresh venv; resolving its dependencies against the package index took about
    40 s a build here, from these wheels about 14 s. Downloaded once per session: the files of this
    checkout's lock (:func:`wheelhouse`), every extra's included. With pytest-xdist the
    workers share one, in the run's common temp directory: the first to ask builds it under a lock, the
    others wait and reuse it.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    wheels = shared / "wheelhouse"
    with open(shared / "wheelhouse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        built = wheels / ".built"
        if not built.exists():
            wheelhouse(wheels)
            built.touch()
    return pip_from(wheels)


def pip_from(wheels: Path) -> Dict[str, str]:
    """The environment that makes pip resolve from ``wheels`` only."""
    return {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}


def wheelhouse(wheels: Path) -> Dict[str, str]:
    """The files of ``requirements/kiosk.lock`` for this Python in ``wheels`` (PyPI's own files, so their
    hashes are the lock's: the installer's ``--require-hashes`` accepts them), and the environment that
    makes pip resolve from them only. PyAudio comes as its sdist, built at install as on a kiosk."""
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--require-hashes",
            "--dest",
            str(wheels),
            "-r",
            str(ROOT / "requirements" / "kiosk.lock"),
        ]
    )
    return pip_from(wheels)
