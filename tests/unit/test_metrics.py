"""Prometheus metrics: the samples of a health snapshot, their exposition, the bounded server, the textfile.

The health here is a typed ``Health`` built from the agent's own dataclasses (a v1 backend's status
included), so the model reads the very shape the agent and the retained topic carry. ``promtool check
metrics`` (Debian's prometheus package) judges every exposition.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import from_dict, split_listen
from agent.errors import ConfigError
from agent.hume.pricing import V1_MIN_BILLED_S, v1_billed_s
from agent.hume.types import BackendStatus, LinkStatus
from agent.messages import OutMessage
from agent.mqtt import outbox as outbox_mod
from agent.ops import metrics_export, metrics_model, metrics_text
from agent.ops.health import PrivacyHealth
from agent.privacy import state as privacy_state
from agent.visit.session import END_REASONS
from agent.visit.tally import Tally
from tests.support.prometheus import NOW, health, promtool, values
from tests.support.waits import eventually


def test_samples_follow_the_health_snapshot() -> None:
    got = values(metrics_model.kiosk_samples("kiosk-1", "online", health().to_json()))
    assert got["hume_edge_state{online}"] == 1
    assert got["hume_edge_state{offline}"] == 0
    assert got["hume_edge_info{0.1.0,abcdef012345,v1,face+prosody,3.11.2}"] == 1
    assert got["hume_edge_health_timestamp_seconds{}"] == NOW
    assert got["hume_edge_start_time_seconds{}"] == NOW
    assert got["hume_edge_session_active{}"] == 1
    assert got["hume_edge_sessions_total{absence}"] == 2
    assert got["hume_edge_sessions_total{interrupted}"] == 0
    assert got["hume_edge_summaries_total{face}"] == 7
    assert got["hume_edge_summaries_last_timestamp_seconds{}"] == NOW - 1
    assert got["hume_edge_outbox_messages{}"] == 3
    assert got["hume_edge_outbox_oldest_age_seconds{}"] == 42.5
    assert got["hume_edge_outbox_dropped_total{rows}"] == 1
    assert got["hume_edge_mqtt_connected{}"] == 1
    assert got["hume_edge_mqtt_connects_total{}"] == 2
    assert got["hume_edge_hume_link_state{video,auth_failed}"] == 1
    assert sum(v for k, v in got.items() if k.startswith("hume_edge_hume_link_state{video,")) == 1
    assert got["hume_edge_hume_payloads_sent_total{audio}"] == 50
    assert got["hume_edge_hume_errors_total{rate_limited}"] == 4
    assert got["hume_edge_hume_billed_media_seconds_total{audio}"] == 12
    assert got["hume_edge_hume_billed_media_seconds_total{video}"] == 30
    assert got["hume_edge_part_state{hume,offline}"] == 1  # a link refused: the Hume part is offline
    assert got["hume_edge_part_state{microphone,offline}"] == 1
    assert got["hume_edge_privacy_paused{}"] == 0
    assert got["hume_edge_microphone_audio_sent_seconds_total{}"] == 4.2
    assert got["hume_edge_process_resident_memory_bytes{}"] == 80 * 2**20
    assert got["hume_edge_process_cpu_seconds_total{}"] == 3.5
    assert "hume_edge_hume_replies_lost_total{audio}" not in got  # a link that reports no "lost" count


def test_exposition_passes_promtool_and_has_one_block_per_family() -> None:
    samples = metrics_model.kiosk_samples("kiosk-1", "online", health().to_json())
    body = metrics_text.render([(metrics_model.FAMILIES, samples)])
    assert promtool(body) == ""
    text = body.decode()
    assert text.count("# TYPE hume_edge_sessions_total counter") == 1
    assert 'hume_edge_sessions_total{device="kiosk-1",reason="absence"} 2.0' in text
    for family in metrics_model.FAMILIES:
        assert family.name.startswith("hume_edge_")
        assert family.name.endswith("_total") == (family.type == metrics_model.COUNTER), family.name


def test_a_kiosk_with_no_health_yet_has_only_its_state() -> None:
    got = values(metrics_model.kiosk_samples("kiosk-9", "gibberish", None))
    assert got == {f"hume_edge_state{{{s}}}": float(s == "unknown") for s in metrics_model.STATES}


hostile_json = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=40,
)


@settings(max_examples=60, deadline=None)
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            k: hostile_json
            for k in (
                "session",
                "summaries",
                "outbox",
                "mqtt",
                "hume",
                "capture",
                "privacy",
                "identity",
                "ts",
                "rss_mb",
            )
        },
    )
)
def test_any_body_gives_bounded_valid_samples(body: Dict[str, Any]) -> None:
    samples = metrics_model.kiosk_samples('kiosk "7"\\', "online", body)
    assert len(samples) <= 150
    for s in samples:
        assert math.isfinite(s.value)
        assert s.value >= 0
        assert all(len(v) <= 128 for v in s.labels)
        assert len(s.labels) == len(metrics_model.BY_NAME[s.name].labels)


def test_a_flood_of_error_codes_and_reasons_is_capped_and_summed() -> None:
    body = health().to_json()
    body["hume"]["counters"] = {f"error_code{i}": 1 for i in range(500)}  # type: ignore[index]
    body["session"]["ended"] = {f"reason{i}\x1b[2J": 2 for i in range(100)}  # type: ignore[index]
    samples = metrics_model.kiosk_samples("k", "online", body)
    errors = [s for s in samples if s.name == "hume_edge_hume_errors_total"]
    ended = [s for s in samples if s.name == "hume_edge_sessions_total"]
    assert len(errors) == metrics_model.MAX_ERROR_CODES
    assert errors[0].labels[1] == "code0"
    assert sum(s.value for s in errors) == 500  # nothing lost: the rest under "other"
    assert len(ended) == metrics_model.MAX_REASONS
    assert sum(s.value for s in ended) == 200
    assert all(v.isprintable() for s in ended for v in s.labels)
    assert promtool(metrics_text.render([(metrics_model.FAMILIES, samples)])) == ""


def test_outbox_drop_reasons_agree() -> None:
    assert metrics_model.DROP_REASONS == outbox_mod.DROP_REASONS


def test_refused_pauses_are_counted_by_source() -> None:
    """The page's and cmd/privacy's refusals over their hourly allowance (#31) were in health only: now
    one counter, by source, 0 from the start (so ``increase()`` sees the first refusal)."""
    assert metrics_model.PAUSE_SOURCES == privacy_state.LIMITED_SOURCES
    fresh = values(metrics_model.kiosk_samples("k", "online", health().to_json()))
    assert fresh["hume_edge_privacy_pauses_refused_total{page}"] == 0
    assert fresh["hume_edge_privacy_pauses_refused_total{mqtt}"] == 0
    privacy = PrivacyHealth(paused=True, page_pauses_refused=21, mqtt_pauses_refused=4)
    got = values(metrics_model.kiosk_samples("k", "online", health(privacy=privacy).to_json()))
    assert got["hume_edge_privacy_pauses_refused_total{page}"] == 21
    assert got["hume_edge_privacy_pauses_refused_total{mqtt}"] == 4
    assert got["hume_edge_privacy_paused{}"] == 1
    samples = metrics_model.kiosk_samples("k", "online", health(privacy=privacy).to_json())
    body = metrics_text.render([(metrics_model.FAMILIES, samples)])
    assert 'hume_edge_privacy_pauses_refused_total{device="k",source="mqtt"} 4.0' in body.decode()
    assert promtool(body) == ""
    older = health().to_json()
    older["privacy"] = {"paused": False}  # type: ignore[index]  # an agent from before the counters
    got = values(metrics_model.kiosk_samples("k", "online", older))
    assert got["hume_edge_privacy_pauses_refused_total{mqtt}"] == 0
    del older["privacy"]
    got = values(metrics_model.kiosk_samples("k", "online", older))
    assert not [k for k in got if k.startswith("hume_edge_privacy_")]


def test_tally_counts_ends_by_reason_and_summaries_by_model() -> None:
    tally = Tally(("face", "prosody"))
    assert tally.ended == dict.fromkeys(END_REASONS, 0)
    assert tally.published == {"face": 0, "prosody": 0}
    tally.observe(
        [
            OutMessage("summary/face", {"schema": "hume-edge/summary/1", "model": "face"}),
            OutMessage("summary/face", {"schema": "hume-edge/idle/1", "model": "face"}),
            OutMessage("session", {"schema": "hume-edge/session/1", "event": "start", "reason": "command"}),
            OutMessage("session", {"schema": "hume-edge/session/1", "event": "end", "reason": "absence"}),
        ],
        NOW,
    )
    assert tally.published["face"] == 1  # the idle message is not a summary
    assert tally.ended["absence"] == 1
    assert sum(tally.ended.values()) == 1
    assert tally.last_summary_iso == "2026-12-08T00:31:00.000Z"


def test_billed_seconds_follow_humes_rules() -> None:
    assert v1_billed_s("audio", {"audio_duration_ms": 25_000, "frames": 250}) == 25.0
    assert v1_billed_s("audio", {"audio_duration_ms": 3_000, "frames": 30}) == V1_MIN_BILLED_S
    assert v1_billed_s("video", {"frames": 90}) == 30.0  # 1/3 s a frame
    assert v1_billed_s("video", {"frames": 6}) == V1_MIN_BILLED_S
    assert v1_billed_s("video", {"frames": 0}) == 0  # no media taken in: nothing billed
    assert v1_billed_s("video", {"frames": "9", "x": True}) == 0
    assert v1_billed_s("audio", {"audio_duration_ms": 10**15}) == 86_400


def test_metrics_listen_is_loopback_unless_allowed() -> None:
    assert split_listen("127.0.0.1:9852") == ("127.0.0.1", 9852)
    assert split_listen("[::1]:9852") == ("::1", 9852)
    for bad in ("9852", "127.0.0.1:", "127.0.0.1:0", "host:99999"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            split_listen(bad)
    with pytest.raises(ConfigError, match=r"metrics\.listen = '0\.0\.0\.0:9852': not a loopback address"):
        from_dict({"metrics": {"listen": "0.0.0.0:9852"}}, environ={})
    assert from_dict({"metrics": {"listen": "0.0.0.0:9852", "allow_remote": True}}, environ={}).metrics.listen


def test_textfile_is_replaced_atomically(tmp_path: Path) -> None:
    metrics_export.write_textfile(tmp_path, b"a 1\n")
    path = metrics_export.write_textfile(tmp_path, b"a 2\n")
    assert path.read_bytes() == b"a 2\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["hume_edge.prom"]


def test_cached_renders_at_most_once_per_interval() -> None:
    calls: List[float] = []
    cached = metrics_export.Cached(lambda: calls.append(time.monotonic()) or b"x", min_s=3600)
    assert [cached(), cached(), cached()] == [b"x", b"x", b"x"]
    assert len(calls) == 1


async def _request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await reader.read()
    except ConnectionResetError:  # closed unanswered (the server did not read what we sent)
        return b""
    finally:
        writer.close()


async def test_server_answers_get_metrics_only_and_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_export, "HEAD_TIMEOUT_S", 0.5)
    rendered: List[int] = []
    server = metrics_export.MetricsServer("127.0.0.1", 0, lambda: rendered.append(1) or b"up 1\n")
    await server.start()
    try:
        ok = await _request(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Type: text/plain; version=0.0.4" in ok
        assert ok.endswith(b"\r\n\r\nup 1\n")
        assert (await _request(server.port, b"GET / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await _request(server.port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n"
        assert (await _request(server.port, huge)).startswith(b"HTTP/1.1 431")
        # Silent clients fill every slot: the next is closed unanswered, and the agent's loop runs on.
        idle = [
            await asyncio.open_connection("127.0.0.1", server.port)
            for _ in range(metrics_export.MAX_CONNECTIONS)
        ]
        assert await _request(server.port, b"GET /metrics HTTP/1.1\r\n\r\n") == b""
        assert server.refused >= 1
        for reader, _ in idle:  # the head timeout frees their slots
            assert await asyncio.wait_for(reader.read(), 5) == b""
        assert (await _request(server.port, b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")
        for _, writer in idle:
            writer.close()
        assert len(rendered) == 2
    finally:
        await server.close()


def test_health_json_round_trip_keeps_the_new_fields() -> None:
    body = json.loads(json.dumps(health().to_json()))
    assert body["session"]["ended"]["absence"] == 2
    assert body["summaries"]["published"] == {"face": 7, "prosody": 0}
    assert body["outbox"]["oldest_age_s"] == 42.5


def test_request_limit_refusals_and_protocol_drift_per_link() -> None:
    audio = LinkStatus(
        "rate_limited", counters=(("rate_limited", 2.0), ("unknown_fields", 2.0), ("unknown_types", 1.0))
    )
    hume = BackendStatus.of_links("v1", (("audio", audio), ("video", LinkStatus("open"))), {})
    got = values(metrics_model.kiosk_samples("k", "online", health(hume=hume).to_json()))
    assert got["hume_edge_hume_link_state{audio,rate_limited}"] == 1
    assert got["hume_edge_hume_request_limited_total{audio}"] == 2
    assert got["hume_edge_hume_protocol_drift_total{audio}"] == 3
    assert got["hume_edge_hume_protocol_drift_total{video}"] == 0


async def test_the_agents_task_writes_the_textfile_and_a_last_one_saying_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from agent.config import MetricsConfig
    from agent.ops import metrics_run

    missing = tmp_path / "not-yet"
    cfg = MetricsConfig(textfile_dir=str(missing))
    bodies: List[int] = []

    def snapshot() -> Dict[str, object]:
        bodies.append(1)
        return health().to_json()

    task = asyncio.ensure_future(metrics_run.run(cfg, "kiosk-1", snapshot, interval_s=0.01))
    try:
        assert await eventually(lambda: len(bodies) >= 5, 10)
        failures = [r for r in caplog.records if "metrics: cannot write" in r.getMessage()]
        assert len(failures) == 1  # a directory that is not there is said once, not every interval
        missing.mkdir()
        textfile = missing / "hume_edge.prom"
        assert await eventually(textfile.exists, 10)
        assert 'hume_edge_state{device="kiosk-1",state="online"} 1.0' in textfile.read_text()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert 'hume_edge_state{device="kiosk-1",state="stopped"} 1.0' in textfile.read_text()
    assert promtool(textfile.read_bytes()) == ""


async def test_a_port_in_use_is_said_once_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    from agent.config import MetricsConfig
    from agent.ops import metrics_run

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    cfg = MetricsConfig(listen=f"127.0.0.1:{port}")
    task = asyncio.ensure_future(metrics_run.run(cfg, "kiosk-1", lambda: health().to_json(), interval_s=0.01))
    try:

        def said() -> List[str]:
            return [r.getMessage() for r in caplog.records if "metrics.listen; retrying" in r.getMessage()]

        assert await eventually(lambda: len(said()) == 1, 10)
        assert not task.done()  # the agent keeps measuring
        blocker.close()
        answer: List[bytes] = []

        async def scrape() -> bool:
            try:
                answer.append(await _request(port, b"GET /metrics HTTP/1.1\r\n\r\n"))
            except OSError:
                return False
            return answer[-1].startswith(b"HTTP/1.1 200")

        for _ in range(200):
            if await scrape():
                break
            await asyncio.sleep(0.05)  # polling: the next bind attempt
        assert answer[-1].startswith(b"HTTP/1.1 200")
        assert len(said()) == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
