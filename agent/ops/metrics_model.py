"""The Prometheus metrics of one kiosk, read from its ``health`` body: names, types, units, bounded labels.

**One source, two routes.** A kiosk's own exporter (``[metrics]``: node_exporter's textfile collector, or
``GET /metrics``) and ``hume-edge fleet --metrics-listen`` both build their samples here, from the same
``health`` body: the agent from :meth:`agent.ops.health.Health.to_json` (the typed snapshot, in the very
shape the retained topic carries), the fleet from the retained message. So a kiosk reads the same whichever
route a fleet scrapes, and a test compares the two outputs line for line.

**Hostile input.** The fleet reads what anyone with publish rights under the prefix wrote. Every label
value is either one of a fixed vocabulary (link and model names, states, end reasons, drop reasons,
modalities) or clipped to :data:`MAX_LABEL_CHARS` printable characters (version, fingerprint, error
codes); free-form label sets are capped (:data:`MAX_ERROR_CODES`); numbers must be finite and not
negative. A kiosk therefore yields at most about 120 series, whatever its health says.

**Conventions** (prometheus.io/docs/practices/naming): ``hume_edge_`` prefix, base units (``_seconds``,
``_bytes``), ``_total`` on counters, state sets as one gauge per state (1 for the current one, 0 for the
others, so ``== 1`` selects and a graph shows changes), an ``_info`` gauge for what runs. Every series has
a ``device`` label, whichever route it came by. Pure: no I/O, no Prometheus library (``metrics_text``
renders).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from agent.hume.types import HUME_MODELS, STATE_SEVERITY
from agent.ops.parts import PART_STATES, PARTS

GAUGE, COUNTER = "gauge", "counter"
STATES = ("online", "stopped", "offline", "unknown")
"""A kiosk's ``hume_edge_state``: its retained ``status`` word (``unknown``: none seen yet)."""
LINKS = ("video", "audio", "text")
"""Hume link names (v1: audio, video; v0: video, audio, text)."""
DROP_REASONS = ("rows", "bytes", "age", "oversize", "refused")
"""The outbox's drop reasons (``agent.mqtt.outbox.DROP_REASONS``, repeated: a lower layer may not import it;
``tests/unit/test_metrics.py`` checks they agree)."""
MODALITIES = ("audio", "video")
PAUSE_SOURCES = ("page", "mqtt")
"""The controls whose pauses are limited per hour, refusals counted as ``privacy.<source>_pauses_refused``
(``agent.privacy.state.LIMITED_SOURCES``, repeated: a lower layer may not import it; checked to agree)."""
MAX_LABEL_CHARS = 64
MAX_ERROR_CODES = 16
"""Distinct Hume error codes exported per kiosk; the rest are summed under ``other``."""
MAX_REASONS = 8
"""Distinct session end reasons exported per kiosk (the agent has five); the rest are summed as ``other``."""


@dataclasses.dataclass(frozen=True)
class Family:
    """One metric family: its name, type, help text and label names (``device`` first, always)."""

    name: str
    type: str
    help: str
    labels: Tuple[str, ...] = ()


def _f(name: str, kind: str, text: str, *labels: str) -> Family:
    return Family(f"hume_edge_{name}", kind, text, ("device", *labels))


FAMILIES: Tuple[Family, ...] = (
    _f("state", GAUGE, "Kiosk state: 1 for the current one of online, stopped, offline, unknown", "state"),
    _f(
        "info",
        GAUGE,
        "What runs on the kiosk (always 1)",
        "version",
        "config_fingerprint",
        "backend",
        "models",
        "python",
    ),
    _f("health_timestamp_seconds", GAUGE, "When the kiosk took this health snapshot (Unix time)"),
    _f("start_time_seconds", GAUGE, "When the agent process started (Unix time)"),
    _f("session_active", GAUGE, "1 while a visitor session is open"),
    _f("sessions_total", COUNTER, "Visitor sessions ended since the agent started, by why", "reason"),
    _f("summaries_total", COUNTER, "Summaries queued for publishing since the agent started", "model"),
    _f("summaries_last_timestamp_seconds", GAUGE, "When the latest summary was queued (Unix time)"),
    _f("outbox_messages", GAUGE, "Messages in the durable outbox, waiting for the broker"),
    _f("outbox_bytes", GAUGE, "Topic and payload bytes in the outbox"),
    _f("outbox_oldest_age_seconds", GAUGE, "Age of the oldest message in the outbox (0 when empty)"),
    _f("outbox_dropped_total", COUNTER, "Messages the outbox dropped unsent, by bound (persisted)", "reason"),
    _f("mqtt_connected", GAUGE, "1 while connected to the MQTT broker"),
    _f("mqtt_connects_total", COUNTER, "MQTT connections made since the agent started"),
    _f("hume_link_state", GAUGE, "Hume link state: 1 for the current one", "link", "state"),
    _f("hume_connects_total", COUNTER, "Hume connection attempts", "link"),
    _f("hume_payloads_sent_total", COUNTER, "Media payloads (v0) or messages (v1) sent to Hume", "link"),
    _f("hume_replies_total", COUNTER, "Results received from Hume", "link"),
    _f(
        "hume_replies_lost_total",
        COUNTER,
        "Payloads whose reply never came (v0: timeout, socket lost; v1: video frames left at session end)",
        "link",
    ),
    _f("hume_errors_total", COUNTER, "Errors Hume answered with, by code (rate_limited, E0300, ...)", "code"),
    _f(
        "hume_request_limited_total",
        COUNTER,
        "Session opens the organisation's request limit refused (HTTP 429, v1 rate_limited before a session)",
        "link",
    ),
    _f(
        "hume_protocol_drift_total",
        COUNTER,
        "Message types, fields and close codes from Hume this agent does not know",
        "link",
    ),
    _f(
        "hume_billed_media_seconds_total",
        COUNTER,
        "Media-seconds Hume bills (v1: what its sessions took in, 10 s minimum each)",
        "modality",
    ),
    _f("part_state", GAUGE, "Camera, microphone and Hume link: 1 for the current state", "part", "state"),
    _f("privacy_paused", GAUGE, "1 while a privacy pause stops capture"),
    _f(
        "privacy_pauses_refused_total",
        COUNTER,
        "Pauses refused over their source's hourly allowance (page: the on-screen button, mqtt: cmd/privacy)",
        "source",
    ),
    _f("camera_frames_total", COUNTER, "Camera frames read"),
    _f("camera_frames_sent_total", COUNTER, "Camera frames sent to Hume"),
    _f("microphone_audio_sent_seconds_total", COUNTER, "Audio sent to Hume"),
    _f("microphone_audio_skipped_seconds_total", COUNTER, "Audio the silence gate kept back (not billed)"),
    _f("process_resident_memory_bytes", GAUGE, "Resident memory of the agent process"),
    _f("process_cpu_seconds_total", COUNTER, "User and system CPU time of the agent process"),
)
BY_NAME: Dict[str, Family] = {f.name: f for f in FAMILIES}


@dataclasses.dataclass(frozen=True)
class Sample:
    """One series' value: its family's name and label values (``device`` first, in the family's order)."""

    name: str
    labels: Tuple[str, ...]
    value: float


def label(value: object, limit: int = MAX_LABEL_CHARS) -> str:
    """An outside string as a label value: printable, at most ``limit`` characters ("" if not a string).
    Quotes and backslashes are the exposition's to escape (``metrics_text``)."""
    if not isinstance(value, str):
        return ""
    return "".join(ch if ch.isprintable() else "?" for ch in value[:limit])


def _num(value: object) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _obj(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def _epoch(value: object) -> Optional[float]:
    """A ``2026-11-24T21:40:52.123Z`` stamp as Unix time; None for anything else."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        stamp = datetime.datetime.strptime(value.replace("+00:00", "Z"), "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        try:
            stamp = datetime.datetime.strptime(value.replace("+00:00", "Z"), "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return None
    return stamp.replace(tzinfo=datetime.timezone.utc).timestamp()


class _Out:
    """Collects samples for one device."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.samples: List[Sample] = []

    def add(self, name: str, value: Optional[float], *labels: str) -> None:
        family = BY_NAME[f"hume_edge_{name}"]
        assert len(labels) + 1 == len(family.labels), family.name
        if value is not None:
            self.samples.append(Sample(family.name, (self.device, *labels), value))

    def flag(self, name: str, value: object) -> None:
        if isinstance(value, bool):
            self.add(name, float(value))

    def states(self, name: str, current: str, vocabulary: Sequence[str], *labels: str) -> None:
        for state in vocabulary:
            self.add(name, float(state == current), *labels, state)

    def counts(self, name: str, mapping: Mapping[str, object], vocabulary: Sequence[str]) -> None:
        """One series per known key (0 when missing, so ``rate()`` sees the first increase)."""
        for key in vocabulary:
            self.add(name, _num(mapping.get(key)) or 0.0, key)


def kiosk_samples(device: str, state: str, health: Optional[Mapping[str, object]]) -> List[Sample]:
    """Every sample of one kiosk: ``state`` is its status word, ``health`` its latest health body (None
    when none was seen: then only the state is known)."""
    return state_samples(device, state) + (health_samples(device, health) if health is not None else [])


def state_samples(device: str, state: str) -> List[Sample]:
    """``hume_edge_state`` of one kiosk."""
    out = _Out(device)
    out.states("state", state if state in STATES else "unknown", STATES)
    return out.samples


def health_samples(device: str, health: Mapping[str, object]) -> List[Sample]:
    """The samples a ``health`` body gives (everything but the state); ``device`` is used as it is (the
    agent's own id, or a topic level the fleet already checked)."""
    out = _Out(device)
    ident = _obj(health.get("identity"))
    models = ident.get("models")
    listed = models if isinstance(models, list) else []
    run = "+".join(m for m in listed if isinstance(m, str) and m in HUME_MODELS)
    out.add(
        "info",
        1.0,
        label(ident.get("version")),
        label(ident.get("config_fingerprint")),
        label(ident.get("backend"), 8),
        run,
        label(ident.get("python"), 16),
    )
    out.add("health_timestamp_seconds", _epoch(health.get("ts")))
    out.add("start_time_seconds", _epoch(ident.get("started_at")))
    session = _obj(health.get("session"))
    out.flag("session_active", session.get("active"))
    for reason, n in sorted(_bounded(_obj(session.get("ended")), MAX_REASONS).items()):
        out.add("sessions_total", n, reason)
    summaries = _obj(health.get("summaries"))
    out.counts("summaries_total", _obj(summaries.get("published")), HUME_MODELS)
    out.add("summaries_last_timestamp_seconds", _epoch(summaries.get("last_at")))
    _outbox(out, _obj(health.get("outbox")))
    mqtt = _obj(health.get("mqtt"))
    if isinstance(mqtt.get("state"), str):
        out.add("mqtt_connected", float(mqtt.get("state") == "connected"))
    out.add("mqtt_connects_total", _num(mqtt.get("connects")))
    hume = health.get("hume")
    _hume(out, _obj(hume))
    capture = _obj(health.get("capture"))
    camera, microphone = _obj(capture.get("camera")), _obj(capture.get("microphone"))
    part_words = {"camera": camera.get("state"), "microphone": microphone.get("state")}
    if isinstance(hume, dict) and isinstance(hume.get("ok"), bool):
        part_words["hume"] = "online" if hume["ok"] else "offline"
    for part in PARTS:
        word = part_words.get(part)
        if isinstance(word, str) and word in PART_STATES:
            out.states("part_state", word, PART_STATES, part)
    privacy = health.get("privacy")
    out.flag("privacy_paused", _obj(privacy).get("paused"))
    if isinstance(privacy, dict):
        refused = {source: privacy.get(f"{source}_pauses_refused") for source in PAUSE_SOURCES}
        out.counts("privacy_pauses_refused_total", refused, PAUSE_SOURCES)
    out.add("camera_frames_total", _num(camera.get("frames")))
    out.add("camera_frames_sent_total", _num(camera.get("frames_sent")))
    out.add("microphone_audio_sent_seconds_total", _ms(microphone.get("audio_sent_ms")))
    out.add("microphone_audio_skipped_seconds_total", _ms(microphone.get("audio_skipped_ms")))
    rss_mb = _num(health.get("rss_mb"))
    out.add("process_resident_memory_bytes", None if rss_mb is None else rss_mb * 2**20)
    out.add("process_cpu_seconds_total", _num(health.get("cpu_s")))
    return out.samples


def _bounded(mapping: Mapping[str, object], limit: int) -> Dict[str, float]:
    """Counts by outside key: at most ``limit`` keys (clipped to 32 characters), the rest under ``other``.

    The agent reports every key of its vocabulary from the start (0 before the first), so ``rate()`` sees
    the first increase; the bound is for what a hostile publisher sends the fleet."""
    out: Dict[str, float] = {}
    for key, value in mapping.items():
        n = _num(value)
        if n is None:
            continue
        name = label(key, 32) or "other"
        if name not in out and len(out) >= limit - 1:
            name = "other"
        out[name] = out.get(name, 0.0) + n
    return out


def _ms(value: object) -> Optional[float]:
    ms = _num(value)
    return None if ms is None else ms / 1000


def _outbox(out: _Out, outbox: Mapping[str, object]) -> None:
    out.add("outbox_messages", _num(outbox.get("depth")))
    out.add("outbox_bytes", _num(outbox.get("bytes")))
    if "depth" in outbox:
        out.add("outbox_oldest_age_seconds", _num(outbox.get("oldest_age_s")) or 0.0)
    dropped = outbox.get("dropped")
    if isinstance(dropped, dict):
        out.counts("outbox_dropped_total", dropped, DROP_REASONS)


def _hume(out: _Out, hume: Mapping[str, object]) -> None:
    """Per link: its state set and counters; backend-wide: error codes (summed over links) and billing."""
    # Every error_<code> counter, summed over the links (a 64 KB body at most); on v1 rate_limited from the
    # start, the code an alert watches (a 0 for rate() to start from).
    errors: Dict[str, float] = {"rate_limited": 0.0} if hume.get("backend") == "v1" else {}

    def count_errors(counters: Mapping[str, object]) -> None:
        for key, value in counters.items():
            n = _num(value)
            if key.startswith("error_") and n is not None:
                errors[key[len("error_") :]] = errors.get(key[len("error_") :], 0.0) + n

    links = _obj(hume.get("links"))
    for name in LINKS:
        link = links.get(name)
        if not isinstance(link, dict):
            continue
        state = link.get("state")
        if isinstance(state, str):
            known = state if state in STATE_SEVERITY else "backoff"  # as most_severe() reads it
            out.states("hume_link_state", known, STATE_SEVERITY, name)
        out.add("hume_connects_total", _num(link.get("connects")), name)
        out.add("hume_payloads_sent_total", _num(link.get("sent")), name)
        out.add("hume_replies_total", _num(link.get("replies")), name)
        lost = [n for n in (_num(link.get("lost")), _num(link.get("timeouts"))) if n is not None]
        out.add("hume_replies_lost_total", sum(lost) if lost else None, name)
        out.add("hume_request_limited_total", _num(link.get("rate_limited")), name)
        drift = [_num(link.get(f"unknown_{kind}")) for kind in ("types", "fields", "close_codes")]
        out.add("hume_protocol_drift_total", sum(n for n in drift if n is not None), name)  # named when seen
        count_errors(link)
    backend_counters = _obj(hume.get("counters"))
    count_errors(backend_counters)
    for code, n in sorted(_bounded(errors, MAX_ERROR_CODES).items()):
        out.add("hume_errors_total", n, code)
    if hume.get("backend") == "v1":  # v0 bills images and text too: not computed (docs/monitoring.md)
        for modality in MODALITIES:
            if modality in links:
                billed = _ms(backend_counters.get(f"billed_{modality}_ms")) or 0.0
                out.add("hume_billed_media_seconds_total", billed, modality)


def group(samples: Iterable[Sample], families: Sequence[Family] = FAMILIES) -> Dict[str, List[Sample]]:
    """Samples by family name (exposition wants each family in one block); every family of ``families``
    is a key."""
    out: Dict[str, List[Sample]] = {f.name: [] for f in families}
    for sample in samples:
        out[sample.name].append(sample)
    return out
