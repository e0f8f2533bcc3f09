"""One v0 WebSocket (one modality) that keeps itself alive: connect, one payload in flight, reconnect.

States, as ``status()`` reports them and the log announces them (with the reason):

    idle ──work──▶ connecting ──upgrade──▶ open ──renew / boundary──▶ connecting
                       │                    │──nothing to send for reconnect_after_s──▶ idle
                       │                    └──close, drop, no reply, bad reply──▶ backoff ──▶ connecting
                       ├──refused, unreachable──▶ backoff (capped exponential delay with jitter)
                       ├──HTTP 429──▶ rate_limited (Retry-After + full jitter, agent.backoff)
                       └──HTTP 401/403──▶ auth_failed (retry every fatal_retry_s)
    open ──E0300 reply──▶ quota_exhausted (retry every fatal_retry_s)

Every connection attempt that does not follow a planned close waits a backoff delay first, and the
backoff only resets after a *reply* (not after an upgrade), so a server that accepts and then drops or
ignores us cannot drive a hot reconnect loop. A reader task per connection turns incoming messages into
events on the link's queue; the link itself is a single coroutine, so the one-in-flight rule, the
in-flight table and the renew timer have one owner and need no locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Callable, Dict, Optional, Protocol, Tuple, Union

import aiohttp

from agent.aio import cancel_and_wait, spawn, wait_get
from agent.backoff import Backoff, rate_limit_backoff, rate_limited_delay
from agent.config import HumeConfig
from agent.errors import HumeAuthError
from agent.hume.types import LinkStatus, Observation, OutgoingMedia
from agent.hume.v0.accounting import InFlight, LinkStats
from agent.hume.v0.connector import Broken, Connector, RateLimited
from agent.hume.v0.payloads import PayloadBuilder, Queued, observations, warning_codes
from agent.hume.v0.protocol import (
    FATAL_CODES,
    KNOWN_CLOSE_CODES,
    ErrorMessage,
    ProtocolViolation,
    Reply,
    decode_reply,
    parse_reply_obj,
    unknown_reply_fields,
)
from agent.throttle import LogThrottle
from agent.untrusted import clip, code_key

_LOGGER = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0
"""How long a close handshake may take before the socket is simply dropped."""

PLANNED = {
    "renew": "renewing before the server's one-minute limit",
    "boundary": "new visitor: new face-id cache",
}
"""Why a socket was closed on purpose with media waiting (it reconnects at once)."""


class MediaBuffer(Protocol):
    """What a link sends from: the buffers of :mod:`agent.hume.v0.payloads`."""

    def head_epoch(self) -> Optional[int]: ...

    def take(self) -> Optional[Queued]: ...

    def clear(self) -> int: ...

    def stats(self) -> Dict[str, float]: ...


class _Fatal(Exception):
    """A reply that fast retries cannot fix (out of credits); retry slowly."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


class _Closed:
    """Event: the reader saw the socket end."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


Event = Tuple[int, Union[Reply, _Closed, None]]
"""(connection number, what happened); ``None`` is a wake-up from ``send_*`` (connection number 0)."""


class Link:
    """One socket for one modality; owns its buffer's sending, its in-flight table and its counters."""

    def __init__(
        self,
        name: str,
        cfg: HumeConfig,
        models: Tuple[str, ...],
        buffer: MediaBuffer,
        *,
        emit: Callable[[Observation], None],
        current_epoch: Callable[[], int],
    ) -> None:
        self.name = name
        self.models = models
        self._cfg = cfg
        self._buffer = buffer
        self._emit = emit
        self._current_epoch = current_epoch
        self._builder = PayloadBuilder(cfg, models)
        # Face ids live as long as the connection (reset_stream does not clear them), so with
        # identify_faces a new visitor gets a new socket.
        self._socket_per_epoch = name == "video" and cfg.v0.identify_faces
        self._backoff = Backoff(cfg.v0.backoff_initial_s, cfg.v0.backoff_max_s)
        self._rate_backoff = rate_limit_backoff(max_s=cfg.rate_limit_max_s)
        self._inflight: InFlight[OutgoingMedia] = InFlight()
        self.stats = LinkStats(f"v0 {name}")
        self.state = "idle"
        self.last_error: Optional[str] = None
        self.last_error_at = 0.0
        self._events: Optional[asyncio.Queue[Event]] = None
        self._wake_pending = False
        self._conn_no = 0
        self._opens = 0
        self._face_scope = ""
        self._seq = 0
        self._failing: Optional[str] = None
        """The failure being reported ("state: reason"), until a reply shows the link works again."""
        self._failing_announced = False
        self._announced = LogThrottle(_LOGGER)
        """Failure kinds announced: each again at most every 600 s, 64 kinds remembered."""
        self._connector: Optional[Connector] = None

    # -- called from the capture side (synchronous, O(1)) ----------------------------------------

    def wake(self) -> None:
        """New media is queued: interrupt an idle wait. At most one wake-up is ever pending."""
        if self._events is not None and not self._wake_pending:
            self._wake_pending = True
            self._events.put_nowait((0, None))

    def status(self) -> LinkStatus:
        return self.stats.to_status(self.state, self.last_error, self._buffer.stats())

    # -- the loop --------------------------------------------------------------------------------

    async def run(self, connector: Connector) -> None:
        """Until cancelled. Raises :class:`HumeAuthError` only while the key was never accepted."""
        self._connector = connector
        self._events = asyncio.Queue()
        self._wake_pending = False
        # Connect once at start, with or without media, so that a wrong key shows at once.
        reason: Optional[str] = "starting"
        while True:
            if reason is None and not connector.accepted:
                reason = "the key was not checked yet"  # keep trying until the server has answered once
            if reason is None:
                await self._work_arrives()
                reason = "media to send"
            self._set_state("connecting", reason)
            self.stats.connect_attempts += 1
            reason = None
            try:
                ws = await connector.open()
            except HumeAuthError as exc:
                if not connector.accepted:
                    self._fail("auth_failed", str(exc))
                    raise
                await self._pause("auth_failed", str(exc), self._cfg.fatal_retry_s)
                continue
            except RateLimited as exc:
                self.stats.rate_limited += 1
                delay = rate_limited_delay(self._rate_backoff, exc.retry_after)
                await self._pause("rate_limited", exc.reason, delay)
                continue
            except Broken as exc:
                await self._pause("backoff", exc.reason, self._backoff.next_delay())
                continue
            self._rate_backoff.reset()
            self._opens += 1
            self.stats.reconnects = self._opens - 1
            # Hume's face ids ("face_0", ...) name a face within one connection only; a new connection
            # reuses them for other people. Qualify them so two visitors never share an id downstream.
            self._face_scope = secrets.token_hex(3)
            self._set_state("open", f"connected to {connector.url}")
            try:
                outcome = await self._serve(ws)
            except Broken as exc:
                await self._pause("backoff", exc.reason, self._backoff.next_delay())
            except _Fatal as exc:
                await self._pause(exc.state, exc.reason, self._cfg.fatal_retry_s)
            else:
                # A planned close reconnects at once when media waits: nothing failed, no backoff.
                reason = PLANNED.get(outcome)
                if reason is None:
                    self._set_state("idle", f"nothing to send for {self._cfg.v0.reconnect_after_s:g} s")

    async def _work_arrives(self) -> None:
        while self._buffer.head_epoch() is None:
            if self.state not in ("auth_failed", "quota_exhausted"):  # those stay visible until fixed
                self._set_state("idle", "nothing to send")
            await self._next_event(-1, None)

    async def _pause(self, state: str, reason: str, delay_s: float) -> None:
        waits = state in ("backoff", "rate_limited")
        self._fail(state, f"{reason}; retry in {delay_s:.1f} s" if waits else reason)
        await asyncio.sleep(delay_s)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> str:
        """Send while the socket lives; return "renew", "boundary" or "idle" for a planned close."""
        self._conn_no += 1
        conn = self._conn_no
        loop = asyncio.get_running_loop()
        reader = spawn(self._read(ws, conn), f"hume-edge.hume.{self.name}.reader")
        opened = loop.time()
        conn_epoch: Optional[int] = None
        renew_s = self._cfg.v0.reconnect_after_s
        try:
            while True:
                head = self._buffer.head_epoch()
                # Media of the old visit still goes out on the old socket; then it is replaced at once,
                # so the new visitor's first frame finds a fresh face-id cache ready.
                next_epoch = self._current_epoch() if head is None else head
                if self._socket_per_epoch and conn_epoch is not None and next_epoch != conn_epoch:
                    return "boundary"
                if head is None:
                    ev = await self._next_event(conn, opened + renew_s - loop.time())
                    if ev is _TIMEOUT:
                        return "idle"
                    continue
                if loop.time() - opened >= renew_s:
                    return "renew"  # before the server's one-minute limit, with nothing in flight
                taken = self._buffer.take()
                if taken is None:  # pragma: no cover - head_epoch() said otherwise
                    continue
                epoch, media = taken
                # reset_stream on the first payload of every connection (the server may keep context
                # across a reconnect; resetting a fresh one costs nothing) and of every new epoch.
                await self._exchange(ws, conn, media, reset=conn_epoch != epoch)
                conn_epoch = epoch
        finally:
            self.stats.lost += len(self._inflight.clear())
            await cancel_and_wait([reader])
            # The socket is being abandoned either way; a close that hangs or fails changes nothing.
            with contextlib.suppress(asyncio.TimeoutError, aiohttp.ClientError, OSError):
                await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT_S)

    async def _exchange(
        self, ws: aiohttp.ClientWebSocketResponse[bool], conn: int, media: OutgoingMedia, reset: bool
    ) -> None:
        """Send one payload and wait for its reply (or for the reply timeout: then the socket is dead)."""
        loop = asyncio.get_running_loop()
        self._seq += 1
        payload_id = f"{self.name}-{self._seq}"
        text = self._builder.build(media, payload_id, reset).to_json()
        self._inflight.add(payload_id, media, loop.time())
        try:
            # A full send buffer (a link that swallows packets) would wait forever: bound it too.
            await asyncio.wait_for(ws.send_str(text), self._cfg.reply_timeout_s)
        except asyncio.TimeoutError:
            raise Broken(f"send stalled for {self._cfg.reply_timeout_s:g} s") from None
        except (ConnectionError, aiohttp.ClientError) as exc:
            raise Broken(f"send failed: {type(exc).__name__}") from None
        self.stats.sent += 1
        timeout = self._cfg.reply_timeout_s
        while True:
            deadline = self._inflight.deadline(timeout)
            if deadline is None:
                return
            if await self._next_event(conn, deadline - loop.time()) is _TIMEOUT:
                self.stats.timeouts += len(self._inflight.expire(loop.time(), timeout))
                raise Broken(f"no reply within {timeout:g} s")

    async def _next_event(self, conn: int, timeout: Optional[float]) -> object:
        """Wait for one event of connection ``conn`` (or a wake-up) and act on it; _TIMEOUT if none came."""
        assert self._events is not None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            event = await wait_get(self._events, None if deadline is None else deadline - loop.time())
            if event is None:
                return _TIMEOUT
            event_conn, what = event
            if what is None:
                self._wake_pending = False
                return None
            if event_conn != conn:
                continue  # from a socket already closed: its payloads were counted as lost
            if isinstance(what, _Closed):
                raise Broken(what.reason)
            self._on_reply(what)
            return what

    def _on_reply(self, reply: Reply) -> None:
        now = asyncio.get_running_loop().time()
        matched = self._inflight.match(reply.payload_id, now)
        if matched is None:
            self.stats.unmatched += 1
            _LOGGER.debug("hume %s socket: reply to unknown payload %r ignored", self.name, reply.payload_id)
            return
        media, latency = matched
        self.stats.replies += 1
        self.stats.latency(latency)
        for code in warning_codes(reply):
            self.stats.warnings.add(code)
        if isinstance(reply, ErrorMessage):
            # The code and text are the server's: bounded before they become a counter, a log line,
            # the status file or the health message (a hostile endpoint sent 512 KiB "codes").
            code = self.stats.errors.add(code_key(reply.code, missing="unknown"))
            reason = f"{code}: {clip(reply.error)}"
            if code in FATAL_CODES:
                raise _Fatal("quota_exhausted", reason)
            self._note_error(code, reason)
        for obs in observations(reply, media, latency, self.models, self._face_scope):
            self._emit(obs)
        self._backoff.reset()
        if self._failing is not None:
            level = logging.INFO if self._failing_announced else logging.DEBUG
            _LOGGER.log(level, "hume %s socket: working again (after: %s)", self.name, self._failing)
            self._failing = None
            self._failing_announced = False

    async def _read(self, ws: aiohttp.ClientWebSocketResponse[bool], conn: int) -> None:
        """Turn incoming messages into events until the socket ends; the last event says why."""
        assert self._events is not None
        assert self._connector is not None
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    obj = decode_reply(msg.data)
                    self.stats.drift.saw_all("field", unknown_reply_fields(obj))
                    self._events.put_nowait((conn, parse_reply_obj(obj)))
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    break
            if ws.exception() is not None:  # aiohttp closes by itself, e.g. when a ping goes unanswered
                reason = _lost(ws.exception())
            elif ws.close_code in (None, aiohttp.WSCloseCode.ABNORMAL_CLOSURE):
                reason = "connection lost: no close handshake"
            else:
                reason = f"closed by the server (code {ws.close_code})"
                if ws.close_code not in KNOWN_CLOSE_CODES:
                    self.stats.drift.saw("close_code", ws.close_code)
        except ProtocolViolation as exc:
            reason = f"unreadable reply: {self._connector.redact(exc.message)}"
        except Exception as exc:  # the writer must hear about any end of the socket, or it waits in vain
            reason = f"reader failed: {type(exc).__name__}"
        self._events.put_nowait((conn, _Closed(reason)))

    # -- reporting -------------------------------------------------------------------------------

    def _note_error(self, code: str, reason: str) -> None:
        self.last_error = reason
        self.last_error_at = asyncio.get_running_loop().time()
        if self.stats.errors[code] == 1:
            _LOGGER.warning(
                "hume %s socket: error reply %s (further ones counted in health)", self.name, reason
            )

    def _fail(self, state: str, reason: str) -> None:
        """Enter a failure state, announced once: repeats, and a flapping link's recurrences within
        600 s (:class:`agent.throttle.LogThrottle`), are logged at debug level only (status() always has
        the latest)."""
        self.last_error = reason
        self.last_error_at = asyncio.get_running_loop().time()
        key = f"{state}: {reason.split('; retry in', maxsplit=1)[0]}"
        level = logging.DEBUG
        if key != self._failing and self._announced.due(key):
            level = logging.WARNING if state in ("backoff", "rate_limited") else logging.ERROR
            self._failing_announced = True
        self._failing = key
        self._set_state(state, reason, level)

    def _set_state(self, state: str, reason: str, level: Optional[int] = None) -> None:
        if state == self.state and level is None:
            return
        if level is None:
            # Announce the first open and nothing else routine: renewals every reconnect_after_s
            # and idle periods would flood the journal of a kiosk that runs for months.
            first_open = state == "open" and self._opens == 1
            level = logging.INFO if first_open else logging.DEBUG
        _LOGGER.log(level, "hume %s socket: %s -> %s (%s)", self.name, self.state, state, reason)
        self.state = state


_TIMEOUT = object()


def _lost(exc: Optional[BaseException]) -> str:
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's ServerTimeoutError: the heartbeat's pong
        return "connection lost: heartbeat not answered"
    return f"connection lost: {type(exc).__name__}"
