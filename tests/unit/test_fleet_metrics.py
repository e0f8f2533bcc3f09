"""``hume-edge fleet --metrics-listen``'s fold: every kiosk's samples, bounded, as a kiosk would give them."""

from __future__ import annotations

import json

from agent.ops.fleet_metrics import MetricsFold
from agent.ops.metrics_model import FAMILIES, STATES, kiosk_samples
from tests.support.prometheus import health, promtool, values


def fold_of(*kiosks: str) -> MetricsFold:
    fold = MetricsFold("hume-edge", max_kiosks=3)
    for device in kiosks:
        fold.receive(f"hume-edge/{device}/status", b"online")
        fold.receive(f"hume-edge/{device}/health", json.dumps(health().to_json()).encode())
    return fold


def test_each_kiosk_reads_as_its_own_exporter_would_give_it() -> None:
    fold = fold_of("kiosk-a", "kiosk-b")
    kiosks, own = fold.samples()
    own_agent = kiosk_samples("kiosk-a", "online", health().to_json())
    assert [s for s in kiosks if s.labels[0] == "kiosk-a"] == own_agent
    assert {s.labels: s.value for s in own if s.name == "hume_edge_fleet_kiosks"}[("online",)] == 2
    assert promtool(fold.render()) == ""


def test_status_changes_and_cleared_health_follow_the_broker() -> None:
    fold = fold_of("kiosk-a", "kiosk-b")
    fold.receive("hume-edge/kiosk-b/status", b"offline")
    fold.receive("hume-edge/kiosk-a/health", b"")  # retained health deleted: only the state is left
    kiosks, _ = fold.samples()
    by_device = {d: values([s for s in kiosks if s.labels[0] == d]) for d in ("kiosk-a", "kiosk-b")}
    assert by_device["kiosk-b"]["hume_edge_state{offline}"] == 1
    assert by_device["kiosk-b"]["hume_edge_outbox_messages{}"] == 3  # its last health stays
    assert set(by_device["kiosk-a"]) == {f"hume_edge_state{{{s}}}" for s in STATES}
    fold.receive("hume-edge/kiosk-a/status", b"")  # and its status: the kiosk is gone
    assert {s.labels[0] for s in fold.samples()[0]} == {"kiosk-b"}


def test_bad_messages_change_nothing_and_kiosks_are_capped() -> None:
    fold = fold_of("kiosk-a", "kiosk-b", "kiosk-c")
    before = fold.samples()[0]
    fold.receive("hume-edge/kiosk-a/health", b"{not json")
    fold.receive("hume-edge/kiosk-a/health", b"[" * 5000)
    fold.receive("hume-edge/kiosk-d/health", json.dumps(health().to_json()).encode())  # a 4th: over the cap
    kiosks, own = fold.samples()
    assert kiosks == before
    ignored = {s.labels[0]: s.value for s in own if s.name == "hume_edge_fleet_ignored_messages_total"}
    assert ignored["bad_json"] == 2
    assert ignored["too_many_kiosks"] == 1
    assert len(FAMILIES) > 25
