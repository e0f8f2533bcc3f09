"""The fleet report as a terminal table: one line per kiosk under a header, then a summary line."""

from __future__ import annotations

import collections
import dataclasses
from typing import List, Tuple

from agent.ops.ago import ago_iso
from agent.ops.fleet.fold import STATES, FleetReport


def _opt(value: object) -> str:
    return "-" if value is None else str(value)


def render_table(report: FleetReport, now: float) -> List[str]:
    """One line per kiosk under a header, then a summary line."""
    header = (
        "DEVICE", "STATE", "VERSION", "CONFIG", "SESSION", "HUME", "QUEUE", "DROPS", "LAST SEEN", "LAST ERROR"
    )  # fmt: skip
    rows: List[Tuple[str, ...]] = []
    for k in report.kiosks:
        h = k.health
        session = "-" if h.session_active is None else "active" if h.session_active else "idle"
        config = _opt(h.config_fingerprint) + (" *differs" if k.config_differs else "")
        rows.append(
            (
                k.device + ("" if k.expected else " *unexpected"),
                k.state,
                _opt(h.version),
                config,
                session,
                _opt(h.hume_state),
                _opt(h.queue_depth),
                _opt(h.dropped),
                ago_iso(h.ts, now),
                _opt(h.last_error),
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(r[:-1], widths)), r[-1]]).rstrip()
        for r in [header, *rows]
    ]
    lines.append(summary_line(report))
    return lines


def summary_line(report: FleetReport) -> str:
    counts = collections.Counter(k.state for k in report.kiosks)
    parts = [f"{len(report.kiosks)} kiosk(s): " + ", ".join(f"{counts[s]} {s}" for s in STATES)]
    if counts["unknown"]:
        parts[0] += f", {counts['unknown']} unknown"
    versions = collections.Counter(k.health.version for k in report.kiosks if k.health.version)
    if versions:
        parts.append("versions " + ", ".join(f"{v} x{n}" for v, n in sorted(versions.items())))
    differs = [k.device for k in report.kiosks if k.config_differs]
    if report.majority_fingerprint:
        parts.append(
            f"config {report.majority_fingerprint} on most"
            + (f"; differs on {', '.join(differs)}" if differs else "")
        )
    elif len({k.health.config_fingerprint for k in report.kiosks if k.health.config_fingerprint}) > 1:
        parts.append("config: no majority")
    hume = collections.Counter(k.health.hume_state for k in report.kiosks if k.health.hume_state)
    if hume:
        parts.append("hume " + ", ".join(f"{n} {state}" for state, n in sorted(hume.items())))
    unexpected = [k.device for k in report.kiosks if not k.expected]
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (not in --expect): {', '.join(unexpected)}")
    if report.ignored.total:
        ignored = ", ".join(f"{n} {name}" for name, n in dataclasses.asdict(report.ignored).items() if n)
        parts.append(f"ignored {ignored}")
    return "; ".join(parts)
