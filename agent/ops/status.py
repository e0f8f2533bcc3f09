"""The running agent's status snapshot, and ``hume-edge status`` for an operator on the box.

The agent writes a small JSON snapshot every few seconds (atomically: a temporary file in the same
directory, then ``os.replace``), and ``hume-edge status`` only ever reads that file. So an operator's
look never touches the agent's sockets or its outbox database, cannot block the agent, and works without
privileges when the file is world-readable. Under systemd the file lives in ``RuntimeDirectory=``
(``/run/hume-edge``, tmpfs: no SD-card wear, gone after a stop or reboot).

The file is the agent-wide health snapshot (``agent.ops.health.Health.to_json()``, the same body as the
retained ``health`` topic) plus what only the file needs; it is read with the fleet's reader
(:func:`agent.ops.health_view.read_health`), which tolerates any field missing or mistyped, since it may
read a file an older or newer agent wrote, and cleans text of control characters::

    {"pid": 812, "written_at": 1764020000.5, "interval_s": 5.0, "started_at": 1764019000.0,
     "state": "running" | "stopping" | "stopped", "device_id": "kiosk-07",
     "hume": {"state": "connected", ...}, "mqtt": {"state": "connected", "queue_depth": 3, ...},
        (or "links": {"hume": {...}, "mqtt": {...}})
     "session": {"id": "…", "active": true} | null,
     "identity": {"version": "0.1.0", "config_fingerprint": "3fa2c1e09b7d", ...} (agent.ops.identity),
     "last_error": {"at": …, "level": "warning", "logger": "…", "message": "…"} | null, ...}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, TextIO, Tuple

from agent.ops.ago import ago
from agent.ops.health_view import HealthView, read_health
from agent.ops.replace import replace_file

FILE_NAME = "status.json"
SYSTEM_PATH = Path("/run/hume-edge") / FILE_NAME
"""Where the systemd unit's agent writes (RuntimeDirectory=hume-edge)."""

INTERVAL_S = 5.0
STALE_FACTOR = 3.0
"""A snapshot older than this many write intervals means the agent is stuck (or was killed)."""

ERROR_TEXT_CHARS = 2000
"""Of the last error, ``hume-edge status`` shows this much (a broker refusal's advice runs to 300)."""
FILE_MODE = 0o640
"""The snapshot's mode: the service's user and group (``hume-edge``) read it, nobody else."""
EXIT_RUNNING, EXIT_STALE, EXIT_NOT_RUNNING = 0, 1, 3
"""``hume-edge status`` exit codes; 3 is "program is not running", as for ``systemctl status``."""


def default_path(environ: Optional[Mapping[str, str]] = None) -> Path:
    """Where the agent writes: systemd's ``$RUNTIME_DIRECTORY``, else ``./state``."""
    env = os.environ if environ is None else environ
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime or "state") / FILE_NAME


def write(path: Path, snapshot: Mapping[str, Any]) -> None:
    """Replace the snapshot atomically, stamping ``pid`` and ``written_at`` when the caller did not.

    No fsync: the file describes this boot's running process and is worthless after a power loss.
    """
    data = {"pid": os.getpid(), "written_at": time.time(), **snapshot}
    body = json.dumps(data, sort_keys=True, default=str).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Owner and the service's group (hume-edge) only: it says whether someone is in front of the kiosk
    # right now, which is not every local account's business (#31). Operators read it as members of
    # the group, or with sudo.
    replace_file(path, body, FILE_MODE)


def read(path: Path) -> Optional[Dict[str, Any]]:
    """The snapshot at ``path``, or None when there is none (or it is not a JSON object)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def run(path: Path, snapshot: Callable[[], Mapping[str, Any]], interval_s: float = INTERVAL_S) -> None:
    """Write ``snapshot()`` (a ``Health.to_json()``) every ``interval_s`` until cancelled, then a last one
    with ``state: stopped``.

    A write that fails (EMFILE when something used up the descriptors, ENOSPC, a read-only runtime
    directory) is logged, once per kind of failure every 10 minutes, and tried again at the next interval:
    the snapshot is a convenience, and losing it must never stop the agent (an EMFILE here once ended it
    with exit 1 every 10 s, #31).
    """
    import asyncio  # only the agent writes; hume-edge status never needs the event loop
    import logging

    from agent.throttle import LogThrottle

    failures = LogThrottle(logging.getLogger(__name__))
    failing: Optional[str] = None
    started_at = time.time()
    last: Mapping[str, Any] = {}
    try:
        while True:
            last = snapshot()
            try:
                write(path, {"started_at": started_at, "interval_s": interval_s, "state": "running", **last})
            except OSError as exc:
                failing = f"errno {exc.errno}"
                failures.log(
                    logging.WARNING,
                    failing,
                    "cannot write the status file %s (%s); trying again every %g s",
                    path,
                    exc.strerror or exc,
                    interval_s,
                )
            else:
                if failing is not None:
                    logging.getLogger(__name__).info("status file %s written again", path)
                    failures.clear(failing)
                    failing = None
            await asyncio.sleep(interval_s)
    finally:
        # A fresh look at the end: what stopped the agent (a refused key, say) is then in the last file.
        with contextlib.suppress(Exception):
            last = snapshot()
        with contextlib.suppress(OSError):
            write(path, {"started_at": started_at, "interval_s": interval_s, **last, "state": "stopped"})


def summary_line(snapshot: Mapping[str, Any]) -> str:
    """One line for ``systemctl status`` (sd_notify ``STATUS=``): link states, session, queue depth."""
    health = read_health(snapshot)
    parts = [f"{link.name} {link.state}" for link in health.links]
    parts.append("visitor session active" if health.session_active else "idle")
    if health.queue_depth is not None:
        parts.append(f"queue {health.queue_depth}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------------
# hume-edge status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``hume-edge status`` options."""
    parser.add_argument(
        "--path",
        type=Path,
        default=None,
        help=f"snapshot file (default: $RUNTIME_DIRECTORY/{FILE_NAME}, else {SYSTEM_PATH} when it "
        f"exists, else ./state/{FILE_NAME})",
    )
    parser.add_argument("--json", action="store_true", help="print the raw snapshot as JSON")


def _find(explicit: Optional[Path]) -> Path:
    if explicit is not None:
        return explicit
    if os.environ.get("RUNTIME_DIRECTORY"):
        return default_path()
    return SYSTEM_PATH if SYSTEM_PATH.exists() else default_path()


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, runs as the service user
    return True


def verdict(snapshot: Mapping[str, Any], now: float, alive: bool) -> Tuple[int, str]:
    """The exit code of ``hume-edge status`` and the line that explains it."""
    written = snapshot.get("written_at")
    age = now - written if isinstance(written, (int, float)) else float("inf")
    interval = snapshot.get("interval_s")
    stale_after = STALE_FACTOR * (interval if isinstance(interval, (int, float)) else INTERVAL_S)
    pid = snapshot.get("pid", "?")
    if not alive or snapshot.get("state") == "stopped":
        return EXIT_NOT_RUNNING, f"agent: NOT RUNNING (last snapshot from pid {pid}, written {ago(age)})"
    if age > stale_after:
        return EXIT_STALE, f"agent: STALE snapshot, written {ago(age)} by pid {pid}: the agent may be hung"
    state = snapshot.get("state", "running")
    return EXIT_RUNNING, f"agent: {state} (pid {pid}, snapshot {ago(age)})"


def render(snapshot: Mapping[str, Any], now: float) -> List[str]:
    """The report's detail lines: device, links, session, queue and last error (read as
    :class:`~agent.ops.health_view.HealthView`: text from the file cannot move the terminal's cursor)."""
    health = read_health(snapshot, text_chars=ERROR_TEXT_CHARS)
    lines: List[str] = []
    if health.device_id:
        lines.append(f"device:     {health.device_id}")
    if isinstance(snapshot.get("identity"), dict):
        lines.append(_agent_line(health))
    started = snapshot.get("started_at")
    if isinstance(started, (int, float)):
        lines.append(f"started:    {ago(now - started)}")
    for link in health.links:
        # Scalars only: nested parts (the Hume link's per-socket figures and counters) are in --json.
        extra = "  " + ", ".join(f"{k}={v}" for k, v in link.details) if link.details else ""
        lines.append(f"link {link.name + ':':<6} {link.state}{extra}")
    if health.session_active:
        since = health.session_since
        began = f", started {ago(now - since)}" if since is not None else ""
        lines.append(f"session:    active {health.session_id or '?'}{began}")
    else:
        lines.append("session:    none (no visitor)")
    if health.queue_depth is not None:
        lines.append(f"queue:      {health.queue_depth} message(s) waiting for the broker")
    if isinstance(snapshot.get("last_error"), dict):
        at = health.last_error_at
        when = f" ({ago(now - at)})" if at is not None else ""
        lines.append(f"last error: [{health.last_error_level or '?'}] {health.last_error or '?'}{when}")
    else:
        lines.append(f"last error: {health.last_error or 'none'}")
    return lines


def _agent_line(health: HealthView) -> str:
    """What runs: version, config, Hume backend and models, Python and OS."""
    run = "+".join(health.models) if health.models is not None else "?"
    return (
        f"agent:      {health.version or '?'}, config {health.config_fingerprint or '?'}, "
        f"Hume {health.backend or '?'} {run}; Python {health.python or '?'} on {health.os or '?'}"
    )


def show(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """``hume-edge status``: print the running agent's snapshot; exit 0 fresh, 1 stale, 3 not running."""
    stream = sys.stdout if out is None else out
    path = _find(getattr(args, "path", None))
    snapshot = read(path)
    if snapshot is None:
        print(f"agent: NOT RUNNING (no status snapshot at {path})", file=stream)
        print("  check: systemctl status hume-edge ; journalctl -u hume-edge -e", file=stream)
        return EXIT_NOT_RUNNING
    now = time.time()
    code, head = verdict(snapshot, now, _alive(snapshot.get("pid")))
    if getattr(args, "json", False):
        print(json.dumps(snapshot, indent=2, sort_keys=True), file=stream)
    else:
        print("\n".join([head, *render(snapshot, now)]), file=stream)
    return code
