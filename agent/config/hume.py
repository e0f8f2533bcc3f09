"""The ``[hume]`` sections: the link to Hume (or the emulator), shared settings and each API version's."""

from __future__ import annotations

import dataclasses
from typing import Tuple

from agent.config.field import setting
from agent.hume.types import HUME_MODELS


@dataclasses.dataclass(frozen=True)
class HumeV1Config:
    """Hume's v1 realtime API (the default, and the only live one since June 2026)."""

    url: str = setting("wss://api.cloud.hume.ai", "base URL of the realtime endpoints (/v1/expression/...)")
    min_session_s: float = setting(
        5.0,
        "media is held back until a visitor has been present this long, so a passer-by opens no "
        "session (each costs at least 10 s); held audio is then sent in real time, so it lags by this much",
        unit="s",
        min=0,
        max=60,
    )
    measurement_timer_ms: int = setting(
        3000, "a voice measurement every this much speech", unit="ms", min=3000, max=10000
    )
    face_threshold: float = setting(
        0.9,
        "face detection confidence threshold (its own scale: hume.v0.prob_threshold does not carry over)",
        min=0.0,
        max=1.0,
    )
    connect_timeout_s: float = setting(
        10.0, "WebSocket handshake deadline; a silent server is retried after it", unit="s", min=1, max=120
    )


@dataclasses.dataclass(frozen=True)
class HumeV0Config:
    """Hume's legacy v0 streaming API (shut down by Hume in June 2026; the emulator still speaks it)."""

    url: str = setting("wss://api.hume.ai/v0/stream/models", "WebSocket URL of the v0 streaming endpoint")
    identify_faces: bool = setting(True, "ask Hume for face ids that are stable within a visit")
    prob_threshold: float = setting(0.99, "face detection probability threshold", min=0.0, max=1.0)
    stream_window_ms: int = setting(
        5000, "sliding context window for audio models", unit="ms", min=500, max=10000
    )
    language_granularity: str = setting(
        "passage", "language model granularity", choices=("word", "sentence", "utterance", "passage")
    )
    reconnect_after_s: float = setting(
        50.0, "reopen each socket before the server's one-minute limit", unit="s", min=5, max=59
    )
    backoff_initial_s: float = setting(1.0, "first reconnect delay", unit="s", min=0.05, max=60)
    backoff_max_s: float = setting(30.0, "cap of the reconnect delay", unit="s", min=0.1, max=3600)


@dataclasses.dataclass(frozen=True)
class HumeConfig:
    """The link to Hume (or the local emulator): shared settings here, each API version's in its table."""

    backend: str = setting(
        "v1", "API version to speak: v1 realtime ([hume.v1]) or legacy v0 ([hume.v0])", choices=("v1", "v0")
    )
    api_key: str = setting(
        "", "API key; else $HUME_API_KEY, else $CREDENTIALS_DIRECTORY/hume_api_key", secret=True
    )
    models: Tuple[str, ...] = setting(
        ("face", "prosody", "burst"),
        "models to run (language, v0 only, takes text from cmd/text)",
        choices=HUME_MODELS,
    )
    fps_pred: float = setting(3.0, "frames per second the face model evaluates", unit="1/s", min=0.1, max=30)
    min_face_size: int = setting(60, "smallest face side Hume evaluates", unit="px", min=1, max=3000)
    reply_timeout_s: float = setting(10.0, "a reply not received by then is counted lost", unit="s", min=1)
    fatal_retry_s: float = setting(
        300.0, "retry delay after a refused key or exhausted account", unit="s", min=1, max=86400
    )
    rate_limit_max_s: float = setting(
        60.0,
        "longest jittered wait after the organisation's request limit refused a session, on top of the "
        "server's Retry-After (Hume's limit is per minute)",
        unit="s",
        min=2,
        max=600,
    )
    queue_seconds: float = setting(
        10.0,
        "media buffered while the link is down or busy; oldest dropped past it",
        unit="s",
        min=1,
        max=300,
    )
    allow_test_sources: bool = setting(
        False,
        "let synthetic / file / speech sources stream to a Hume endpoint that is not on loopback "
        "(billed; for a one-off check against the real API)",
    )
    v1: HumeV1Config = dataclasses.field(default_factory=HumeV1Config)
    v0: HumeV0Config = dataclasses.field(default_factory=HumeV0Config)

    @property
    def url(self) -> str:
        """The endpoint of the backend in use."""
        return self.v1.url if self.backend == "v1" else self.v0.url
