"""The v1 realtime backend: one audio and one video session per visitor, opened only when worth paying for.

Design (why it looks like this):

- **Visits, not streams; minimum billing** (:mod:`agent.hume.v1.visits`): each visit gets its own v1
  sessions, closed at its end, so no utterance context or face id crosses visitors; a visit's media is
  held until it has lasted ``hume.v1.min_session_s``, then audio goes in real time and held frames at the
  API's 3 fps, oldest first.
- **Reconnects follow the official SDK** (:func:`agent.hume.v1.protocol.should_reconnect`): after a
  ``server_shutdown``, closes 1001/1006/1011/1012/1013, and 1008 after an audio ``internal_error``.
  Delays are the SDK's (first 1-5 s, x1.3, capped at 10 s; reset after 5 s up) through the shared
  :class:`agent.backoff.Backoff`. A 401 is never retried quickly (and fails ``run`` on the first
  connect); a ``config_invalid`` disables the modality until restart, since the same config would
  fail again. Unlike the SDK, a daemon never gives up after 30 attempts.
- **The organisation's request limit** (Hume: 600 requests a minute for all keys of an organisation) is
  neither a refused key nor a dead server: an HTTP 429 at the handshake, or a ``rate_limited`` error
  before any ``session.created``, puts the endpoint in ``rate_limited`` and waits what ``Retry-After``
  asks plus a full-jitter draw (:func:`agent.backoff.rate_limit_backoff`: 1 s up to a ceiling doubling
  from 8 s to 60 s). The visit's media stays held meanwhile (audio up to ``hume.queue_seconds``, video
  its freshest frames), so a visitor who arrives while limited is measured once a session opens.
- **Protocol drift**: every message type, field and close code this client does not know is counted per
  endpoint and logged once (:class:`agent.hume.drift.Drift`), and shows in health.
- v1 has no text model: :meth:`send_text` counts and drops.

This module decides when a session opens and what its end means; one session on its socket is
:mod:`agent.hume.v1.session`, and each endpoint's state, delays and failures :mod:`agent.hume.v1.endpoint`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
import time
from typing import Callable, Deque, Dict, List, Optional, Tuple

import aiohttp

from agent.aio import OnFirstUse, cancel_and_wait, spawn
from agent.backoff import rate_limited_delay
from agent.config import HumeConfig
from agent.errors import HumeAuthError, HumeProtocolError
from agent.hume.backend import Backend
from agent.hume.types import AUDIO_MODELS, BackendStatus, Observation, OutgoingMedia, counters
from agent.hume.v1 import protocol as p
from agent.hume.v1.endpoint import FIRST_DELAY_RANGE_S, MIN_UPTIME_S, Endpoint
from agent.hume.v1.handshake import Refused, Silent
from agent.hume.v1.session import run_session
from agent.hume.v1.visits import Visit, Visits
from agent.hume.v1.wire import AudioWire, VideoWire, _Wire
from agent.untrusted import clip

_LOGGER = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408})
RATE_LIMITED_STATUS = 429
RESULTS_MAX = 1000
VIDEO_HELD = 3
"""Frames of a qualified visit kept at most while the socket is busy (the newest win)."""
HELD_LAG_MARGIN_S = 3.0
"""Frames up to ``hume.v1.min_session_s`` plus this behind the newest are still worth sending: the hub's
frames held through the visit's debounce (``session.debounce_s``, 1 s by default) come before the start,
and the session opens after the visit qualified (2 s later in benchmark 8 on a loaded machine). With 1 s
the visit's first two frames were dropped as stale, by 2 ms for the second, and 1.5 s of its start went
unmeasured."""


class V1Backend(Backend):
    """Hume's v1 realtime API behind the :class:`~agent.hume.backend.Backend` interface."""

    def __init__(
        self, cfg: HumeConfig, *, first_delay_range_s: Tuple[float, float] = FIRST_DELAY_RANGE_S
    ) -> None:
        """``first_delay_range_s``: where the first reconnect delay is drawn from (tests shorten it)."""
        self.cfg = cfg
        self._endpoints: List[str] = []
        if any(m in cfg.models for m in AUDIO_MODELS):
            self._endpoints.append("audio")
        if "face" in cfg.models:
            self._endpoints.append("video")
        self._fps = min(p.VIDEO_MAX_FPS, cfg.fps_pred)
        # A visit's frames while it qualifies are kept and sent (oldest first, at the API's rate) once it
        # has: its first seconds are measured too, not only its last frames (scripts/bench/kioskday.py).
        self._video_lag_s = cfg.v1.min_session_s + HELD_LAG_MARGIN_S
        self._visits = Visits(
            self._endpoints,
            min_session_s=cfg.v1.min_session_s,
            audio_max_frames=max(
                1, round(max(cfg.queue_seconds, cfg.v1.min_session_s) * 1000 / p.AUDIO_FRAME_MS)
            ),
            video_held=max(VIDEO_HELD, math.ceil(self._video_lag_s * self._fps) + 1),
            count=self._count,
            on_end=self._wake_all,
        )
        self._events: Dict[str, OnFirstUse[asyncio.Event]] = {
            name: OnFirstUse(asyncio.Event) for name in ("audio", "video", "results")
        }
        self._results: Deque[Observation] = collections.deque(maxlen=RESULTS_MAX)
        self._stats: Dict[str, int] = {}
        self._disabled: Dict[str, str] = {}
        self._wires: Dict[str, _Wire] = {}
        self._connected_once = False
        rng = random.Random()
        self._ep = {
            e: Endpoint(
                e, rng, first_delay_range_s=first_delay_range_s, rate_limit_max_s=cfg.rate_limit_max_s
            )
            for e in self._endpoints
        }

    # ------------------------------------------------------------------------------------------
    # Backend interface: never blocks, never fails

    def _count(self, key: str, n: int = 1) -> None:
        self._stats[key] = self._stats.get(key, 0) + n

    def _event(self, name: str) -> asyncio.Event:
        """The event of ``name`` ("audio", "video": media to send; "results": an observation is ready)."""
        return self._events[name].get()

    def _wake_all(self) -> None:
        for endpoint in self._endpoints:
            self._event(endpoint).set()

    def send_audio(self, pcm16: bytes, captured_at: float, session_id: Optional[str]) -> None:
        if "audio" not in self._endpoints or "audio" in self._disabled:
            self._count("audio_dropped_disabled")
            return
        self._visits.add_audio(pcm16, captured_at, session_id)
        self._event("audio").set()

    def send_frame(self, jpeg: bytes, captured_at: float, session_id: Optional[str]) -> None:
        if "video" not in self._endpoints or "video" in self._disabled:
            self._count("video_dropped_disabled")
            return
        if len(jpeg) > p.VIDEO_MESSAGE_MAX_BYTES:
            if not self._stats.get("video_frames_too_large"):
                _LOGGER.warning(
                    "v1: a %d-byte JPEG exceeds the 2 MB message limit; such frames are dropped", len(jpeg)
                )
            self._count("video_frames_too_large")
            return
        self._visits.add_frame(jpeg, captured_at, session_id)
        self._event("video").set()

    def send_text(self, text: str, captured_at: float, session_id: Optional[str]) -> None:
        """v1 has no language model: the text is counted and dropped."""
        self._count("text_dropped")

    def mark_boundary(self) -> None:
        self._visits.end_current()

    def withdraw(self) -> int:
        """Every visit's queued audio and video dropped and the visits ended: an open session sends
        ``session.close`` at once, and none opens until media captured after this moment arrives."""
        dropped = self._visits.withdraw()
        for wire in self._wires.values():
            wire.withdrawn = True
        if dropped:
            self._count("media_withdrawn", dropped)
        self._wake_all()
        return dropped

    async def receive(self) -> Observation:
        ready = self._event("results")
        while not self._results:
            ready.clear()
            await ready.wait()
        return self._results.popleft()

    def _emit(self, obs: Observation) -> None:
        endpoint = self._ep.get("video" if obs.model == "face" else "audio")
        if endpoint is not None:
            endpoint.latencies.append(obs.latency_s)
        if len(self._results) == self._results.maxlen:
            self._count("results_dropped")
        self._results.append(obs)
        self._event("results").set()

    def status(self) -> BackendStatus:
        return BackendStatus.of_links(
            "v1",
            tuple((e, self._ep[e].status(self._stats)) for e in self._endpoints),
            {e: ep.last_error[0] for e, ep in self._ep.items() if ep.last_error is not None},
            counters({**self._stats, "visits_pending": self._visits.open_count()}),
        )

    # ------------------------------------------------------------------------------------------
    # Sessions

    async def run(self) -> None:
        if not self._endpoints:
            _LOGGER.warning("v1: hume.models names neither face nor prosody/burst; nothing to stream")
            await asyncio.Event().wait()
        async with aiohttp.ClientSession() as http:
            tasks = [spawn(self._endpoint_loop(http, e), f"hume-edge.hume.{e}") for e in self._endpoints]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
                raise HumeProtocolError(
                    f"Hume v1 rejected the session config (config_invalid) for {', '.join(self._disabled)}: "
                    "check hume.v1.measurement_timer_ms, hume.v1.face_threshold and hume.min_face_size"
                )
            finally:
                await cancel_and_wait(tasks)

    async def _next_visit(self, endpoint: str) -> Visit:
        """The oldest visit after the last one served whose media of ``endpoint`` may be sent now."""
        wake = self._event(endpoint)
        while True:
            wake.clear()
            visit = self._visits.next_for(endpoint)
            if visit is not None:
                return visit
            await wake.wait()

    async def _endpoint_loop(self, http: aiohttp.ClientSession, endpoint: str) -> None:
        while endpoint not in self._disabled:
            visit = await self._next_visit(endpoint)
            await self._serve_visit(http, endpoint, visit)
            self._visits.served[endpoint] = visit.seq
            self._ep[endpoint].state = "idle"
        self._ep[endpoint].state = "disabled"
        self._visits.retire(endpoint)  # visits no longer wait for this endpoint

    async def _serve_visit(self, http: aiohttp.ClientSession, endpoint: str, visit: Visit) -> None:
        """Sessions for one visit until its media is sent and its last session closed."""
        ep = self._ep[endpoint]
        backoff = ep.backoff
        while visit.queue(endpoint) or not visit.ended:
            if not visit.queue(endpoint):
                self._event(endpoint).clear()
                await self._event(endpoint).wait()
                continue
            opened = time.monotonic()
            try:
                wire = await run_session(
                    http,
                    self.cfg,
                    ep,
                    visit=visit,
                    wake=self._event(endpoint),
                    new_wire=self._new_wire(endpoint),
                )
            except Silent as exc:
                delay = backoff.next_delay()
                ep.announce("silent", f"{exc}; retrying in {delay:.1f} s")
                ep.failed(str(exc))
                await ep.pause(delay)
                continue
            except Refused as exc:
                if exc.status == RATE_LIMITED_STATUS:
                    await self._rate_limited(endpoint, str(exc), exc.retry_after)
                    continue
                if exc.status == 401:
                    if not self._connected_once:
                        ep.state = "auth_failed"
                        ep.failed(str(exc))
                        raise HumeAuthError(
                            f"Hume v1 refused the API key (HTTP 401) at {self.cfg.v1.url}"
                        ) from None
                    delay = self.cfg.fatal_retry_s
                elif exc.status in RETRYABLE_STATUSES or exc.status >= 500:
                    delay = backoff.next_delay()
                else:
                    delay = self.cfg.fatal_retry_s
                ep.announce(f"refused {exc.status}", f"{exc}; retrying in {delay:.1f} s")
                ep.failed(str(exc))
                await ep.pause(delay, "auth_failed" if exc.status == 401 else "backoff")
                continue
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                delay = backoff.next_delay()
                reason = f"connection failed ({clip(exc or type(exc).__name__)})"
                ep.announce(type(exc).__name__, f"{reason}; retrying in {delay:.1f} s")
                ep.failed(reason)
                await ep.pause(delay)
                continue
            self._count(f"{endpoint}_replies_lost", wire.unanswered)
            if wire.session_id is None and wire.last_error == p.Codes.RATE_LIMITED:
                # Refused before any session was created: the organisation's limit, answered in-band.
                await self._rate_limited(endpoint, "v1 session refused: rate_limited before session.created")
                continue
            ep.rate_backoff.reset()
            if time.monotonic() - opened >= MIN_UPTIME_S:
                backoff.reset()
            if wire.closed_reason == p.Reasons.CLIENT_REQUEST:
                continue  # our own session.close: the visit is over (or more media opens a new session)
            if wire.last_error == p.Codes.CONFIG_INVALID:
                self._disabled[endpoint] = "config_invalid"
                ep.failed("the server rejected our session config (config_invalid)")
                _LOGGER.error(
                    "v1 %s: the server rejected our session config; %s disabled until restart",
                    endpoint,
                    endpoint,
                )
                visit.queue(endpoint).clear()
                return
            code = wire.close_code
            if p.should_reconnect(endpoint, wire.closed_reason, code, wire.last_error):
                delay = backoff.next_delay()
                _LOGGER.warning(
                    "v1 %s session ended (%s, close %d); reconnecting in %.1f s",
                    endpoint,
                    wire.closed_reason or "no session.closed",
                    code,
                    delay,
                )
                ep.failed(
                    f"session ended ({wire.closed_reason or 'no session.closed'}, close {code}, "
                    f"last error {wire.last_error})",
                )
                await ep.pause(delay)
            elif wire.closed_reason != p.Reasons.IDLE_TIMEOUT:
                _LOGGER.warning(
                    "v1 %s session ended for good (%s, close %d, last error %s); dropping this visit's %s",
                    endpoint,
                    wire.closed_reason,
                    code,
                    wire.last_error,
                    endpoint,
                )
                self._count(f"{endpoint}_dropped_final", len(visit.queue(endpoint)))
                visit.queue(endpoint).clear()
                return

    async def _rate_limited(self, endpoint: str, reason: str, retry_after: Optional[float] = None) -> None:
        """Wait for the organisation's budget: ``Retry-After`` (if any) plus a full-jitter draw."""
        ep = self._ep[endpoint]
        delay = rate_limited_delay(ep.rate_backoff, retry_after)
        self._count(f"{endpoint}_rate_limited")
        ep.announce(
            "rate_limited",
            f"{reason} (the organisation's request limit); media held, retrying in {delay:.1f} s",
        )
        ep.failed(f"{reason} (organisation request limit)")
        await ep.pause(delay, "rate_limited")

    def _new_wire(self, endpoint: str) -> Callable[[Deque[OutgoingMedia], float], _Wire]:
        """The wire of each session of ``endpoint`` once its socket is open (withdrawable from here)."""

        def new_wire(queue: Deque[OutgoingMedia], now: float) -> _Wire:
            self._connected_once = True
            wire: _Wire = (
                AudioWire(queue, self._emit, self._stats, now)
                if endpoint == "audio"
                else VideoWire(queue, self._emit, self._stats, now, self._fps, max_lag_s=self._video_lag_s)
            )
            self._wires[endpoint] = wire
            self._count(f"{endpoint}_sessions")
            return wire

        return new_wire
