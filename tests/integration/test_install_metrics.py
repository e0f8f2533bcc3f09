"""``scripts/install`` turns the metrics textfile on where node_exporter is installed, and only there.

In a throwaway root prefix with Debian's node_exporter directory (``/var/lib/prometheus/node-exporter``)
the first install writes ``[metrics] textfile_dir`` into the config, lets the hardened unit write there (a
drop-in's ``ReadWritePaths=``) and gives the service's group write access to the directory; a second run
changes nothing; ``scripts/uninstall`` removes the drop-in. Without the directory, nothing of it appears.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Dict

import pytest

from agent import config as config_mod
from tests.support.install import NEEDS_ROOT, make_prefix, run, snapshot_checkout

pytestmark = [pytest.mark.slow, *NEEDS_ROOT]

TEXTFILE = "var/lib/prometheus/node-exporter"
DROPIN = "etc/systemd/system/hume-edge.service.d/metrics-textfile.conf"


def _install(checkout: Path, root: Path, env: Dict[str, str], *extra: str) -> str:
    args = [str(checkout / "scripts/install"), "--root", str(root), "--extras", "", *extra]
    return run(args, env=env).stderr


def test_node_exporter_directory_turns_the_textfile_on(tmp_path: Path, offline_pip: Dict[str, str]) -> None:
    checkout = snapshot_checkout(tmp_path / "checkout")
    key = tmp_path / "key"
    key.write_text("test-key\n")
    root = make_prefix(tmp_path / "root")
    (root / TEXTFILE).mkdir(parents=True, mode=0o755)

    err = _install(checkout, root, offline_pip, "--api-key-file", str(key))
    assert 'metrics.textfile_dir = "/var/lib/prometheus/node-exporter"' in err
    cfg = config_mod.load(root / "etc/hume-edge/config.toml", environ={"HUME_API_KEY": "k"})
    assert cfg.metrics.textfile_dir == "/var/lib/prometheus/node-exporter"
    assert cfg.metrics.listen == ""  # no port unless asked
    dropin = (root / DROPIN).read_text()
    assert "ReadWritePaths=/var/lib/prometheus/node-exporter\n" in dropin
    groups = (root / "etc/group").read_text().splitlines()
    gid = int(next(line for line in groups if line.startswith("hume-edge:")).split(":")[2])
    info = os.stat(root / TEXTFILE)
    assert info.st_gid == gid
    assert info.st_mode & stat.S_IWGRP
    assert stat.S_IMODE(info.st_mode) & 0o7757 == 0o755  # owner and others as node_exporter left them

    again = _install(checkout, root, offline_pip)
    assert again.splitlines()[-1].startswith("install: no change"), again

    run([str(checkout / "scripts/uninstall"), "--root", str(root)])
    assert not (root / DROPIN).exists()


def test_without_node_exporter_nothing_is_turned_on(tmp_path: Path, offline_pip: Dict[str, str]) -> None:
    checkout = snapshot_checkout(tmp_path / "checkout")
    key = tmp_path / "key"
    key.write_text("test-key\n")
    root = make_prefix(tmp_path / "root")
    err = _install(checkout, root, offline_pip, "--api-key-file", str(key))
    assert "textfile" not in err
    cfg = config_mod.load(root / "etc/hume-edge/config.toml", environ={"HUME_API_KEY": "k"})
    assert cfg.metrics.textfile_dir == ""
    assert not (root / DROPIN).exists()
