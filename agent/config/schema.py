"""What can be configured: each section a frozen dataclass, each field with its documentation and range.

Each field carries its documentation, unit and allowed range in ``metadata`` (see :func:`setting`), so
validation (``agent.config.loading``), ``check-config`` output (``agent.config.render``) and the example file
test all read one source of truth. Secret fields stay out of ``repr()``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Tuple

from agent.config.field import setting
from agent.config.hume import HumeConfig


@dataclasses.dataclass(frozen=True)
class CameraConfig:
    """Where frames come from and how they are downsampled before leaving the device."""

    source: str = setting(
        "opencv",
        "frame source: picamera2 / opencv = a real camera; synthetic = a scripted face (demo, tests)",
        choices=("synthetic", "opencv", "picamera2", "none"),
    )
    device: str = setting(
        "0",
        "opencv: camera index (e.g. 0), a camera's device node (/dev/video0), or a video file path (looped)",
    )
    width: int = setting(640, "frame width sent to Hume", unit="px", min=64, max=3000)
    height: int = setting(480, "frame height sent to Hume", unit="px", min=64, max=3000)
    fps: float = setting(
        2.0, "frames per second sent at most (capped by hume.fps_pred)", unit="1/s", min=0.1, max=30
    )
    jpeg_quality: int = setting(80, "JPEG quality", min=10, max=100)
    crop: str = setting(
        "faces",
        "faces = send only the region around the faces the on-device detector found (the whole frame "
        "when it found none); frame = always the whole frame",
        choices=("faces", "frame"),
    )
    static_threshold: float = setting(
        2.0,
        "skip a frame whose mean abs. difference to the last sent one, in each 1/48 of the picture, "
        "is below this (0 = never)",
        unit="grey levels",
        min=0.0,
        max=255.0,
    )
    static_refresh_s: float = setting(
        5.0,
        "send a near-identical frame anyway this long after the last sent one (0 = never)",
        unit="s",
        min=0.0,
        max=3600.0,
    )


@dataclasses.dataclass(frozen=True)
class MicrophoneConfig:
    """Where audio comes from; it is always sent as 16 kHz mono 16-bit."""

    source: str = setting(
        "pyaudio",
        "audio source: pyaudio = a real microphone; speech = synthetic espeak-ng voice, wav = a file "
        "(demo, tests)",
        choices=("speech", "wav", "pyaudio", "none"),
    )
    device: str = setting("", "pyaudio: input device name (substring) or index; empty = default")
    device_rate: int = setting(
        0,
        "pyaudio: capture rate asked of the device, resampled to 16 kHz; 0 = the device's default",
        unit="Hz",
        min=0,
        max=192000,
    )
    wav_path: str = setting("", "wav: path of a WAV file, looped")
    chunk_ms: int = setting(1000, "audio per payload", unit="ms", min=100, max=5000)
    silence_gate: bool = setting(
        True, "send only audio near voice (with pre-roll and hang-over); false = all audio of a visit"
    )
    gate_preroll_ms: int = setting(
        300, "silence gate: audio kept before the first voiced 100 ms", unit="ms", min=0, max=2000
    )
    gate_hangover_ms: int = setting(
        700, "silence gate: audio still sent after the last voiced 100 ms", unit="ms", min=100, max=5000
    )


@dataclasses.dataclass(frozen=True)
class SessionConfig:
    """When a visitor session starts and ends."""

    mode: str = setting(
        "presence",
        "presence = local detection starts/ends visits; always = one endless session; "
        "command = only MQTT cmd/session starts them",
        choices=("presence", "always", "command"),
    )
    debounce_s: float = setting(
        1.0, "presence must hold this long to start a session", unit="s", min=0, max=60
    )
    grace_s: float = setting(5.0, "absence must hold this long to end a session", unit="s", min=0, max=600)
    max_session_s: float = setting(900.0, "a session is cut after this long", unit="s", min=10, max=86400)
    stream_when_idle: bool = setting(False, "also stream to Hume while no visitor is present (costs credits)")
    hold_commanded: bool = setting(
        False,
        "a cmd/session start holds its session until end or max_session_s even with nobody present "
        "(costs credits); false = it ends after grace_s of absence like any other",
    )


@dataclasses.dataclass(frozen=True)
class SummaryConfig:
    """How predictions become the small messages dashboards read."""

    top_k: int = setting(3, "expressions per summary", min=1, max=53)
    window_s: float = setting(5.0, "predictions averaged per summary", unit="s", min=0.5, max=600)
    smoothing: float = setting(
        0.0, "exponential smoothing of scores across windows (0 = none)", min=0.0, max=0.99
    )


@dataclasses.dataclass(frozen=True)
class MqttConfig:
    """The broker dashboards read from."""

    host: str = setting("localhost", "broker host name or address")
    port: int = setting(1883, "broker port", min=1, max=65535)
    protocol: str = setting("5", "MQTT protocol version", choices=("3.1.1", "5"))
    transport: str = setting("tcp", "tcp or websockets", choices=("tcp", "websockets"))
    username: str = setting("", "user name; empty = anonymous")
    password: str = setting("", "password; else $CREDENTIALS_DIRECTORY/mqtt_password", secret=True)
    client_id: str = setting("", "MQTT client id; empty = hume-edge-<device_id>")
    tls: bool = setting(False, "use TLS")
    tls_ca: str = setting("", "CA bundle path; empty = system CAs")
    tls_cert: str = setting("", "client certificate path (PEM)")
    tls_key: str = setting("", "client key path (PEM)")
    allow_plaintext: bool = setting(
        False,
        "allow a broker off this machine without TLS (summaries, commands and the password travel in clear)",
    )
    keepalive_s: int = setting(30, "keepalive interval", unit="s", min=5, max=3600)
    topic_prefix: str = setting("hume-edge", "topics are {topic_prefix}/{device_id}/...")
    qos: int = setting(1, "QoS of summaries and events", choices=(1, 2))
    health_interval_s: float = setting(30.0, "retained health message period", unit="s", min=1, max=3600)
    discovery: bool = setting(True, "publish Home Assistant MQTT discovery")
    discovery_prefix: str = setting("homeassistant", "Home Assistant discovery prefix")
    reconnect_min_s: float = setting(1.0, "first reconnect delay", unit="s", min=0.1, max=60)
    reconnect_max_s: float = setting(60.0, "cap of the reconnect delay", unit="s", min=1, max=3600)
    inflight_window: int = setting(
        100,
        "unacknowledged publishes at once (AWS IoT Core allows 100); lowered to the broker's Receive Maximum",
        min=1,
        max=65535,
    )
    max_publish_rate_per_s: float = setting(
        100.0,
        "publishes per second at most, replay included (AWS IoT Core allows 100 per connection)",
        unit="per_s",
        min=1,
        max=1_000_000,
    )
    max_message_bytes: int = setting(
        131_072,
        "largest PUBLISH packet sent (AWS IoT Core: 128 KB); larger queued messages are dropped and "
        "counted; lowered to the broker's Maximum Packet Size",
        unit="bytes",
        min=1024,
        max=268_435_455,
    )
    replay: str = setting(
        "live_first",
        "after an outage: live_first sends new messages before the backlog, in_order sends all by seq",
        choices=("live_first", "in_order"),
    )
    max_incoming_bytes: int = setting(
        262_144,
        "largest packet the broker may send us (MQTT 5 Maximum Packet Size; the broker drops larger ones "
        "for this client before they are buffered); MQTT 3.1.1 cannot say it: set the broker's "
        "message_size_limit",
        unit="bytes",
        min=65_536,
        max=268_435_455,
    )
    will_delay_s: int = setting(
        15,
        "MQTT 5: the broker waits this long before publishing 'offline' (a blip does not flap)",
        unit="s",
        min=0,
        max=3600,
    )


@dataclasses.dataclass(frozen=True)
class OutboxConfig:
    """The durable queue between summaries and the broker."""

    path: str = setting("", "SQLite file; empty = $STATE_DIRECTORY/outbox.sqlite, else ./state/outbox.sqlite")
    max_rows: int = setting(100_000, "messages kept at most; oldest dropped past it", min=10, max=10_000_000)
    max_bytes: int = setting(
        50_000_000, "payload bytes kept at most; oldest dropped past it", unit="bytes", min=10_000, max=10**10
    )
    max_age_s: float = setting(
        86400.0,
        "messages older than this are dropped (and MQTT 5 expiry); a day by default: data minimisation, "
        "see docs/privacy.md",
        unit="s",
        min=60,
        max=365 * 86400,
    )
    synchronous: str = setting(
        "full",
        "SQLite fsync policy: full loses nothing on a power cut; normal writes about half the bytes and may "
        "lose what was queued since the last fsync (at most 999 messages); neither reuses a seq",
        choices=("full", "normal"),
    )


DEFAULT_NOTICE_TEXT = (
    "This kiosk measures facial and vocal expressions while you are in front of it, with Hume AI's "
    "Expression Measurement. No picture or sound is stored; only short summaries of expressions are kept. "
    "Press Pause to stop it."
)
"""What the retained ``notice`` message and the on-screen page say unless ``privacy.notice_text`` is set."""

DEPLOYMENT_CONTEXTS = ("public", "retail", "event", "research", "workplace", "education")
PROHIBITED_CONTEXTS = ("workplace", "education")
"""EU AI Act Art. 5(1)(f): no emotion inference in workplaces and education institutions (since
2 February 2025), except where intended for medical or safety reasons."""


@dataclasses.dataclass(frozen=True)
class PrivacyConfig:
    """Where the kiosk stands, what visitors are told, how they pause it, what is kept: docs/privacy.md."""

    deployment_context: str = setting(
        "public",
        "where the kiosk is deployed; workplace and education are refused (EU AI Act Art. 5(1)(f)) "
        "unless medical_or_safety_reason is set",
        choices=DEPLOYMENT_CONTEXTS,
    )
    medical_or_safety_reason: str = setting(
        "",
        "workplace / education only: the medical or safety purpose the system serves (Art. 5(1)(f) "
        "exception), logged at start; empty = no exception",
    )
    notice_text: str = setting(
        DEFAULT_NOTICE_TEXT, "notice published (retained 'notice') and shown on screen"
    )
    max_pause_s: float = setting(
        300.0, "a privacy pause ends by itself after this long", unit="s", min=10, max=86400
    )
    per_face_detail: bool = setting(
        True, "face summaries list each face id with its own top list; false = one aggregate list"
    )
    page: bool = setting(False, "serve the on-screen notice and pause page (loopback only)")
    page_host: str = setting("127.0.0.1", "page: loopback address to bind (127.0.0.0/8 or ::1)")
    page_port: int = setting(8750, "page: TCP port", min=1, max=65535)
    page_pauses_per_hour: int = setting(
        6,
        "page: pauses its button may begin in any hour (so at most this many times max_pause_s paused); "
        "past it the page tells the visitor why and when pausing works again",
        unit="1/h",
        min=1,
        max=3600,
    )
    gpio_button_pin: int = setting(
        -1, "GPIO (BCM) pin of a pause/resume push button; -1 = none", min=-1, max=27
    )
    gpio_led_pin: int = setting(
        -1, "GPIO (BCM) pin of an LED lit while media may be sent; -1 = none", min=-1, max=27
    )


COMMAND_NAMES = ("session", "text", "discovery", "privacy")
"""The ``cmd/<name>`` topics the agent understands (``agent.mqtt.commands``)."""


@dataclasses.dataclass(frozen=True)
class CommandsConfig:
    """Which MQTT commands the kiosk obeys and how often: a session start and every text cost money, and
    every command is answered with a publication, so whoever can publish must not be able to run either up.
    Refusals are answered on ``cmd/result`` (within ``replies_per_s``) and counted in ``health``."""

    allowed: Tuple[str, ...] = setting(
        COMMAND_NAMES, "cmd/<name> topics obeyed; the others are refused", choices=COMMAND_NAMES
    )
    session_starts_per_hour: int = setting(
        30,
        "cmd/session start accepted at most this often (each opens a paid session)",
        unit="1/h",
        max=3600,
        min=0,
    )
    text_chars_per_minute: int = setting(
        20_000,
        "cmd/text characters accepted per minute (a payload to Hume each; one message holds at most 10,000)",
        unit="chars/min",
        min=0,
        max=1_000_000,
    )
    privacy_per_hour: int = setting(
        6,
        "cmd/privacy: pauses it may begin in any hour (so at most this many times privacy.max_pause_s "
        "paused); 0 = none; resume is not limited",
        unit="1/h",
        min=0,
        max=3600,
    )
    discovery_per_minute: int = setting(
        6,
        "cmd/discovery and Home Assistant birth re-announcements at most this often",
        unit="1/min",
        min=1,
        max=600,
    )
    replies_per_s: float = setting(
        5.0,
        "cmd/result replies at most; refusals past it go unanswered (counted)",
        unit="1/s",
        min=0.1,
        max=1000,
    )


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    """Prometheus metrics (docs/monitoring.md); both off by default, and no port is opened unless asked."""

    textfile_dir: str = setting(
        "",
        "write hume_edge.prom here every mqtt.health_interval_s, for node_exporter's textfile collector "
        "(e.g. /var/lib/prometheus/node-exporter); empty = off",
    )
    listen: str = setting("", "serve GET /metrics on HOST:PORT, e.g. 127.0.0.1:9852; empty = off")
    allow_remote: bool = setting(False, "let listen use an address that is not loopback")


def split_listen(text: str) -> Tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port); ValueError naming what is allowed."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: expected HOST:PORT with a port between 1 and 65535, e.g. 127.0.0.1:9852")
    return host, int(port)


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole agent configuration."""

    device_id: str = setting("", "id in topics and messages; empty = hostname")
    log_level: str = setting("info", "log verbosity", choices=("debug", "info", "warning", "error"))
    hume: HumeConfig = dataclasses.field(default_factory=HumeConfig)
    camera: CameraConfig = dataclasses.field(default_factory=CameraConfig)
    microphone: MicrophoneConfig = dataclasses.field(default_factory=MicrophoneConfig)
    session: SessionConfig = dataclasses.field(default_factory=SessionConfig)
    summary: SummaryConfig = dataclasses.field(default_factory=SummaryConfig)
    mqtt: MqttConfig = dataclasses.field(default_factory=MqttConfig)
    commands: CommandsConfig = dataclasses.field(default_factory=CommandsConfig)
    outbox: OutboxConfig = dataclasses.field(default_factory=OutboxConfig)
    privacy: PrivacyConfig = dataclasses.field(default_factory=PrivacyConfig)
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)

    @property
    def effective_device_id(self) -> str:
        """The configured device id, else this machine's host name."""
        import socket  # imported when used: check-config's cold start is benchmarked

        return self.device_id or socket.gethostname()

    @property
    def outbox_path(self) -> Path:
        """Where the outbox lives: configured, systemd's StateDirectory, or ./state."""
        if self.outbox.path:
            return Path(self.outbox.path)
        state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        return Path(state or "state") / "outbox.sqlite"
