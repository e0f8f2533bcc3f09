"""Safe upgrades: a release that does not import or refuses the config is never switched to; a good one is.

Each test builds a release from its own modified snapshot of the checkout (tests/support/install.py) into one
shared root prefix, so the broken builds meet a real installed release and must leave it in use. A build is
a fresh venv plus pip (about 30 s here), hence ``slow``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Callable, Dict

import pytest

from tests.support.install import NEEDS_ROOT, make_prefix, run, snapshot_checkout

pytestmark = [
    pytest.mark.slow,
    *NEEDS_ROOT,
]

OPT = "opt/hume-edge"


def _link(root: Path, name: str) -> str:
    return os.readlink(root / OPT / name)


def _installed_version(root: Path) -> str:
    return run([str(root / OPT / "venv/bin/hume-edge"), "--version"]).stdout.split()[-1]


Installer = Callable[..., str]


@pytest.fixture(scope="module")
def install(offline_pip: Dict[str, str]) -> Installer:
    """``install(checkout, root, *flags, expect=0)``: run that checkout's installer; its stderr."""

    def run_installer(checkout: Path, root: Path, *extra: str, expect: int = 0) -> str:
        args = [str(checkout / "scripts/install"), "--root", str(root), "--extras", "", *extra]
        return run(args, expect=expect, env=offline_pip).stderr

    return run_installer


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, install: Installer) -> Path:
    root = make_prefix(tmp_path_factory.mktemp("root"))
    checkout = snapshot_checkout(tmp_path_factory.mktemp("v1"))
    key = tmp_path_factory.mktemp("secrets") / "key"
    key.write_text("test-key\n")
    err = install(checkout, root, "--api-key-file", str(key))
    assert err.splitlines()[-1].startswith("install: changed (release ")
    assert (
        install(checkout, root).splitlines()[-1] == f"install: no change (release {_link(root, 'venv')[9:]})"
    )
    return root


def _variant(tmp_path: Path, path: str, old: str, new: str) -> Path:
    """A snapshot of the checkout with one edit in ``path``."""
    checkout = snapshot_checkout(tmp_path / "checkout")
    target = checkout / path
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    return checkout


def test_a_build_that_does_not_import_is_refused_and_the_running_release_stays(
    installed: Path, install: Installer, tmp_path: Path
) -> None:
    before = _link(installed, "venv")
    broken = _variant(
        tmp_path, "agent/service.py", "from __future__ import annotations\n",
        "from __future__ import annotations\nraise ImportError('deliberately broken build')\n",
    )  # fmt: skip
    err = install(broken, installed, expect=1)
    last = err.splitlines()[-1]
    assert re.match(
        r"install: upgrade to 0\.1\.0-[0-9a-f]{10} refused: its agent does not import \(", last
    ), err
    assert "ImportError: deliberately broken build" in last
    assert last.endswith(f"release {before[9:]} stays in use")
    assert _link(installed, "venv") == before
    assert sorted(p.name for p in (installed / OPT / "releases").iterdir()) == [before[9:]]  # broken one gone
    run(
        [
            str(installed / OPT / "venv/bin/hume-edge"),
            "check-config",
            str(installed / "etc/hume-edge/config.toml"),
        ],
        env={**os.environ, "CREDENTIALS_DIRECTORY": str(installed / "etc/hume-edge/credentials")},
    )


def test_a_build_that_refuses_the_config_is_refused_with_the_problem(
    installed: Path, install: Installer, tmp_path: Path
) -> None:
    before = _link(installed, "venv")
    stricter = _variant(
        tmp_path, "agent/config/schema.py",
        'port: int = setting(1883, "broker port", min=1, max=65535)',
        'port: int = setting(883, "broker port", min=1, max=1000)',
    )  # fmt: skip
    err = install(stricter, installed, expect=1)
    last = err.splitlines()[-1]
    assert (
        "refused: its check-config refuses /etc/hume-edge/config.toml (mqtt.port = 1883: must be" in last
    ), err
    assert "mqtt.port = 1883: must be between 1 and 1000" in err
    assert _link(installed, "venv") == before


def test_a_good_upgrade_is_kept_and_rollback_returns_to_the_previous_release(
    installed: Path, install: Installer, tmp_path: Path
) -> None:
    before = _link(installed, "venv")
    newer = _variant(tmp_path, "pyproject.toml", 'version = "0.1.0"', 'version = "0.1.1"')
    err = install(newer, installed)
    after = _link(installed, "venv")
    assert after.startswith("releases/0.1.1-")
    assert f"switched to release {after[9:]} (previous: {before[9:]}, kept for --rollback)" in err
    assert _link(installed, "previous") == before
    assert _installed_version(installed) == "0.1.1"
    assert os.readlink(installed / "usr/local/bin/hume-edge") == "/opt/hume-edge/venv/bin/hume-edge"
    assert install(newer, installed).splitlines()[-1] == f"install: no change (release {after[9:]})"

    err = install(newer, installed, "--rollback")
    assert f"rolled back to release {before[9:]} (the previous one is now {after[9:]})" in err
    assert (_link(installed, "venv"), _link(installed, "previous")) == (before, after)
    assert _installed_version(installed) == "0.1.0"
    # Installing the newer checkout again is a switch, not a rebuild: its release was kept.
    err = install(newer, installed)
    assert "building release" not in err
    assert _link(installed, "venv") == after


def test_an_install_from_before_releases_becomes_the_rollback_target(
    install: Installer, tmp_path: Path
) -> None:
    """Every kiosk installed before releases existed has a plain venv at /opt/hume-edge/venv."""
    root = make_prefix(tmp_path / "root")
    checkout = snapshot_checkout(tmp_path / "checkout")
    key = tmp_path / "key"
    key.write_text("test-key\n")
    legacy_venv = root / OPT / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(legacy_venv)])
    unit = root / "etc/systemd/system/hume-edge.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("# the unit of the earlier install\n")

    err = install(checkout, root, "--api-key-file", str(key))
    legacy = _link(root, "previous")
    assert re.fullmatch(r"releases/legacy-\d{14}", legacy), err
    assert f"the existing venv is now release {legacy[9:]} (the rollback target)" in err
    assert _link(root, "venv").startswith("releases/0.1.0-")
    assert unit.read_text() == (checkout / "systemd/hume-edge.service").read_text()

    err = install(checkout, root, "--rollback")
    assert _link(root, "venv") == legacy
    assert unit.read_text() == "# the unit of the earlier install\n"  # its own unit came back with it
    # The old venv's scripts name /opt/hume-edge/venv/bin/python, which resolves through the symlink again.
    out = run([str(root / OPT / "venv/bin/python"), "-c", "import sys; print(sys.prefix)"]).stdout.strip()
    assert out == str(root / OPT / "venv")
