"""Opening one v1 WebSocket: the handshake with a deadline, and what a refusal says.

The whole handshake (TCP, TLS, HTTP upgrade) has a deadline (``hume.v1.connect_timeout_s``): a server or
middlebox that accepts and then says nothing held the link in "connecting" for 35 s and more, silently.
An HTTP status instead of an upgrade is a :class:`Refused` carrying the status and ``Retry-After`` (a 429
is the organisation's request limit, not a dead server).
"""

from __future__ import annotations

import asyncio
from typing import Optional

import aiohttp

from agent.backoff import retry_after_s
from agent.hume.v1 import protocol as p

HEARTBEAT_S = 20.0
"""The SDK's keepalive ping interval: a dead path is noticed within about two of these."""
MESSAGE_MAX_BYTES = 1 << 20
"""Largest server message read. v1 replies are a few KB (a result for several faces ~10 KB); a bigger one
is refused by aiohttp (close 1009) and counted, so a 10 MB frame costs no more than 1 MB of memory."""


class Silent(Exception):
    """The handshake did not complete within ``hume.v1.connect_timeout_s``."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"no handshake reply within {timeout_s:g} s (server silent)")


class Refused(Exception):
    """The handshake was answered with an HTTP status instead of an upgrade."""

    def __init__(self, status: int, retry_after: Optional[float] = None) -> None:
        super().__init__(f"v1 handshake refused with HTTP {status}")
        self.status = status
        self.retry_after = retry_after
        """``Retry-After`` in seconds (clamped) when the server sent one."""


def ws_base(url: str) -> str:
    """``v1_url`` as a WebSocket base: http(s) becomes ws(s), so the emulator's base URL works too."""
    base = url.rstrip("/")
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if base.startswith(http):
            return ws + base[len(http) :]
    return base


async def handshake(
    http: aiohttp.ClientSession, base_url: str, path: str, api_key: str, timeout_s: float
) -> aiohttp.ClientWebSocketResponse[bool]:
    """The open WebSocket to ``path`` under ``base_url`` (an http(s) base works too); or :class:`Silent`
    or :class:`Refused`."""
    try:
        return await asyncio.wait_for(
            http.ws_connect(
                ws_base(base_url) + path,
                headers={p.API_KEY_HEADER: api_key},
                heartbeat=HEARTBEAT_S,
                max_msg_size=MESSAGE_MAX_BYTES,
            ),
            timeout_s,
        )
    except asyncio.TimeoutError:
        raise Silent(timeout_s) from None
    except aiohttp.WSServerHandshakeError as exc:
        retry_after = retry_after_s(exc.headers.get("Retry-After")) if exc.headers else None
        raise Refused(exc.status, retry_after) from None
