"""Guards for the emulators' control endpoints (``/_emulator/...``), which have no authentication.

A web page the emulator's user visits could otherwise change the emulator's faults with a cross-site form
POST: a form can send ``application/x-www-form-urlencoded``, ``multipart/form-data`` or ``text/plain``
without a CORS preflight, but not ``application/json``. So a control POST must say it is JSON, which a
browser sends cross-site only after a preflight this server never answers. A DNS-rebinding page (its own
domain name pointed at 127.0.0.1) is same-origin and could send JSON, so a control request must also name
the server by a loopback name or by the very address it reached (``Host: 127.0.0.1:8765``, ``localhost``,
``[::1]``), never by a domain name (#31). And the endpoints belong on loopback: :func:`bind_warning` says so
loudly when the emulator listens anywhere else.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Optional

from aiohttp import web

from agent.config import is_loopback

CONTROL_PREFIX = "/_emulator/"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_only_controls(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a control request under another host name (403) and a control POST that is not
    ``Content-Type: application/json`` (415)."""
    if request.path.startswith(CONTROL_PREFIX) and not _own_host(request):
        error = f"{request.path}: answers only to a loopback host name or this server's address"
        return web.json_response({"error": error}, status=403)
    is_control = request.method == "POST" and request.path.startswith(CONTROL_PREFIX)
    if is_control and request.content_type != "application/json":
        got = request.content_type
        error = f"{request.path}: send Content-Type: application/json (got {got!r})"
        return web.json_response({"error": error}, status=415)
    return await handler(request)


def _own_host(request: web.Request) -> bool:
    raw = request.host or ""
    host = raw[1 : raw.index("]")] if raw.startswith("[") and "]" in raw else raw.rsplit(":", 1)[0]
    if is_loopback(host):
        return True
    sockname: Any = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return isinstance(sockname, tuple) and host == str(sockname[0])


def bind_warning(host: str) -> Optional[str]:
    """A warning when ``host`` is not a loopback address, else None."""
    if not host:
        return _warning("every address")
    return None if is_loopback(host) else _warning(host)


def _warning(where: str) -> str:
    return (
        f"WARNING: the emulator listens on {where}, not only on loopback: its control endpoints "
        "(/_emulator/...) have no authentication, so anyone who reaches this port can change its faults "
        "and read its counters. Use --host 127.0.0.1 unless another machine must reach it."
    )
