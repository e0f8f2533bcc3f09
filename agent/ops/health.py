"""The agent-wide health snapshot: one typed value, three readers.

The retained ``health`` topic, the status file ``hume-edge status`` reads (``agent.ops.status``) and systemd's
``STATUS=`` line all show the same :class:`Health`, so they cannot disagree. Every part is a frozen
dataclass filled by the module that knows it (the service: session, capture, summaries, the Hume link;
``agent.mqtt``: the MQTT link and the outbox; this module: the process figures), and :meth:`Health.to_json`
is the one place the wire shape is decided. The shape is the one the health topic had when it was a
dictionary (``agent/schema/messages.schema.json``, definition ``health``), so dashboards keep working.

This module imports only leaves (``agent.messages``, ``agent.hume.types``, ``agent.ops.identity``): every
layer may report into it.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from typing import Dict, Mapping, Optional

from agent.hume.types import BackendStatus
from agent.messages import utc_iso
from agent.ops.identity import Identity

JsonMapping = Mapping[str, object]
"""A JSON-ready mapping (the parts still reported untyped by their owner)."""

HumeHealth = BackendStatus
"""The Hume link, as ``Backend.status()`` reports it (``agent.hume.types.BackendStatus``)."""


@dataclasses.dataclass(frozen=True)
class ProcessHealth:
    """The agent process: how long it runs, CPU it used, memory it holds."""

    uptime_s: float
    cpu_s: float
    rss_mb: Optional[float]
    rss_peak_mb: float

    @classmethod
    def measure(cls, started_monotonic: float) -> ProcessHealth:
        cpu = os.times()
        return cls(
            uptime_s=round(time.monotonic() - started_monotonic, 1),
            cpu_s=round(cpu.user + cpu.system, 2),
            rss_mb=rss_mb(),
            rss_peak_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        )


def rss_mb() -> Optional[float]:
    """Current (not peak) resident set size, from /proc; None where there is no /proc."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


@dataclasses.dataclass(frozen=True)
class SessionHealth:
    """The visitor session: whether one is open, and its id."""

    active: bool = False
    id: Optional[str] = None
    ended: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Visits ended since the agent started, by reason (``agent.visit.session.END_REASONS``)."""


@dataclasses.dataclass(frozen=True)
class CameraHealth:
    """``state``: a word of ``agent.ops.parts`` (``online``, ``offline``, ``disabled``)."""

    state: str = "disabled"
    frames: int = 0
    frames_sent: int = 0
    media: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """The frame pipeline's counters (``in``, ``rate_limited``, ``static``, ``sent``)."""


@dataclasses.dataclass(frozen=True)
class MicrophoneHealth:
    """``state``: a word of ``agent.ops.parts`` (``online``, ``offline``, ``disabled``)."""

    state: str = "disabled"
    chunks: int = 0
    chunks_sent: int = 0
    """Pieces handed to Hume (the silence gate may cut a chunk into several, or send none of it)."""
    audio_sent_ms: int = 0
    audio_skipped_ms: int = 0
    """Audio the silence gate kept back (``agent.visit.audio_gate``): not paid for."""
    audio_unannounced_ms: int = 0
    """Audio of a visit captured before its notice was out (the part of a chunk from before that moment):
    never sent (``agent.visit.audio_gate``); the chunks it came from count in ``privacy.dropped``."""


@dataclasses.dataclass(frozen=True)
class SummaryHealth:
    """The summarizer: open sessions, observations dropped as late or idle."""

    open_sessions: int = 0
    dropped_late: int = 0
    dropped_idle: int = 0
    published: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Summaries queued since the agent started, by model (``agent.visit.tally``)."""
    last_at: Optional[str] = None
    """When the latest summary was queued (UTC ISO-8601); None before the first."""


@dataclasses.dataclass(frozen=True)
class CommandHealth:
    """What ``cmd/…`` messages came to (``agent.mqtt.guard``): acted on, or why not."""

    accepted: int = 0
    invalid: int = 0
    """Refused by validation: unknown topic, bad payload, too large."""
    retained_ignored: int = 0
    """Retained commands: never acted on (they would replay at every connect)."""
    disabled: int = 0
    """Not in ``commands.allowed``."""
    rate_limited: int = 0
    oversized: int = 0
    """Messages above ``mqtt.max_incoming_bytes`` dropped unread (MQTT 3.1.1: the broker sent them anyway)."""
    replies_dropped: int = 0
    """Replies not published: past ``commands.replies_per_s``."""


@dataclasses.dataclass(frozen=True)
class MqttHealth:
    """The MQTT link (``agent.mqtt``): state, the broker it talks to and what it did."""

    state: str
    broker: str
    protocol: str
    client_id: str
    problem: Optional[str]
    connects: int
    inflight: int
    window: int
    """Unacknowledged publishes allowed at once: ``mqtt.inflight_window``, lowered to the broker's
    Receive Maximum (MQTT 5 CONNACK)."""
    rejected: int
    """Messages the broker refused (MQTT 5 PUBACK reason code >= 0x80) this run; the outbox keeps the
    persisted count as ``dropped.refused``."""
    oversized: int
    """Messages dropped unsent because they were over ``max_packet_bytes`` (this run; the outbox keeps the
    persisted count as ``dropped.oversize``)."""
    replayed: int
    """Backlog messages sent after a (re)connect, marked ``"replay": true``."""
    max_publish_rate_per_s: float
    max_packet_bytes: int
    """``mqtt.max_message_bytes``, lowered to the broker's Maximum Packet Size (MQTT 5 CONNACK)."""
    write_failures: int
    """Messages the outbox could not store (disk full, I/O error): lost."""
    queue_depth: int
    dropped: int
    """Messages the outbox dropped unsent or undelivered, all reasons (bounds, oversize, refused by the
    broker), persisted: with those delivered, every ``seq`` ever stamped."""
    commands: CommandHealth = CommandHealth()


@dataclasses.dataclass(frozen=True)
class OutboxHealth:
    """The durable queue (``agent.mqtt.outbox``)."""

    depth: int
    bytes: int
    inflight: int
    dropped: Mapping[str, int]
    """Per bound (``rows``, ``bytes``, ``age``), persisted across restarts."""
    dropped_total: int
    synchronous: str
    path: str
    quarantined: Optional[str]
    oldest_age_s: float = 0.0
    """How long the oldest queued message has waited (0 when none): a broker outage's length, as felt."""


@dataclasses.dataclass(frozen=True)
class PrivacyHealth:
    """The privacy pause and the notice (``agent.privacy.state``): what a deployer audits."""

    deployment_context: str = ""
    paused: bool = False
    pause_left_s: Optional[float] = None
    pauses: int = 0
    """Pauses begun since start, from any source."""
    page_pauses_refused: int = 0
    """On-screen pauses refused over ``privacy.page_pauses_per_hour`` (``agent.privacy.state``)."""
    mqtt_pauses_refused: int = 0
    """``cmd/privacy pause`` refused over ``commands.privacy_per_hour`` (the same rule, its own allowance)."""
    notice_active: bool = False
    notice_published: bool = False
    """The broker acknowledged the active notice."""
    notices: int = 0
    dropped_paused: int = 0
    """Frames and audio chunks dropped unprocessed while paused."""
    dropped_unannounced: int = 0
    """Frames and chunks of a visit dropped while its notice waited for the broker's acknowledgement."""
    dropped: Dict[str, Dict[str, int]] = dataclasses.field(default_factory=dict)
    """Everything held back during a visit, by reason (``paused``, ``unannounced``, ``withdrawn``), then by
    kind (``frame``, ``audio``, ``text``): ``agent.visit.gate``."""


@dataclasses.dataclass(frozen=True)
class ServiceHealth:
    """The service's part: everything but the MQTT link, the outbox and the process figures."""

    device_id: str = ""
    session: SessionHealth = SessionHealth()
    camera: CameraHealth = CameraHealth()
    microphone: MicrophoneHealth = MicrophoneHealth()
    summaries: SummaryHealth = SummaryHealth()
    hume: Optional[HumeHealth] = None
    last_error: Optional[JsonMapping] = None
    """The latest warning or error logged (``agent.ops.logs.last_problem``)."""
    identity: Optional[Identity] = None
    """What runs: version, Python, OS, config fingerprint, backend, models, start (``agent.ops.identity``)."""
    privacy: Optional[PrivacyHealth] = None


@dataclasses.dataclass(frozen=True)
class Health:
    """The whole snapshot, stamped ``ts`` (epoch seconds; UTC ISO-8601 on the wire)."""

    ts: float
    process: ProcessHealth
    service: ServiceHealth
    mqtt: MqttHealth
    outbox: OutboxHealth

    def to_json(self) -> Dict[str, object]:
        """The ``health`` message (and status-file) shape: flat process figures, one object per part."""
        svc = self.service
        body: Dict[str, object] = {
            "device_id": svc.device_id,
            **dataclasses.asdict(self.process),
            "session": dataclasses.asdict(svc.session),
            "capture": {
                "camera": dataclasses.asdict(svc.camera),
                "microphone": dataclasses.asdict(svc.microphone),
            },
            "summaries": dataclasses.asdict(svc.summaries),
            "last_error": dict(svc.last_error) if svc.last_error is not None else None,
            "mqtt": dataclasses.asdict(self.mqtt),
            "outbox": dataclasses.asdict(self.outbox),
            "ts": utc_iso(self.ts),
        }
        if svc.hume is not None:
            body["hume"] = svc.hume.to_json()
        if svc.identity is not None:
            body["identity"] = svc.identity.to_json()
        if svc.privacy is not None:
            body["privacy"] = dataclasses.asdict(svc.privacy)
        return body
