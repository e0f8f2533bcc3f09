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
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
import time
from typing import Deque, Dict, List, Optional, Tuple

import aiohttp

from agent.aio import OnFirstUse, cancel_and_wait, spawn, wait_event
from agent.backoff import Backoff, rate_limit_backoff, rate_limited_delay
from agent.config import HumeConfig
from agent.errors import HumeAuthError, HumeProtocolError
from agent.hume.backend import Backend
from agent.hume.drift import Drift
from agent.hume.types import (
    AUDIO_MODELS,
    BackendStatus,
    LinkStatus,
    Observation,
    counters,
)
from agent.hume.v1 import protocol as p
from agent.hume.v1.handshake import MESSAGE_MAX_BYTES, Refused, Silent, handshake
from agent.hume.v1.visits import Visit, Visits
from agent.hume.v1.wire import AudioWire, VideoWire, _Wire
from agent.throttle import LogThrottle
from agent.untrusted import MAX_SHOWN_CHARS, clip, loads

_LOGGER = logging.getLogger(__name__)

FIRST_DELAY_RANGE_S = (1.0, 5.0)
DELAY_GROWTH = 1.3
MAX_DELAY_S = 10.0
MIN_UPTIME_S = 5.0
"""The official SDK's reconnect schedule (``reconnect/_policy.py``), shared with Hume's Node SDK."""
RETRYABLE_STATUSES = frozenset({408})
RATE_LIMITED_STATUS = 429
RESULTS_MAX = 1000
VIDEO_HELD = 3
"""Frames of a qualified visit kept at most while the socket is busy (the newest win)."""
HELD_LAG_MARGIN_S = 1.0
"""Frames up to ``hume.v1.min_session_s`` plus this behind the newest are still worth sending."""
LATENCY_WINDOW = 100
"""Round trips kept per endpoint for the status's median and maximum."""
ERROR_TEXT_MAX = MAX_SHOWN_CHARS
"""Characters of a failure reason kept for status and health: a hostile server cannot grow them."""
REPEAT_LOG_S = 600.0
"""A failure that recurs is logged again at most this often (the counters in status say how often)."""
ANNOUNCED_MAX = 64
"""Distinct failure kinds remembered for that: bounded whatever the server sends."""
UNREADABLE = (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError)
"""What a malformed, wrong-typed or hostile server message may raise while it is read and applied."""


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
            video_held=max(VIDEO_HELD, math.ceil(cfg.v1.min_session_s * self._fps) + 1),
            count=self._count,
            on_end=self._wake_all,
        )
        self._events: Dict[str, OnFirstUse[asyncio.Event]] = {
            name: OnFirstUse(asyncio.Event) for name in ("audio", "video", "results")
        }
        self._results: Deque[Observation] = collections.deque(maxlen=RESULTS_MAX)
        self._stats: Dict[str, int] = {}
        self._state: Dict[str, str] = {e: "idle" for e in self._endpoints}
        self._disabled: Dict[str, str] = {}
        self._wires: Dict[str, _Wire] = {}
        self._connects: Dict[str, int] = {e: 0 for e in self._endpoints}
        self._last_error: Dict[str, Tuple[float, str]] = {}
        self._said = {e: LogThrottle(_LOGGER, REPEAT_LOG_S, ANNOUNCED_MAX) for e in self._endpoints}
        self._latencies: Dict[str, Deque[float]] = {
            e: collections.deque(maxlen=LATENCY_WINDOW) for e in ("audio", "video")
        }
        self._connected_once = False
        rng = random.Random()
        self._backoff = {
            e: Backoff(rng.uniform(*first_delay_range_s), MAX_DELAY_S, DELAY_GROWTH, rng)
            for e in self._endpoints
        }
        self._rate_backoff = {e: rate_limit_backoff(rng, cfg.rate_limit_max_s) for e in self._endpoints}
        self._drift = {e: Drift(f"v1 {e}", _LOGGER) for e in self._endpoints}

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
        self._latencies["video" if obs.model == "face" else "audio"].append(obs.latency_s)
        if len(self._results) == self._results.maxlen:
            self._count("results_dropped")
        self._results.append(obs)
        self._event("results").set()

    def status(self) -> BackendStatus:
        return BackendStatus.of_links(
            "v1",
            tuple((e, self._link_status(e)) for e in self._endpoints),
            {e: at for e, (at, _) in self._last_error.items()},
            counters({**self._stats, "visits_pending": self._visits.open_count()}),
        )

    def _link_status(self, endpoint: str) -> LinkStatus:
        lat = sorted(self._latencies[endpoint])
        unit = "audio_frames" if endpoint == "audio" else "video_frames"
        error = self._last_error.get(endpoint)
        drift = self._drift[endpoint]
        return LinkStatus(
            state=self._state[endpoint],
            last_error=None if error is None else error[1],
            connects=self._connects[endpoint],
            sent=self._stats.get(f"{unit}_sent", 0),
            replies=self._stats.get(f"{endpoint}_results", 0),
            latency_p50_s=round(lat[len(lat) // 2], 4) if lat else None,
            latency_max_s=round(lat[-1], 4) if lat else None,
            counters=counters(
                {
                    "rate_limited": float(self._stats.get(f"{endpoint}_rate_limited", 0)),
                    "lost": float(self._stats.get(f"{endpoint}_replies_lost", 0)),
                    **drift.counters(),
                }
            ),
            unknown=drift.kinds(),
        )

    def _announce(self, endpoint: str, kind: str, text: str) -> None:
        """Log a failure once per kind and endpoint until the endpoint connects again (or
        :data:`REPEAT_LOG_S` later): a flapping or hostile server cannot flood the journal."""
        self._said[endpoint].log(
            logging.WARNING, kind, "v1 %s: %s (repeats are counted in status)", endpoint, text
        )

    def _failed(self, endpoint: str, reason: str) -> None:
        """Remember ``reason`` (cut to :data:`ERROR_TEXT_MAX` characters) as the endpoint's last error."""
        self._last_error[endpoint] = (time.monotonic(), clip(reason, ERROR_TEXT_MAX))

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
            self._state[endpoint] = "idle"
        self._state[endpoint] = "disabled"
        self._visits.retire(endpoint)  # visits no longer wait for this endpoint

    async def _serve_visit(self, http: aiohttp.ClientSession, endpoint: str, visit: Visit) -> None:
        """Sessions for one visit until its media is sent and its last session closed."""
        backoff = self._backoff[endpoint]
        while visit.queue(endpoint) or not visit.ended:
            if not visit.queue(endpoint):
                self._event(endpoint).clear()
                await self._event(endpoint).wait()
                continue
            opened = time.monotonic()
            try:
                wire = await self._session(http, endpoint, visit)
            except Silent as exc:
                delay = backoff.next_delay()
                self._announce(endpoint, "silent", f"{exc}; retrying in {delay:.1f} s")
                self._failed(endpoint, str(exc))
                await self._pause(endpoint, delay)
                continue
            except Refused as exc:
                if exc.status == RATE_LIMITED_STATUS:
                    await self._rate_limited(endpoint, str(exc), exc.retry_after)
                    continue
                if exc.status == 401:
                    if not self._connected_once:
                        self._state[endpoint] = "auth_failed"
                        self._failed(endpoint, str(exc))
                        raise HumeAuthError(
                            f"Hume v1 refused the API key (HTTP 401) at {self.cfg.v1.url}"
                        ) from None
                    delay = self.cfg.fatal_retry_s
                elif exc.status in RETRYABLE_STATUSES or exc.status >= 500:
                    delay = backoff.next_delay()
                else:
                    delay = self.cfg.fatal_retry_s
                self._announce(endpoint, f"refused {exc.status}", f"{exc}; retrying in {delay:.1f} s")
                self._failed(endpoint, str(exc))
                await self._pause(endpoint, delay, "auth_failed" if exc.status == 401 else "backoff")
                continue
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                delay = backoff.next_delay()
                reason = f"connection failed ({clip(exc or type(exc).__name__)})"
                self._announce(endpoint, type(exc).__name__, f"{reason}; retrying in {delay:.1f} s")
                self._failed(endpoint, reason)
                await self._pause(endpoint, delay)
                continue
            self._count(f"{endpoint}_replies_lost", wire.unanswered)
            if wire.session_id is None and wire.last_error == p.Codes.RATE_LIMITED:
                # Refused before any session was created: the organisation's limit, answered in-band.
                await self._rate_limited(endpoint, "v1 session refused: rate_limited before session.created")
                continue
            self._rate_backoff[endpoint].reset()
            if time.monotonic() - opened >= MIN_UPTIME_S:
                backoff.reset()
            if wire.closed_reason == p.Reasons.CLIENT_REQUEST:
                continue  # our own session.close: the visit is over (or more media opens a new session)
            if wire.last_error == p.Codes.CONFIG_INVALID:
                self._disabled[endpoint] = "config_invalid"
                self._failed(endpoint, "the server rejected our session config (config_invalid)")
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
                self._failed(
                    endpoint,
                    f"session ended ({wire.closed_reason or 'no session.closed'}, close {code}, "
                    f"last error {wire.last_error})",
                )
                await self._pause(endpoint, delay)
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
        delay = rate_limited_delay(self._rate_backoff[endpoint], retry_after)
        self._count(f"{endpoint}_rate_limited")
        self._announce(
            endpoint,
            "rate_limited",
            f"{reason} (the organisation's request limit); media held, retrying in {delay:.1f} s",
        )
        self._failed(endpoint, f"{reason} (organisation request limit)")
        await self._pause(endpoint, delay, "rate_limited")

    async def _pause(self, endpoint: str, delay: float, state: str = "backoff") -> None:
        self._state[endpoint] = state
        await asyncio.sleep(delay)

    async def _session(self, http: aiohttp.ClientSession, endpoint: str, visit: Visit) -> _Wire:
        """One WebSocket session: update, media, close; returns the wire with how it ended."""
        path = p.AUDIO_PATH if endpoint == "audio" else p.VIDEO_PATH
        self._state[endpoint] = "connecting"
        self._connects[endpoint] += 1
        ws = await handshake(http, self.cfg.v1.url, path, self.cfg.api_key, self.cfg.v1.connect_timeout_s)
        self._connected_once = True
        if self._last_error.pop(endpoint, None) is not None:
            _LOGGER.info("v1 %s: connected again", endpoint)
        self._said[endpoint].reset()
        now = time.monotonic()
        queue = visit.queue(endpoint)
        wire: _Wire = (
            AudioWire(queue, self._emit, self._stats, now)
            if endpoint == "audio"
            else VideoWire(queue, self._emit, self._stats, now, self._fps, max_lag_s=self._video_lag_s)
        )
        self._wires[endpoint] = wire
        self._count(f"{endpoint}_sessions")
        updated = asyncio.Event()
        async with ws:
            update = (
                p.audio_session_update(self.cfg.v1.measurement_timer_ms)
                if endpoint == "audio"
                else p.video_session_update(self.cfg.v1.face_threshold, self.cfg.min_face_size)
            )
            await ws.send_str(update)
            self._state[endpoint] = "open"
            sender = spawn(self._send_loop(ws, wire, visit, updated), f"hume-edge.hume.{endpoint}.sender")
            try:
                await self._receive_loop(ws, wire, updated)
            finally:
                await cancel_and_wait([sender])
        wire.close_code = ws.close_code if ws.close_code is not None else p.CLOSE_ABNORMAL
        if wire.close_code not in p.KNOWN_CLOSE_CODES:
            self._drift[endpoint].saw("close_code", wire.close_code)
        return wire

    async def _receive_loop(
        self, ws: aiohttp.ClientWebSocketResponse[bool], wire: _Wire, updated: asyncio.Event
    ) -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.ERROR:  # e.g. a message over MESSAGE_MAX_BYTES: aiohttp closes
                self._count("messages_refused")
                self._announce(wire.endpoint, "ws error", f"server message refused ({clip(msg.data)})")
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                obj = loads(msg.data, max_bytes=MESSAGE_MAX_BYTES, what="v1 server message")
                parsed = p.parse_server_obj(obj, wire.endpoint)
                drift = self._drift[wire.endpoint]
                if parsed is None:
                    self._count("messages_unknown")
                    drift.saw("type", p.unknown_type(obj, wire.endpoint))
                    continue
                drift.saw_all("field", p.unknown_fields(obj, wire.endpoint))
                if isinstance(parsed, p.SessionUpdated):
                    updated.set()
                wire.on_message(parsed, time.monotonic())
            except UNREADABLE as exc:
                self._count("messages_unreadable")
                self._announce(wire.endpoint, "unreadable", f"unreadable server message ({clip(exc)})")
                continue
            self._event(wire.endpoint).set()

    async def _send_loop(
        self, ws: aiohttp.ClientWebSocketResponse[bool], wire: _Wire, visit: Visit, updated: asyncio.Event
    ) -> None:
        """Media once the config is confirmed, paced; ``session.close`` once the visit is over and sent."""
        wake = self._event(wire.endpoint)
        if not await wait_event(updated, self.cfg.reply_timeout_s):
            _LOGGER.warning(
                "v1 %s: no session.updated within %.0f s; reconnecting",
                wire.endpoint,
                self.cfg.reply_timeout_s,
            )
            await ws.close()
            return
        while True:
            wake.clear()
            wait, media = wire.next_send(time.monotonic())
            if media is not None:
                await ws.send_bytes(media.data)
                wire.sent(media, time.monotonic())
                continue
            if visit.ended and wire.drained:
                break
            await wait_event(wake, wait if wait > 0 else None)
        self._state[wire.endpoint] = "closing"
        await ws.send_str(p.SESSION_CLOSE)
        await asyncio.sleep(self.cfg.reply_timeout_s)
        _LOGGER.warning(
            "v1 %s: no session.closed within %.0f s; closing", wire.endpoint, self.cfg.reply_timeout_s
        )
        await ws.close()
