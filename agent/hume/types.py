"""The vocabulary every layer shares with the Hume backends: scores, model names, observations, link status.

Why a module of its own: capture, sessions, summaries, MQTT and the status file must not depend on either
API version's wire format. Before this module existed the "neutral" seam imported ``Score`` and the model
names from the v0 wire module, so v1 (the only live API since June 2026) was built on v0's types. Now the
backends translate their wire formats into these types and nothing outside a backend imports its wire
module. This module imports nothing from the project: it is the bottom of the Hume layer.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

MODELS: Tuple[str, ...] = ("face", "prosody", "burst", "language", "facemesh")
"""Every model name an observation may carry, in Hume's order (v0 knows all five, v1 face/prosody/burst)."""

HUME_MODELS: Tuple[str, ...] = ("face", "prosody", "burst", "language")
"""The models the agent can run (``hume.models`` choices). Hume's facemesh model is not offered: it reads
face-mesh landmarks, which the agent does not compute."""

AUDIO_MODELS: Tuple[str, ...] = ("prosody", "burst")
"""The models that read the microphone (both APIs measure them from the same audio)."""

NO_FACES = "W0103"
"""``Observation.warning_code`` of a frame with no face in it (v0's code; v1 results map onto it)."""

V1_PUBLISHES: Dict[str, str] = {"face": "face", "prosody": "prosody", "burst": "prosody"}
"""v1's models by the ``hume.models`` name that asks for them: v1 has no burst or language model, and its
voice results are published as ``prosody`` (``agent.hume.v1.wire.AUDIO_MODEL``)."""


def published_models(backend: str, models: Sequence[str]) -> Tuple[str, ...]:
    """The models whose summaries ``backend`` publishes for ``hume.models`` (HUME_MODELS order).

    v0 measures each model as named. On v1 a ``burst`` or ``language`` entity would stay ``unknown`` for
    ever in Home Assistant (it did, beside a working prosody one): only what can have a reading is
    announced and given a live state.
    """
    if backend != "v1":
        return tuple(m for m in HUME_MODELS if m in models)
    wanted = {V1_PUBLISHES[m] for m in models if m in V1_PUBLISHES}
    return tuple(m for m in HUME_MODELS if m in wanted)


UNIDENTIFIED_FACE = "unknown"
"""What Hume v0 calls every face when identify_faces is off (left as it is: it names no one)."""


def scoped_face_id(raw: Optional[str], scope: str) -> Optional[str]:
    """Hume's per-connection face id made unique across connections: ``face_0`` -> ``face_0@3fa2c1``.

    Both APIs number faces per connection (v0 ``"face_0"``, v1 the integer ``0``) and reuse the numbers
    for other people on the next one, and the agent opens a new connection for every visitor; ``scope``
    (a few random hex digits per connection) keeps two visitors from ever sharing an id downstream. A bare
    number (v1) gets v0's ``face_`` prefix, so both backends publish the same shape.
    """
    if raw is None or raw == UNIDENTIFIED_FACE:
        return raw
    name = f"face_{raw}" if raw.isdigit() else raw
    return f"{name}@{scope}"


@dataclasses.dataclass(frozen=True)
class Score:
    """One named score (an emotion, a FACS unit, a sentiment level, a toxicity category)."""

    name: str
    score: float


Scores = Tuple[Score, ...]


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One prediction, normalized: one face in a frame, one audio segment, one text span."""

    emotions: Scores
    face_id: Optional[str] = None
    """Face model: the id Hume assigned ("unknown" unless identify_faces)."""
    begin_s: Optional[float] = None
    """Start on the stream's clock (seconds since the stream's first payload), when the model gives one."""
    end_s: Optional[float] = None
    text: Optional[str] = None
    sentiment: Optional[Scores] = None
    toxicity: Optional[Scores] = None


@dataclasses.dataclass(frozen=True)
class Observation:
    """What one model said about one payload: measurements, or a "nothing detected" warning."""

    model: str
    """face, prosody, burst, language or facemesh."""
    captured_at: float
    """Wall-clock (UTC epoch seconds) capture time of the media the payload carried."""
    measurements: Tuple[Measurement, ...] = ()
    warning_code: Optional[str] = None
    """Set when the model detected nothing (e.g. W0103 no faces); ``measurements`` is then empty."""
    latency_s: float = 0.0
    """Round trip from sending the payload to receiving its reply."""
    session_id: Optional[str] = None
    """The visitor session whose media this was (set by the sender, echoed back)."""


@dataclasses.dataclass(frozen=True)
class OutgoingMedia:
    """A payload waiting to be sent. ``session_id`` travels with it so a reply is never mis-attributed."""

    kind: str  # "frame" | "audio" | "text"
    data: bytes
    captured_at: float
    session_id: Optional[str]
    duration_s: float = 0.0


# --------------------------------------------------------------------------------------------------
# Link status: what health messages, the status file and systemd's STATUS= say about Hume

JsonScalar = Union[None, bool, int, float, str]
Json = Union[JsonScalar, List["Json"], Dict[str, "Json"]]

STATE_SEVERITY: Tuple[str, ...] = (
    "auth_failed",
    "quota_exhausted",
    "disabled",
    "rate_limited",
    "backoff",
    "connecting",
    "closing",
    "open",
    "idle",
)
"""Link states, most severe first; a backend's state is the most severe of its links'.

``auth_failed`` (key refused), ``quota_exhausted`` (v0 E0300), ``disabled`` (v1: the server rejected our
session config; that modality stays off until restart), ``rate_limited`` (the organisation's request limit
refused a session: HTTP 429 or v1's ``rate_limited`` before a session; waiting for the budget, media held),
``backoff`` (waiting to reconnect), ``connecting``,
``closing`` (v1: ending a visit's session), ``open``, ``idle`` (nothing to send, no socket)."""

FAILURE_STATES = frozenset({"auth_failed", "quota_exhausted", "disabled", "rate_limited", "backoff"})
"""States in which media of that link is not reaching Hume."""


def most_severe(states: Tuple[str, ...]) -> str:
    """The most severe of ``states`` (``idle`` for none); an unknown state counts as ``backoff``."""
    known = [s if s in STATE_SEVERITY else "backoff" for s in states]
    return next((s for s in STATE_SEVERITY if s in known), "idle")


@dataclasses.dataclass(frozen=True)
class LinkStatus:
    """One v0 socket (video, audio, text) or one v1 endpoint (audio, video)."""

    state: str
    """One of :data:`STATE_SEVERITY`."""
    last_error: Optional[str] = None
    """The latest failure, already bounded in length by the backend; None while healthy."""
    connects: int = 0
    """Connection attempts since start."""
    sent: int = 0
    """Payloads (v0) or media messages (v1) sent."""
    replies: int = 0
    """Results received."""
    latency_p50_s: Optional[float] = None
    latency_max_s: Optional[float] = None
    counters: Tuple[Tuple[str, float], ...] = ()
    """Backend-specific counters (drops, timeouts, warning / error codes seen, ``rate_limited`` refusals,
    ``unknown_types`` / ``unknown_fields`` / ``unknown_close_codes`` of protocol drift), name-sorted."""
    unknown: Tuple[Tuple[str, int], ...] = ()
    """Protocol drift by name (``type:...``, ``field:...``, ``close_code:...``; at most 32, then ``other``),
    with counts (:mod:`agent.hume.drift`); empty while the server speaks the contract we know."""

    def to_json(self) -> Dict[str, Json]:
        out: Dict[str, Json] = {
            "state": self.state,
            "last_error": self.last_error,
            "connects": self.connects,
            "sent": self.sent,
            "replies": self.replies,
            "latency_p50_s": self.latency_p50_s,
            "latency_max_s": self.latency_max_s,
        }
        out.update(self.counters)
        if self.unknown:
            out["unknown"] = {name: count for name, count in self.unknown}
        return out


@dataclasses.dataclass(frozen=True)
class BackendStatus:
    """What a backend says about its Hume link; both v0 and v1 fill every field.

    Built on demand by :meth:`agent.hume.backend.Backend.status` (a few dozen attribute reads), so the
    service can ask for it every status tick.
    """

    backend: str
    """``v1`` or ``v0``."""
    state: str
    """The most severe state of any link (:func:`most_severe`)."""
    ok: bool
    """No link in a :data:`FAILURE_STATES` state."""
    last_error: Optional[str]
    """The failure that explains ``state``, prefixed with the link's name: the most recent one among the
    links in that state, else the most recent of any link; None while healthy."""
    links: Tuple[Tuple[str, LinkStatus], ...]
    """Per link (v0: video / audio / text sockets; v1: audio / video endpoints), in a fixed order."""
    counters: Tuple[Tuple[str, float], ...] = ()
    """Backend-wide counters (results dropped, visits pending, ...), name-sorted."""

    @classmethod
    def of_links(
        cls,
        backend: str,
        links: Tuple[Tuple[str, LinkStatus], ...],
        error_at: Mapping[str, float],
        counters: Tuple[Tuple[str, float], ...] = (),
    ) -> BackendStatus:
        """The status of ``links``; ``error_at``: when each link's ``last_error`` happened (any clock).

        The headline error is the one behind the headline state: with the audio socket refused a key
        (``auth_failed``) and the video socket closed by the server a moment later, an operator must read
        "check the key", not the later and lesser close.
        """
        state = most_severe(tuple(link.state for _, link in links))
        failing = [(name, link) for name, link in links if link.last_error is not None]
        explaining = [(name, link) for name, link in failing if link.state == state] or failing
        latest = max(explaining, key=lambda item: error_at.get(item[0], 0.0), default=None)
        return cls(
            backend=backend,
            state=state,
            ok=not any(link.state in FAILURE_STATES for _, link in links),
            last_error=None if latest is None else f"{latest[0]}: {latest[1].last_error}",
            links=links,
            counters=counters,
        )

    def link(self, name: str) -> LinkStatus:
        """The status of link ``name``; KeyError when the backend has no such link."""
        for key, value in self.links:
            if key == name:
                return value
        raise KeyError(name)

    @property
    def connects(self) -> int:
        """Connection attempts of all links together."""
        return sum(link.connects for _, link in self.links)

    def to_json(self) -> Dict[str, Json]:
        """The JSON object health messages and the status file carry under ``hume``."""
        out: Dict[str, Json] = {
            "backend": self.backend,
            "state": self.state,
            "ok": self.ok,
            "last_error": self.last_error,
            "connects": self.connects,
            "links": {name: link.to_json() for name, link in self.links},
            "counters": dict(self.counters),
        }
        return out


def counters(values: Mapping[str, float]) -> Tuple[Tuple[str, float], ...]:
    """``values`` as the name-sorted pairs :class:`LinkStatus` and :class:`BackendStatus` hold."""
    return tuple(sorted(values.items()))
