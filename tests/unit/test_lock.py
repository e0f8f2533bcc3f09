"""requirements/kiosk.lock covers what pyproject.toml asks for on a kiosk (no network: the names and ranges).

scripts/install installs the lock with ``--no-deps``: a dependency added to pyproject.toml but not locked
would be missing on every kiosk, and a range the lock's pin no longer satisfies would install a version the
agent was not written for. ``scripts/lock`` fixes either (``scripts/lock --check`` tells, with PyPI).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Dict, List

from packaging.markers import default_environment
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
LOCKED_EXTRAS = ("vision", "audio", "gpio")
"""What scripts/install accepts (its LOCKED_EXTRAS)."""


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def locked() -> Dict[str, List[Requirement]]:
    pins: Dict[str, List[Requirement]] = {}
    for line in (ROOT / "requirements" / "kiosk.lock").read_text(encoding="utf-8").splitlines():
        if re.match(r"^[A-Za-z0-9]", line):
            req = Requirement(line.rstrip(" \\"))
            pins.setdefault(_name(req.name), []).append(req)
    return pins


def test_every_kiosk_dependency_is_locked_within_its_range_for_every_python() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    for extra in LOCKED_EXTRAS:
        wanted += [Requirement(r) for r in project["optional-dependencies"][extra]]
    pins = locked()
    for minor in range(9, 14):
        env = {**default_environment(), "python_version": f"3.{minor}", "python_full_version": f"3.{minor}.0"}
        for req in wanted:
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            here = [p for p in pins.get(_name(req.name), []) if p.marker is None or p.marker.evaluate(env)]
            assert len(here) == 1, f"{req.name} on Python 3.{minor}: {len(here)} lock lines; run scripts/lock"
            version = next(iter(here[0].specifier)).version
            assert req.specifier.contains(version, prereleases=True), (
                f"{req.name}=={version} in the lock is outside {req} (Python 3.{minor}); run scripts/lock"
            )


def test_every_pin_has_hashes() -> None:
    text = (ROOT / "requirements" / "kiosk.lock").read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    assert len(blocks) == sum(len(v) for v in locked().values())
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]
