"""What ``hume-edge probe`` saw, as plain values: one report per endpoint, the differences from the contract
we know, the cost ceiling, and the two ways it is shown (the terminal's lines, the redacted transcript).

Pure: the probe's I/O (:mod:`agent.hume.probe`) fills an :class:`EndpointReport` as messages arrive; this
module knows nothing of sockets, so a report can be built and rendered in a unit test.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from agent.config import HumeConfig
from agent.hume import pricing
from agent.hume.drift import kind_name
from agent.hume.types import AUDIO_MODELS
from agent.untrusted import clip

VIDEO_FPS = 2.0
"""Frames a second the probe sends (the cost ceiling counts them)."""
MESSAGES_MAX = 2000
"""Messages kept per endpoint for the report and transcript: a chatty or hostile server cannot fill memory."""
LABELS_SHOWN = 3
KNOWN_HEADERS = frozenset(
    h.lower()
    for h in (
        # HTTP and WebSocket (RFC 9110, 6455, 7692)
        "Upgrade", "Connection", "Sec-WebSocket-Accept", "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Version", "Date", "Server", "Content-Length", "Content-Type", "Transfer-Encoding",
        "Cache-Control", "Vary", "Via", "Retry-After", "Strict-Transport-Security", "Alt-Svc", "Set-Cookie",
        "Keep-Alive", "Server-Timing",
        # what CDNs and load balancers in front of an API commonly add
        "CF-Ray", "CF-Cache-Status", "NEL", "Report-To", "X-Request-Id", "X-Cloud-Trace-Context",
        "X-Envoy-Upstream-Service-Time", "X-Content-Type-Options",
    )
)  # fmt: skip
"""Response headers our client knows; any other is listed as a difference (a rate-limit or version header
Hume adds would show here first)."""
REDACTED = "<redacted>"


@dataclasses.dataclass
class EndpointReport:
    """One session (v1 endpoint) or one socket (v0), as seen by the probe."""

    name: str
    status: Optional[int] = None
    handshake_s: Optional[float] = None
    headers: Dict[str, str] = dataclasses.field(default_factory=dict)
    close_code: Optional[int] = None
    events: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    types: Dict[str, int] = dataclasses.field(default_factory=dict)
    fields: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
    labels: List[str] = dataclasses.field(default_factory=list)
    latencies_s: List[float] = dataclasses.field(default_factory=list)
    sent: int = 0
    results: int = 0
    differences: List[str] = dataclasses.field(default_factory=list)
    error: Optional[str] = None
    refused_key: bool = False

    def differ(self, kind: str, name: object) -> None:
        key = kind_name(kind, name)
        if key not in self.differences:
            self.differences.append(key)

    def record(self, t0: float, direction: str, message: Dict[str, Any]) -> None:
        if len(self.events) < MESSAGES_MAX:
            self.events.append({"t_s": round(time.monotonic() - t0, 4), "dir": direction, **message})

    def headers_seen(self, headers: Any) -> None:
        for name, value in (headers or {}).items():
            shown = REDACTED if name.lower() == "set-cookie" else clip(value, 120)
            self.headers[clip(name, 60)] = shown
            if name.lower() not in KNOWN_HEADERS:
                self.differ("header", name)

    def to_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def scores_text(items: Any) -> List[str]:
    out = []
    for item in items or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            value = item.get("probability", item.get("score"))
            shown = f"{float(value):.2f}" if isinstance(value, (int, float)) else "?"
            out.append(f"{clip(item['name'], 40)} {shown}")
    return out[:LABELS_SHOWN]


def cost_ceiling(cfg: HumeConfig, seconds: float) -> Tuple[float, str]:
    """The most this probe can cost, and how that was computed."""
    audio = any(m in cfg.models for m in AUDIO_MODELS)
    video = "face" in cfg.models
    if cfg.backend == "v1":
        usd = (pricing.v1_session_usd("audio", seconds) if audio else 0.0) + (
            pricing.v1_session_usd("video", round(seconds * VIDEO_FPS) * pricing.V1_FRAME_BILLED_S)
            if video
            else 0.0
        )
        why = (
            f"v1: {int(audio) + int(video)} session(s), each billed at least {pricing.V1_MIN_BILLED_S:g} s; "
            f"audio ${pricing.AUDIO_USD_PER_MIN}/min, video ${pricing.V1_VIDEO_USD_PER_MIN}/min (v1 prices "
            "are unpublished: Hume's v0 per-minute rates, agent/hume/pricing.py)"
        )
        return usd, why
    usd = (pricing.IMAGE_USD if video else 0.0) + (
        min(seconds, 5.0) / 60 * pricing.AUDIO_USD_PER_MIN if audio else 0.0
    )
    return (
        usd,
        f"v0: one image at ${pricing.IMAGE_USD} and {min(seconds, 5.0):g} s of audio at "
        f"${pricing.AUDIO_USD_PER_MIN}/min",
    )


def render(cfg: HumeConfig, reports: Sequence[EndpointReport]) -> List[str]:
    lines = []
    for r in reports:
        head = f"{r.name}: handshake HTTP {r.status}"
        if r.handshake_s is not None:
            head += f" in {r.handshake_s:.3f} s"
        lat = sorted(r.latencies_s)
        head += f"; {r.sent} sent, {r.results} result(s)"
        if lat:
            head += f"; latency p50 {lat[len(lat) // 2]:.3f} s, max {lat[-1]:.3f} s"
        if r.close_code is not None:
            head += f"; closed {r.close_code}"
        lines.append(head)
        if r.types:
            lines.append("  messages: " + ", ".join(f"{t} x{n}" for t, n in r.types.items()))
        for kind, fields in r.fields.items():
            lines.append(f"  {kind}: {', '.join(fields)}")
        if r.labels:
            lines.append("  labels: " + ", ".join(r.labels))
        if r.error:
            lines.append(f"  FAILED: {r.error}")
    differences = [f"{r.name} {d}" for r in reports for d in r.differences]
    if differences:
        lines.append(f"protocol differences ({len(differences)}): what our client does not know")
        lines.extend(f"  {d}" for d in differences)
    else:
        lines.append("protocol differences: none")
    return lines


def transcript(cfg: HumeConfig, reports: Sequence[EndpointReport], usd: float) -> str:
    """The redacted transcript: every message both ways (no key, no media; scores kept)."""
    body = {
        "schema": "hume-edge/probe-transcript/1",
        "backend": cfg.backend,
        "url": cfg.url,
        "cost_ceiling_usd": round(usd, 4),
        "endpoints": [r.to_json() for r in reports],
    }
    text = json.dumps(body, indent=1, sort_keys=True)
    return text.replace(cfg.api_key, REDACTED) if cfg.api_key else text
