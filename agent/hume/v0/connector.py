"""Opening v0 sockets: one URL, one key, a deadline, and what each refusal means.

A refused key (HTTP 401/403) is :class:`~agent.errors.HumeAuthError`; HTTP 429 is the organisation's request
limit (:class:`RateLimited`, with ``Retry-After``); anything else is :class:`Broken`, retried after a
backoff delay by the link (``agent.hume.v0.link``).
"""

from __future__ import annotations

import asyncio
from typing import Optional

import aiohttp

from agent.backoff import retry_after_s
from agent.config import MASK
from agent.errors import HumeAuthError
from agent.hume.v0.protocol import API_KEY_HEADER

HEARTBEAT_S = 15.0
"""WebSocket ping interval; a missing pong (heartbeat / 2) marks a half-open link (captive Wi-Fi) dead."""
CONNECT_TIMEOUT_S = 10.0
"""Upgrade handshake deadline; a router that swallows SYNs must not stall the link forever."""


class Broken(Exception):
    """The socket (or the attempt to open one) failed; retry after a backoff delay."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RateLimited(Broken):
    """HTTP 429: the organisation's request limit (or Hume's handshake rate), not a dead server."""

    def __init__(self, reason: str, retry_after: Optional[float]) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Connector:
    """Opens sockets to one URL with one key, and remembers whether that key was ever accepted.

    The key lives only in the request headers; it is never formatted into a log line, an exception
    message or this object's repr, and any library error text is scrubbed of it before use.
    """

    def __init__(self, url: str, api_key: str, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.url = url
        self._api_key = api_key
        self._heartbeat_s = heartbeat_s
        self.accepted = False
        self._session: Optional[aiohttp.ClientSession] = None

    def __repr__(self) -> str:
        return f"Connector(url={self.url!r}, accepted={self.accepted})"

    async def __aenter__(self) -> Connector:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def redact(self, text: str) -> str:
        return text.replace(self._api_key, MASK) if self._api_key else text

    async def open(self) -> aiohttp.ClientWebSocketResponse[bool]:
        """Open one socket; raise :class:`HumeAuthError` for a refused key, :class:`Broken` otherwise."""
        if self._session is None:
            raise RuntimeError("Connector.open() outside 'async with'")
        try:
            ws = await asyncio.wait_for(
                self._session.ws_connect(
                    self.url, headers={API_KEY_HEADER: self._api_key}, heartbeat=self._heartbeat_s
                ),
                CONNECT_TIMEOUT_S,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise HumeAuthError(
                    f"Hume refused the API key (HTTP {exc.status}) at {self.url}: check hume.api_key, "
                    "$HUME_API_KEY or the hume_api_key credential"
                ) from None
            if exc.status == 429:
                retry_after = retry_after_s(exc.headers.get("Retry-After")) if exc.headers else None
                raise RateLimited("upgrade refused with HTTP 429 (request limit)", retry_after) from None
            raise Broken(f"upgrade refused with HTTP {exc.status}") from None
        except asyncio.TimeoutError:
            raise Broken(f"no upgrade within {CONNECT_TIMEOUT_S:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise Broken(f"cannot connect: {self.redact(str(exc)) or type(exc).__name__}") from None
        self.accepted = True
        return ws
