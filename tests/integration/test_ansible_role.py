"""The Ansible role in deploy/ansible/ with real ``ansible-playbook`` (ansible-core from PyPI, in a venv of
its own, never in the agent's) against a throwaway install root on this machine (local connection).

The example playbook (``site.yml``: staged with ``serial``) runs as shipped; the test supplies only an
inventory whose host points the role at the root prefix, and a vault file, really encrypted with
``ansible-vault``, holding the API key. Proven: a first run installs, a second run changes nothing
(``changed=0``), ``--check`` runs and changes nothing, an upgrade from a newer checkout switches release.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from tests.support.install import NEEDS_ROOT, ROOT, make_prefix, run, snapshot_checkout

pytestmark = [
    pytest.mark.slow,
    *NEEDS_ROOT,
]

PLAYBOOK = ROOT / "deploy/ansible/site.yml"
ANSIBLE_VENV = ROOT / ".venv-ansible"
ANSIBLE_CORE = "ansible-core>=2.15,<3"
API_KEY = "vaulted-test-key"


@pytest.fixture(scope="session")
def ansible_bin() -> Path:
    """``ansible-core`` in ``.venv-ansible`` (made on first use, about 15 s), apart from the agent's venv."""
    bin_dir = ANSIBLE_VENV / "bin"
    if not (bin_dir / "ansible-playbook").exists():
        run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)])
        run([str(bin_dir / "python"), "-m", "pip", "install", "-q", ANSIBLE_CORE])
    return bin_dir


class Play:
    """``ansible-playbook site.yml`` against one local "kiosk" whose root is a prefix."""

    def __init__(self, ansible_bin: Path, workdir: Path, prefix: Path, env: Dict[str, str]) -> None:
        self.bin = ansible_bin
        self.workdir = workdir
        self.inventory = workdir / "inventory.yml"
        self.password = workdir / "vault-password"
        self.password.write_text("test-vault-password\n")
        vault = workdir / "group_vars/kiosks/vault.yml"
        vault.parent.mkdir(parents=True)
        vault.write_text(f"vault_hume_edge_api_key: {API_KEY}\n")
        run([str(ansible_bin / "ansible-vault"), "encrypt", "--vault-password-file", str(self.password),
             str(vault)])  # fmt: skip
        assert vault.read_text().startswith("$ANSIBLE_VAULT;")
        self.host = {
            "ansible_connection": "local",
            "ansible_python_interpreter": str(ansible_bin / "python"),
            "ansible_become": False,  # already root; the play asks for become as it would on a kiosk
            "hume_edge_root": str(prefix),
            "hume_edge_src_dest": "/opt/hume-edge-src",
            "hume_edge_extras": "",
            "hume_edge_pack_dir": str(workdir),
            "hume_edge_install_environment": {k: env[k] for k in ("PIP_NO_INDEX", "PIP_FIND_LINKS")},
        }
        self.env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "0"}

    def __call__(self, src: Path, *extra: str) -> Dict[str, int]:
        """Run the playbook from checkout ``src``; the recap of the one host (ok, changed, failed, ...)."""
        host = {**self.host, "hume_edge_src": str(src)}
        self.inventory.write_text(json.dumps({"kiosks": {"hosts": {"kiosk-test": host}}}))
        args: List[str] = [str(self.bin / "ansible-playbook"), "-i", str(self.inventory), str(PLAYBOOK),
                           "--vault-password-file", str(self.password), *extra]  # fmt: skip
        proc = run(args, env=self.env)
        recap = re.search(r"kiosk-test\s*:\s*(.*)$", proc.stdout, re.MULTILINE)
        assert recap, proc.stdout
        self.last_output = proc.stdout
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap.group(1))}


@pytest.fixture(scope="module")
def play(ansible_bin: Path, tmp_path_factory: pytest.TempPathFactory, offline_pip: Dict[str, str]) -> Play:
    prefix = make_prefix(tmp_path_factory.mktemp("root"))
    return Play(ansible_bin, tmp_path_factory.mktemp("ansible"), prefix, offline_pip)


def test_role_installs_then_changes_nothing_then_checks_then_upgrades(play: Play, tmp_path: Path) -> None:
    prefix = Path(play.host["hume_edge_root"])
    v1 = snapshot_checkout(tmp_path / "v1")

    first = play(v1)
    assert first["failed"] == 0
    assert first["changed"] > 0
    key = prefix / "etc/hume-edge/credentials/hume_api_key"
    assert key.read_text() == f"{API_KEY}\n"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert API_KEY not in play.last_output  # no_log: the key never reaches the output
    release = os.readlink(prefix / "opt/hume-edge/venv")
    assert release.startswith("releases/0.1.0-")

    second = play(v1)
    assert (second["changed"], second["failed"]) == (0, 0), play.last_output
    assert "install: no change" in play.last_output

    newer = snapshot_checkout(tmp_path / "v2")
    pyproject = newer / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"', 'version = "0.1.1"', 1))

    check = play(newer, "--check")
    assert check["failed"] == 0
    assert check["changed"] > 0  # the sources would change ...
    assert os.readlink(prefix / "opt/hume-edge/venv") == release  # ... but --check changed nothing

    upgrade = play(newer)
    assert (upgrade["failed"], upgrade["changed"] > 0) == (0, True)
    assert os.readlink(prefix / "opt/hume-edge/venv").startswith("releases/0.1.1-")
    assert os.readlink(prefix / "opt/hume-edge/previous") == release
