"""The status snapshot: atomic writes, reading, and what ``hume-edge status`` tells an operator."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.ops import status
from tests.support.waits import eventually

SNAPSHOT: Dict[str, Any] = {
    "device_id": "kiosk-07",
    "interval_s": 5.0,
    "started_at": 1000.0,
    "state": "running",
    "links": {"hume": {"state": "connected", "sockets": 1}, "mqtt": {"state": "reconnecting"}},
    "session": {"id": "s-42", "active": True, "since": 1100.0},
    "queue_depth": 17,
    "last_error": {"at": 1150.0, "level": "warning", "logger": "agent.mqtt", "message": "broker down"},
}


def _show(path: Path, **kw: Any) -> Tuple[int, str]:
    out = io.StringIO()
    code = status.show(argparse.Namespace(path=path, json=False, **kw), out)
    return code, out.getvalue()


def test_default_path_follows_runtime_directory() -> None:
    assert status.default_path({"RUNTIME_DIRECTORY": "/run/hume-edge"}) == Path("/run/hume-edge/status.json")
    assert status.default_path({}) == Path("state/status.json")


def test_write_then_read_round_trips_and_stamps_pid_and_time(tmp_path: Path) -> None:
    path = tmp_path / "run" / "status.json"
    status.write(path, SNAPSHOT)
    data = status.read(path)
    assert data is not None
    assert data["pid"] == os.getpid()
    assert abs(data["written_at"] - time.time()) < 3600
    assert {k: data[k] for k in SNAPSHOT} == SNAPSHOT
    assert path.stat().st_mode & 0o777 == 0o640  # says whether someone is present: the service's group only
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]  # no temp file left behind


def test_write_failure_leaves_the_old_snapshot_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    status.write(path, {"queue_depth": 1})
    loop: Dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="ircular reference"):
        status.write(path, {"links": loop})
    assert status.read(path) is not None
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_read_missing_or_garbage_is_none(tmp_path: Path) -> None:
    assert status.read(tmp_path / "nope.json") is None
    (tmp_path / "bad.json").write_text("{half")
    assert status.read(tmp_path / "bad.json") is None
    (tmp_path / "list.json").write_text("[1]")
    assert status.read(tmp_path / "list.json") is None


def test_show_running_agent_lists_links_session_queue_and_last_error(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    status.write(path, SNAPSHOT)
    code, text = _show(path)
    assert code == status.EXIT_RUNNING
    lines = text.splitlines()
    assert lines[0].startswith(f"agent: running (pid {os.getpid()}")
    assert "device:     kiosk-07" in lines
    assert "link hume:  connected  sockets=1" in lines
    assert "link mqtt:  reconnecting" in lines
    assert any(line.startswith("session:    active s-42") for line in lines)
    assert "queue:      17 message(s) waiting for the broker" in lines
    assert any(line.startswith("last error: [warning] broker down") for line in lines)


def test_show_without_snapshot_says_not_running(tmp_path: Path) -> None:
    code, text = _show(tmp_path / "status.json")
    assert code == status.EXIT_NOT_RUNNING
    assert text.startswith("agent: NOT RUNNING (no status snapshot at ")


def test_show_dead_pid_says_not_running_but_keeps_the_last_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    path = tmp_path / "status.json"
    status.write(path, {**SNAPSHOT, "pid": int(proc.stdout)})
    code, text = _show(path)
    assert code == status.EXIT_NOT_RUNNING
    assert "NOT RUNNING" in text.splitlines()[0]
    assert "broker down" in text


def test_show_stopped_state_says_not_running(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    status.write(path, {**SNAPSHOT, "state": "stopped"})
    assert _show(path)[0] == status.EXIT_NOT_RUNNING


def test_show_old_snapshot_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    status.write(path, {**SNAPSHOT, "written_at": time.time() - 3600})
    code, text = _show(path)
    assert code == status.EXIT_STALE
    assert "STALE" in text.splitlines()[0]
    assert "may be hung" in text


def test_show_names_what_runs_from_the_identity(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    ident = {
        "version": "0.3.1", "config_fingerprint": "3fa2c1e09b7d", "backend": "v1",
        "models": ["face", "prosody"], "python": "3.11.2",
        "os": "Debian GNU/Linux 12 (bookworm)", "machine": "aarch64",
    }  # fmt: skip
    status.write(path, {**SNAPSHOT, "identity": ident})
    lines = _show(path)[1].splitlines()
    assert (
        "agent:      0.3.1, config 3fa2c1e09b7d, Hume v1 face+prosody; Python 3.11.2 on Debian"
        in "\n".join(lines)
    )


def test_show_json_prints_the_raw_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    status.write(path, SNAPSHOT)
    out = io.StringIO()
    assert status.show(argparse.Namespace(path=path, json=True), out) == 0
    assert json.loads(out.getvalue())["queue_depth"] == 17


def test_summary_line_for_systemctl_status() -> None:
    assert (
        status.summary_line(SNAPSHOT) == "hume connected, mqtt reconnecting, visitor session active, queue 17"
    )
    assert status.summary_line({}) == "idle"


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "pid",
                "written_at",
                "interval_s",
                "started_at",
                "state",
                "links",
                "session",
                "queue_depth",
                "last_error",
                "device_id",
            ]
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=6,
        ),
    )
)
def test_render_never_fails_on_odd_snapshots(snapshot: Dict[str, Any]) -> None:
    code, head = status.verdict(snapshot, time.time(), alive=True)
    assert code in (status.EXIT_RUNNING, status.EXIT_STALE, status.EXIT_NOT_RUNNING)
    assert head.startswith("agent: ")
    status.render(snapshot, time.time())
    status.summary_line(snapshot)


async def test_run_writes_periodically_and_a_final_stopped_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    calls = []

    def snapshot() -> Dict[str, Any]:
        calls.append(1)
        return {"queue_depth": len(calls)}

    task = asyncio.ensure_future(status.run(path, snapshot, interval_s=0.01))
    # Periodic: the file is rewritten with each new snapshot (the third one's depth shows up in it).
    assert await eventually(lambda: (status.read(path) or {}).get("queue_depth", 0) >= 3, 10)
    data = status.read(path)
    assert data is not None
    assert data["state"] == "running"
    assert data["interval_s"] == 0.01
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2.0)
    final = status.read(path)
    assert final is not None
    assert final["state"] == "stopped"
    assert final["queue_depth"] == len(calls)


async def test_a_failing_write_is_logged_once_and_retried_and_never_ends_the_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """EMFILE, ENOSPC, a directory gone: the writer says so once and tries again (it once ended the agent)."""
    caplog.set_level(logging.INFO, logger="agent.ops.status")
    blocker = tmp_path / "run"
    blocker.write_text("a file where the runtime directory should be")
    path = blocker / "status.json"
    calls = []

    def snapshot() -> Dict[str, Any]:
        calls.append(1)
        return {"queue_depth": len(calls)}

    task = asyncio.ensure_future(status.run(path, snapshot, interval_s=0.01))
    try:
        assert await eventually(lambda: len(calls) >= 20, 10)
        assert not task.done(), "a failing write ended the status writer"
        failures = [r for r in caplog.records if "cannot write the status file" in r.getMessage()]
        assert len(failures) == 1, "one line for a failure that recurs, not one per interval"
        blocker.unlink()  # the cause goes away: the next interval writes
        assert await eventually(lambda: status.read(path) is not None, 10)
        assert any("written again" in r.getMessage() for r in caplog.records)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 2.0)


def test_status_command_never_opens_the_outbox(tmp_path: Path) -> None:
    """``hume-edge status`` must not even import sqlite3, let alone open the agent's database."""
    path = tmp_path / "status.json"
    status.write(path, SNAPSHOT)
    code = (
        "import argparse, sys, pathlib\n"
        "from agent.ops import status\n"
        f"rc = status.show(argparse.Namespace(path=pathlib.Path({str(path)!r}), json=False))\n"
        "assert 'sqlite3' not in sys.modules, 'sqlite3 imported'\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_links_may_be_top_level_objects_with_a_state(tmp_path: Path) -> None:
    """The shape the service's health() writes: links as top-level objects, queue depth inside mqtt."""
    path = tmp_path / "status.json"
    status.write(
        path,
        {
            "device_id": "kiosk-07",
            "session": {"active": False, "id": None},
            "hume": {"state": "connecting"},
            "mqtt": {"state": "connected", "queue_depth": 4},
            "capture": {"frames": 10},
        },
    )
    code, text = _show(path)
    assert code == status.EXIT_RUNNING
    assert "link hume:  connecting" in text
    assert "link mqtt:  connected  queue_depth=4" in text
    assert "queue:      4 message(s) waiting for the broker" in text
    assert "capture" not in text
    assert status.summary_line(status.read(path) or {}) == "hume connecting, mqtt connected, idle, queue 4"


def test_status_and_fleet_read_one_health_body_alike_and_no_escape_reaches_the_terminal(
    tmp_path: Path,
) -> None:
    """One reader (agent.ops.health_view) for the status file and the fleet's health messages."""
    from agent.ops.health_view import parse_health

    body = {
        "device_id": "kiosk-07",
        "identity": {"version": "0.3.1", "config_fingerprint": "3fa2c1e09b7d", "backend": "v1"},
        "mqtt": {"state": "connected", "queue_depth": 4},
        "outbox": {"depth": 4, "dropped_total": 0},
        "session": {"active": False, "id": None},
        "last_error": {"at": 1150.0, "level": "error", "message": "evil \x1b[2J\x1b]0;owned\x07 reply"},
    }
    path = tmp_path / "status.json"
    status.write(path, {**body, "interval_s": 5.0, "state": "running"})
    text = _show(path)[1]
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "last error: [error] evil ?[2J?]0;owned? reply" in text
    assert "queue:      4 message(s) waiting for the broker" in text
    fleet_view = parse_health(json.dumps(body).encode())
    assert (fleet_view.last_error, fleet_view.queue_depth) == ("evil ?[2J?]0;owned? reply", 4)
    assert "agent:      0.3.1, config 3fa2c1e09b7d, Hume v1 ?; Python ? on ?" in text.splitlines()
