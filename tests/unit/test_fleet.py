"""The fleet view's pure part: retained status and health messages in, one typed row per kiosk out."""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import EX_CONFIG
from agent.ops import fleet

TS = "2026-11-24T21:40:52.123Z"


def health(version: str = "0.2.0", fp: Optional[str] = "aaaa11112222", **extra: Any) -> bytes:
    body: Dict[str, Any] = {
        "ts": TS,
        "identity": {"version": version, "config_fingerprint": fp, "python": "3.11.2", "backend": "v1"},
        "session": {"active": False, "id": None},
        "mqtt": {"state": "connected", "queue_depth": 3, "dropped": 0},
        "outbox": {"depth": 3, "dropped_total": 1},
        "last_error": {"at": 1.0, "level": "warning", "message": "camera lost"},
    }
    body.update(extra)
    return json.dumps(body).encode()


def fold_of(*messages: tuple) -> fleet.FleetFold:  # type: ignore[type-arg]
    fold = fleet.FleetFold("hume-edge")
    for topic, payload in messages:
        fold.receive(topic, payload)
    return fold


def test_one_row_per_kiosk_with_state_version_fingerprint_queue_and_error() -> None:
    report = fold_of(
        ("hume-edge/k1/status", b"online"),
        ("hume-edge/k1/health", health()),
        ("hume-edge/k2/status", b"offline"),
    ).report()
    assert [k.device for k in report.kiosks] == ["k1", "k2"]
    k1, k2 = report.kiosks
    assert (k1.state, k1.health.version, k1.health.config_fingerprint) == ("online", "0.2.0", "aaaa11112222")
    assert (k1.health.queue_depth, k1.health.dropped, k1.health.session_active) == (3, 1, False)
    assert (k1.health.last_error, k1.health.ts) == ("camera lost", TS)
    assert k2.state == "offline"
    assert k2.health == fleet.HealthView()
    assert report.to_json()["counts"] == {"online": 1, "stopped": 0, "offline": 1, "unknown": 0}


def test_the_kiosk_whose_config_differs_from_the_majority_is_flagged() -> None:
    report = fold_of(
        ("hume-edge/a/health", health(fp="f1")),
        ("hume-edge/b/health", health(fp="f1")),
        ("hume-edge/c/health", health(fp="f2")),
    ).report()
    assert report.majority_fingerprint == "f1"
    assert [k.device for k in report.kiosks if k.config_differs] == ["c"]
    assert report.to_json()["config_differs"] == ["c"]
    assert "differs on c" in fleet.summary_line(report)


def test_a_tie_has_no_majority_and_flags_nobody() -> None:
    fold = fold_of(("hume-edge/a/health", health(fp="f1")), ("hume-edge/b/health", health(fp="f2")))
    report = fold.report()
    assert report.majority_fingerprint is None
    assert not any(k.config_differs for k in report.kiosks)
    assert "no majority" in fleet.summary_line(report)


def test_later_messages_replace_earlier_ones_and_empty_retained_clears() -> None:
    fold = fold_of(
        ("hume-edge/k/status", b"online"),
        ("hume-edge/k/health", health(version="0.1.0")),
        ("hume-edge/k/health", health(version="0.2.0")),
        ("hume-edge/k/status", b"stopped"),
    )
    (row,) = fold.report().kiosks
    assert (row.state, row.health.version) == ("stopped", "0.2.0")
    fold.receive("hume-edge/k/status", b"")
    fold.receive("hume-edge/k/health", b"")
    assert fold.report().kiosks == ()


def test_old_health_without_identity_still_shows_queue_from_mqtt_part() -> None:
    body = {"ts": TS, "mqtt": {"state": "connected", "queue_depth": 7, "dropped": 2}, "outbox": {}}
    (row,) = fold_of(("hume-edge/old/health", json.dumps(body).encode())).report().kiosks
    assert (row.health.version, row.health.queue_depth, row.health.dropped) == (None, 7, 2)


def test_hostile_messages_are_counted_and_change_nothing() -> None:
    fold = fold_of(("hume-edge/k/status", b"online"), ("hume-edge/k/health", health()))
    before = fold.report().kiosks
    for topic, payload in (
        ("hume-edge/k/health", b"{not json"),
        ("hume-edge/k/health", b"[1, 2]"),
        ("hume-edge/k/health", b"\xff\xfe"),
        ("hume-edge/k/health", b"[" * 60_000),
        ("hume-edge/k/health", b" " * (fleet.MAX_PAYLOAD_BYTES + 1)),
        ("hume-edge/k/status", b"rebooting"),
        ("other/k/status", b"online"),
        ("hume-edge/k/x/status", b"online"),
        ("hume-edge/k\x1b[31m/status", b"online"),
        ("hume-edge/" + "d" * 500 + "/status", b"online"),
    ):
        fold.receive(topic, payload)
    assert fold.report().kiosks == before
    ignored = fold.report().ignored
    assert (ignored.bad_json, ignored.too_large, ignored.bad_status, ignored.bad_topic) == (4, 1, 1, 4)


def test_wrong_types_become_missing_fields_and_text_is_made_safe() -> None:
    payload = health(
        version=["x"],
        session={"active": "yes"},
        outbox={"depth": -4, "dropped_total": True},
        last_error={"message": "\x1b[2Jwiped" + "y" * 1000},
        ts="yesterday",
    )
    (row,) = fold_of(("hume-edge/k/health", payload)).report().kiosks
    h = row.health
    assert (h.version, h.session_active, h.ts) == (None, None, None)
    assert (h.queue_depth, h.dropped) == (3, 0)  # fell back to the mqtt part, which is well-formed
    assert h.last_error is not None
    assert "\x1b" not in h.last_error
    assert h.last_error.startswith("?[2Jwiped")
    assert h.last_error.endswith("(+849 chars)")


def test_kiosk_count_is_bounded() -> None:
    fold = fleet.FleetFold("p", max_kiosks=3)
    for i in range(5):
        fold.receive(f"p/k{i}/status", b"online")
    assert len(fold.report().kiosks) == 3
    assert fold.report().ignored.too_many_kiosks == 2
    fold.receive("p/k0/status", b"stopped")  # known kiosks still update
    assert fold.report().kiosks[0].state == "stopped"


def test_prefix_with_slashes() -> None:
    fold = fleet.FleetFold("site/a")
    assert fold.topics == ["site/a/+/status", "site/a/+/health"]
    fold.receive("site/a/k/status", b"online")
    assert [k.device for k in fold.report().kiosks] == ["k"]


def test_table_has_a_line_per_kiosk_and_a_summary() -> None:
    report = fold_of(
        ("hume-edge/a/status", b"online"),
        ("hume-edge/a/health", health(fp="f1")),
        ("hume-edge/b/status", b"online"),
        ("hume-edge/b/health", health(fp="f1")),
        ("hume-edge/c/status", b"offline"),
        ("hume-edge/c/health", health(fp="f2")),
    ).report()
    lines = fleet.render_table(report, now=1764020460.0)
    assert lines[0].split()[:3] == ["DEVICE", "STATE", "VERSION"]
    assert len(lines) == 5
    assert "f2 *differs" in lines[3]
    assert lines[4].startswith("3 kiosk(s): 2 online, 0 stopped, 1 offline")


def test_kiosks_outside_expect_are_marked_and_do_not_outvote_the_real_one() -> None:
    """Three fakes with one config, published by a hostile account, against one real kiosk (issue #31)."""
    messages = [
        ("hume-edge/kiosk-lobby/status", b"online"),
        ("hume-edge/kiosk-lobby/health", health(fp="real")),
    ]
    for fake in ("dashboard", "fleet", "kiosk-lobby-ui"):
        messages += [(f"hume-edge/{fake}/status", b"online"), (f"hume-edge/{fake}/health", health(fp="fake"))]
    fold = fleet.FleetFold("hume-edge")
    for topic, payload in messages:
        fold.receive(topic, payload)
    assert [k.device for k in fold.report().kiosks if k.config_differs] == ["kiosk-lobby"]  # no --expect

    fold.expect = ("kiosk-*",)  # a pattern: the UI account's fake still passes as a kiosk
    report = fold.report()
    assert [k.device for k in report.kiosks if not k.expected] == ["dashboard", "fleet"]
    fold.expect = ("kiosk-lobby",)
    report = fold.report()
    assert report.majority_fingerprint == "real"
    assert [k.device for k in report.kiosks if k.config_differs] == []
    assert report.to_json()["unexpected"] == ["dashboard", "fleet", "kiosk-lobby-ui"]
    lines = fleet.render_table(report, now=0.0)
    assert [ln.split()[:2] for ln in lines[1:5]] == [
        ["dashboard", "*unexpected"],
        ["fleet", "*unexpected"],
        ["kiosk-lobby", "online"],
        ["kiosk-lobby-ui", "*unexpected"],
    ]
    assert "3 unexpected (not in --expect): dashboard, fleet, kiosk-lobby-ui" in lines[-1]


def test_expect_refuses_what_cannot_be_a_device_id(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    fleet.add_arguments(parser)
    for bad in ("", "site/kiosk-*", "k\x1b[2J"):
        args = parser.parse_args(["--expect", "kiosk-*", "--expect", bad])
        assert fleet.run_from_args(args) == EX_CONFIG
        assert f"--expect {bad!r}: must be a device id or a pattern" in capsys.readouterr().err


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["hume-edge/a/status", "hume-edge/b/health", "hume-edge/c/health", "x/y"]),
            st.one_of(
                st.binary(max_size=200),
                st.recursive(
                    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
                    max_leaves=20,
                ).map(lambda v: json.dumps(v).encode()),
            ),
        ),
        max_size=20,
    )
)
def test_any_bytes_never_crash_the_fold_or_the_renderers(messages: list) -> None:  # type: ignore[type-arg]
    fold = fleet.FleetFold("hume-edge")
    for topic, payload in messages:
        fold.receive(topic, payload)
    report = fold.report()
    json.dumps(report.to_json())
    fleet.render_table(report, now=0.0)


def test_the_hume_column_shows_each_kiosks_link_state_and_the_summary_counts_them() -> None:
    limited = {"state": "rate_limited", "ok": False, "last_error": "video: ... organisation request limit"}
    report = fold_of(
        ("hume-edge/k1/status", b"online"),
        ("hume-edge/k1/health", health(hume=limited)),
        ("hume-edge/k2/status", b"online"),
        ("hume-edge/k2/health", health(hume={"state": "open", "ok": True})),
        ("hume-edge/k3/status", b"online"),
        ("hume-edge/k3/health", health(hume={"state": ["not", "text"]})),
    ).report()
    assert [k.health.hume_state for k in report.kiosks] == ["rate_limited", "open", None]
    lines = fleet.render_table(report, now=0.0)
    assert lines[0].split()[5] == "HUME"
    assert lines[1].split()[5] == "rate_limited"
    assert "hume 1 open, 1 rate_limited" in lines[-1]
    assert report.to_json()["kiosks"][0]["hume_state"] == "rate_limited"  # type: ignore[index]
