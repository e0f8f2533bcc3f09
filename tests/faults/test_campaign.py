"""The whole agent under every fault we can script, one after another, in a seeded random order.

``hume-edge run`` runs as a process against a private mosquitto and the emulator (also a process), both
reached through loopback TCP proxies; see :mod:`tests.support.rig` and :mod:`tests.support.accounting`. The
short campaign injects every kind of fault once (the disk first, while the outbox's WAL is still small
enough that a full disk refuses writes at once); ``scripts/chaos`` runs the same for minutes.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.support.campaign import Campaign
from tests.support.rig import rig_for

pytestmark = pytest.mark.timeout(240)

SEED = 20261124
MAX_RSS_MB = 400.0
"""Far above the agent's ~100 MB: a leak under faults would cross it in minutes, a steady agent never."""


def _run(tmp_path: Path, seed: int, minutes: float = 0.0) -> None:
    print(f"fault campaign seed {seed}")
    with rig_for(tmp_path / "rig", seed) as rig:
        campaign = Campaign(rig, hold=(1.0, 1.5), gap=(0.3, 0.8))
        kinds = campaign.kinds()
        rest = [k for k in kinds if k != "disk_full"]
        random.Random(seed).shuffle(rest)
        campaign.run_plan(["disk_full", *rest] if "disk_full" in kinds else rest)
        if minutes:
            campaign.run_for(minutes * 60)
        report = campaign.finish()
        log = rig.agent.log.read_text(errors="replace")
    print("\n".join(report.lines()))
    acc = report.accounting
    assert acc is not None
    assert not report.problems, "\n".join(report.lines()) + "\n" + log[-4000:]
    assert acc.produced > 0
    assert acc.lost == 0
    assert acc.out_of_order == 0
    assert dict(report.faults) == {k: report.faults[k] for k in kinds}
    assert all(report.faults[k] >= 1 for k in kinds)
    assert report.watchdog, "the stall was not measured"
    assert report.max_rss_mb < MAX_RSS_MB
    if "disk_full" in kinds:
        # The agent said so (once per distinct error) and counted what it could not store.
        assert acc.write_failures > 0
        assert "cannot store a message in the outbox" in log


def test_every_fault_once_nothing_lost(tmp_path: Path) -> None:
    _run(tmp_path, SEED)


@pytest.mark.slow
@pytest.mark.campaign
def test_three_minutes_of_random_faults(tmp_path: Path) -> None:
    _run(tmp_path, SEED + 1, minutes=3.0)
