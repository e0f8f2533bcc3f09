"""One v1 session on one WebSocket: the handshake, the config, media out, replies in, the close.

What is sent when and what each reply means is the wire's (:mod:`agent.hume.v1.wire`, pure); this module
moves it over the socket. Whether a session opens, and what its end means (reconnect, give up, disable), is
the backend's (:mod:`agent.hume.v1.client`): :func:`run_session` returns the wire with how it ended.

Every server message is untrusted: read within :data:`~agent.hume.v1.handshake.MESSAGE_MAX_BYTES`, and one
that is unknown, malformed or hostile is counted and logged once per kind (:meth:`Endpoint.announce`),
never raised.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Callable, Deque

import aiohttp

from agent.aio import cancel_and_wait, spawn, wait_event
from agent.config import HumeConfig
from agent.hume.types import OutgoingMedia
from agent.hume.v1 import protocol as p
from agent.hume.v1.endpoint import Endpoint
from agent.hume.v1.handshake import MESSAGE_MAX_BYTES, handshake
from agent.hume.v1.visits import Visit
from agent.hume.v1.wire import _Wire
from agent.untrusted import clip, loads

_LOGGER = logging.getLogger(__name__)

UNREADABLE = (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError)
"""What a malformed, wrong-typed or hostile server message may raise while it is read and applied."""

NewWire = Callable[[Deque[OutgoingMedia], float], _Wire]
"""Makes the wire of a session that just opened, from the visit's queue and the time (monotonic s)."""


async def run_session(
    http: aiohttp.ClientSession,
    cfg: HumeConfig,
    endpoint: Endpoint,
    *,
    visit: Visit,
    wake: asyncio.Event,
    new_wire: NewWire,
) -> _Wire:
    """One WebSocket session: update, media, close; returns the wire with how it ended.

    ``wake`` is set when there may be more to send (new media, a reply, the visit's end). Raises what the
    handshake raises (:class:`~agent.hume.v1.handshake.Refused`, ``Silent``, a connection error).
    """
    name = endpoint.name
    path = p.AUDIO_PATH if name == "audio" else p.VIDEO_PATH
    endpoint.connecting()
    ws = await handshake(http, cfg.v1.url, path, cfg.api_key, cfg.v1.connect_timeout_s)
    endpoint.connected()
    session = _Session(ws, cfg, endpoint, new_wire(visit.queue(name), time.monotonic()), visit, wake)
    async with ws:
        update = (
            p.audio_session_update(cfg.v1.measurement_timer_ms)
            if name == "audio"
            else p.video_session_update(cfg.v1.face_threshold, cfg.min_face_size)
        )
        await ws.send_str(update)
        endpoint.state = "open"
        sender = spawn(session.send_loop(), f"hume-edge.hume.{name}.sender")
        try:
            await session.receive_loop()
        finally:
            await cancel_and_wait([sender])
    wire = session.wire
    wire.close_code = ws.close_code if ws.close_code is not None else p.CLOSE_ABNORMAL
    if wire.close_code not in p.KNOWN_CLOSE_CODES:
        endpoint.drift.saw("close_code", wire.close_code)
    return wire


@dataclasses.dataclass
class _Session:
    """The two halves of an open session: replies in (:meth:`receive_loop`), media out (:meth:`send_loop`)."""

    ws: aiohttp.ClientWebSocketResponse[bool]
    cfg: HumeConfig
    endpoint: Endpoint
    wire: _Wire
    visit: Visit
    wake: asyncio.Event
    updated: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    """Set by the server's ``session.updated``: our config is in force, media may go."""

    async def receive_loop(self) -> None:
        wire, endpoint = self.wire, self.endpoint
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.ERROR:  # e.g. a message over MESSAGE_MAX_BYTES: aiohttp closes
                wire.count("messages_refused")
                endpoint.announce("ws error", f"server message refused ({clip(msg.data)})")
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                obj = loads(msg.data, max_bytes=MESSAGE_MAX_BYTES, what="v1 server message")
                parsed = p.parse_server_obj(obj, wire.endpoint)
                if parsed is None:
                    wire.count("messages_unknown")
                    endpoint.drift.saw("type", p.unknown_type(obj, wire.endpoint))
                    continue
                endpoint.drift.saw_all("field", p.unknown_fields(obj, wire.endpoint))
                if isinstance(parsed, p.SessionUpdated):
                    self.updated.set()
                wire.on_message(parsed, time.monotonic())
            except UNREADABLE as exc:
                wire.count("messages_unreadable")
                endpoint.announce("unreadable", f"unreadable server message ({clip(exc)})")
                continue
            self.wake.set()

    async def send_loop(self) -> None:
        """Media once the config is confirmed, paced; ``session.close`` once the visit is over and sent."""
        ws, wire, wake, timeout_s = self.ws, self.wire, self.wake, self.cfg.reply_timeout_s
        if not await wait_event(self.updated, timeout_s):
            _LOGGER.warning("v1 %s: no session.updated within %.0f s; reconnecting", wire.endpoint, timeout_s)
            await ws.close()
            return
        while True:
            wake.clear()
            wait, media = wire.next_send(time.monotonic())
            if media is not None:
                await ws.send_bytes(media.data)
                wire.sent(media, time.monotonic())
                continue
            if self.visit.ended and wire.drained:
                break
            await wait_event(wake, wait if wait > 0 else None)
        self.endpoint.state = "closing"
        await ws.send_str(p.SESSION_CLOSE)
        await asyncio.sleep(timeout_s)
        _LOGGER.warning("v1 %s: no session.closed within %.0f s; closing", wire.endpoint, timeout_s)
        await ws.close()
