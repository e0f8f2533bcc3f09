"""``hume-edge broker-acl``: per-account grants only, names it can trust; the shipped ACL is its output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import EX_CONFIG
from agent.mqtt import broker_acl

ROOT = Path(__file__).resolve().parents[2]
HUME_EDGE = str(Path(sys.executable).parent / "hume-edge")
EXAMPLE_KIOSKS = ["kiosk-lobby", "kiosk-hall"]


def test_the_shipped_acl_is_the_generators_output_byte_for_byte() -> None:
    shipped = (ROOT / "config/mosquitto/hume-edge.acl").read_text(encoding="utf-8")
    assert shipped == broker_acl.render(EXAMPLE_KIOSKS)
    proc = subprocess.run(
        [HUME_EDGE, "broker-acl", *EXAMPLE_KIOSKS], capture_output=True, text=True, timeout=60, check=False
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, shipped, "")


def test_every_grant_names_its_account_and_no_line_is_a_pattern() -> None:
    text = broker_acl.render(["k1", "k.2"], prefix="site/a", discovery_prefix="ha")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert not [ln for ln in lines if not ln.startswith(("user ", "topic read ", "topic write "))]
    assert lines[0] == "user k1"  # nothing granted before the first account (that would be anonymous's)
    users = [ln.split()[1] for ln in lines if ln.startswith("user ")]
    assert users == ["k1", "k1-ui", "k.2", "k.2-ui", "dashboard", "fleet"]
    assert "%" not in text
    # A device id with a '.' gets the discovery topic the agent really uses (reduced + hash).
    assert re.search(r"^topic write ha/device/k_2_[0-9a-f]{6}/config$", text, re.M)
    assert "topic write site/a/k1/#" in lines


@pytest.mark.parametrize(
    ("kiosks", "words"),
    [
        (["kiosk-lobby/cmd"], "kiosk 'kiosk-lobby/cmd': an account name must match ^[A-Za-z0-9._-]+$"),
        (["k+"], "kiosk 'k+': an account name must match"),
        (["k#"], "kiosk 'k#': an account name must match"),
        (["k 1"], "kiosk 'k 1': an account name must match"),
        (["k\u2028"], "an account name must match"),
        (["dashboard"], "account 'dashboard' would be granted twice"),
        (["x", "x-ui"], "account 'x-ui' would be granted twice"),
        (["x", "x"], "account 'x' would be granted twice"),
        ([], "no kiosk named"),
    ],
)
def test_names_that_would_escape_or_clash_are_refused_and_nothing_is_printed(
    kiosks: list, words: str
) -> None:  # type: ignore[type-arg]
    proc = subprocess.run(
        [HUME_EDGE, "broker-acl", *kiosks], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == EX_CONFIG
    assert proc.stdout == ""
    assert words in proc.stderr
    with pytest.raises(ValueError, match=r"must|twice|no kiosk"):
        broker_acl.render(kiosks)


def test_prefixes_with_wildcards_are_refused() -> None:
    assert broker_acl.problems(["k"], "hume-edge/+", "homeassistant") == [
        "--prefix 'hume-edge/+': topic levels of [A-Za-z0-9._-] separated by '/'"
    ]
    assert broker_acl.problems(["k"], "hume-edge", "#")
    assert broker_acl.problems(["k"], "/hume-edge", "homeassistant")
