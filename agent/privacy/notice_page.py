"""The on-screen notice and pause button, for the kiosk's own browser (``privacy.page = true``).

A kiosk browser (Chromium in kiosk mode on Pi OS) shows this page, or overlays it on the kiosk's own app in
an iframe. While media may be sent to Hume it shows the notice text; it always shows a Pause button; while
paused it says so and for how long at most. It updates live over Server-Sent Events (one small JSON state
per change), with no reload. It never shows or serves anything measured: no image, no score, no expression
name, no session id; a test fetches every route and checks that.

Why off by default: many kiosks have no browser of the agent's own (the kiosk app is elsewhere, or the
notice is printed signage), and a listening socket nobody uses is attack surface and memory (aiohttp.web
is imported only when the page is on). Turning it on is one key; docs/privacy.md says how to point Chromium
at it.

Who may talk to it: it binds loopback only (the constructor refuses anything else, as check-config does);
requests whose ``Host`` is not a loopback name are refused (a DNS-rebinding page in the kiosk browser cannot
reach it under another name); ``POST /pause`` needs the header ``X-Hume-Edge: pause``, which a cross-origin
page cannot send without a CORS preflight this server never grants.

How often it may pause: ``privacy.page_pauses_per_hour`` (``agent.privacy.state.PauseControl``), since any
local process can send that header at every automatic resume (#31). A pause past it is answered ``429``
with ``Retry-After`` and a JSON body whose ``message`` the page shows the visitor in place of the state line
(why, when pausing works again, and that measuring goes on): a pause button never fails silently.

Why it cannot take the agent down (issue #31: ~1,010 idle connections used up the unit's 1024 descriptors,
the status writer failed with EMFILE and the agent exited; 300 unfinished headers were still open 100 s
later; 8 held ``/events`` streams locked the kiosk's own browser out): at most :data:`MAX_CONNECTIONS`
connections are open at once, and a new one closes the oldest that has no request in progress (so a flood
churns itself, and the kiosk browser's fresh connection gets in); a connection with no request in progress
(headers still trickling in, or idle after a response) is closed after :data:`IDLE_TIMEOUT_S`; at most
:data:`MAX_STREAMS` live streams, the newest winning (the oldest is ended; a browser reconnects by itself);
a stream's slot is freed the moment its client is gone (aiohttp's handler cancellation), not at the next
keepalive. A failure to listen (the port taken) is logged, rate-limited, and retried: the page never stops
the agent.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import json
import logging
import math
from typing import Any, Callable, Dict, List, Optional

from aiohttp import web
from aiohttp.typedefs import Handler

from agent.aio import wait_event
from agent.backoff import Backoff
from agent.config import is_loopback
from agent.privacy.state import PauseRefused
from agent.throttle import LogThrottle

_LOGGER = logging.getLogger(__name__)

MAX_STREAMS = 8
"""Live /events streams at once (a kiosk needs one; a reloading browser briefly two); the newest wins."""
MAX_CONNECTIONS = 32
"""Open connections at once. Chromium opens at most 6 per host; the rest is room for a reload and a test."""
IDLE_TIMEOUT_S = 5.0
"""A connection with no request in progress is closed after this long: the headers of its first request
must be complete within it (a browser sends them in one packet), and a kept-alive one is not kept longer."""
SWEEP_S = 1.0
"""How often idle connections are looked for (so one lives at most ``IDLE_TIMEOUT_S`` + this)."""
KEEPALIVE_S = 15.0
"""An SSE comment this often, so a proxy or browser between does not time the stream out."""
PAUSE_HEADER = "X-Hume-Edge"
LISTEN_RETRY_S = (1.0, 60.0)
"""Listening failed (the port taken, out of descriptors): first and largest delay before trying again."""


@dataclasses.dataclass(frozen=True)
class PageState:
    """Everything the page may show: whether measuring, the notice, the pause. Nothing measured."""

    measuring: bool
    notice: str
    paused: bool
    pause_left_s: Optional[int]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Expression measurement</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{margin:0;font:20px/1.4 system-ui,sans-serif;background:transparent}
#bar{position:fixed;left:0;right:0;bottom:0;display:flex;gap:1em;align-items:center;padding:.8em 1.2em;
background:#111d;color:#fff}
#notice{flex:1}#notice[hidden],#refused[hidden]{display:none}#state{flex:1}#refused{flex:1;color:#fc3}
button{font:inherit;padding:.5em 1.2em;border:0;border-radius:.4em;background:#fc3;color:#000}
button:disabled{opacity:.5}
</style></head>
<body><div id="bar">
<p id="notice" role="status" aria-live="polite" hidden></p>
<p id="state" aria-live="polite">Connecting&hellip;</p>
<p id="refused" role="alert" hidden></p>
<button id="pause" type="button">Pause measuring</button>
</div><script src="page.js"></script></body></html>
"""

_JS = """"use strict";
const notice = document.getElementById("notice");
const state = document.getElementById("state");
const button = document.getElementById("pause");
const refused = document.getElementById("refused");
let refusedUntil = 0;
function show(s) {
  if (s.paused || Date.now() > refusedUntil) { refused.hidden = true; }
  notice.textContent = s.notice;
  notice.hidden = !s.measuring;
  state.hidden = s.measuring;
  state.textContent = s.paused
    ? "Paused. Measuring resumes within " + Math.ceil((s.pause_left_s || 0) / 60) + " min."
    : (s.measuring ? "" : "Not measuring.");
  button.disabled = s.paused;
  document.body.dataset.measuring = String(s.measuring);
  document.body.dataset.paused = String(s.paused);
}
button.addEventListener("click", () => {
  button.disabled = true;
  fetch("pause", {method: "POST", headers: {"X-Hume-Edge": "pause"}})
    .then((r) => r.ok ? null : r.json().then((body) => {
      refused.textContent = body.message || "Pausing did not work.";
      refused.hidden = false;
      refusedUntil = Date.now() + 60000;
      button.disabled = false;
    }))
    .catch(() => {
      refused.textContent = "Pausing did not work: the kiosk did not answer.";
      refused.hidden = false;
      refusedUntil = Date.now() + 60000;
      button.disabled = false;
    });
});
const events = new EventSource("events");
events.onmessage = (e) => show(JSON.parse(e.data));
events.onerror = () => { state.hidden = false; state.textContent = "Connecting\\u2026"; };
"""

_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _RequestErrors(logging.Filter):
    """aiohttp's own report of a request it could not handle, replaced by one line at INFO, rate-limited.

    A malformed request (``Content-Length: abc``, a NUL in the method) made aiohttp log an ERROR with a
    traceback quoting the raw bytes: any local process could flood the journal that way and make the
    traceback the ``last_error`` of the published health (#31). Refusing it with 400 is aiohttp's job and
    is not a problem of the agent's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.throttle = LogThrottle(_LOGGER)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        kind = type(exc).__name__ if exc is not None else "error"
        self.throttle.log(logging.INFO, kind, "notice page: refused a request it could not read (%s)", kind)
        return False


_HTTP_LOGGER = logging.getLogger(__name__ + ".http")
"""What aiohttp's request handlers log to: everything goes through :class:`_RequestErrors`."""
_HTTP_LOGGER.addFilter(_RequestErrors())


class _Connection(web.RequestHandler):
    """aiohttp's protocol for one connection, telling the page when it opens and closes."""

    def __init__(self, page: NoticePage, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.page = page
        self.busy = 0
        """Requests being handled on this connection now."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.page._opened(self, transport)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.page._lost(self)
        super().connection_lost(exc)


class _Stream:
    """One live /events response: woken on every change, or told to end (a newer stream took its slot)."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.evicted = False


class NoticePage:
    """The page's server: ``await run()`` serves until cancelled; :meth:`changed` pushes the new state."""

    def __init__(
        self,
        host: str,
        port: int,
        state: Callable[[], PageState],
        on_pause: Callable[[], Optional[PauseRefused]],
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"notice page host {host!r}: must be a loopback address (127.0.0.1, ::1)")
        self.host = host
        self.port = port
        self._state = state
        self._on_pause = on_pause
        self._streams: collections.OrderedDict[int, _Stream] = collections.OrderedDict()
        self._stream_ids = itertools.count()
        self._transports: Dict[_Connection, asyncio.BaseTransport] = {}
        self._idle: collections.OrderedDict[_Connection, float] = collections.OrderedDict()
        """Open connections with no request in progress, oldest first, with since when (loop time)."""
        self._closing = False
        self._sweeper: Optional[asyncio.TimerHandle] = None
        self._log = LogThrottle(_LOGGER)
        self.evicted = 0
        """Connections closed to make room, or for idling too long (for tests and the curious)."""
        self.bound: List[str] = []
        """``host:port`` actually listened on (filled once :meth:`run` has bound)."""
        self.ready: Optional[asyncio.Event] = None

    @property
    def connections(self) -> int:
        """Connections open now (at most :data:`MAX_CONNECTIONS`)."""
        return len(self._transports)

    @property
    def streams(self) -> int:
        """Live /events streams now (at most :data:`MAX_STREAMS`)."""
        return len(self._streams)

    def changed(self) -> None:
        """Wake every live stream: the state may differ now (it sends only when it does)."""
        for stream in self._streams.values():
            stream.wake.set()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/page.js", self._script)
        app.router.add_get("/events", self._events)
        app.router.add_post("/pause", self._pause)
        return app

    async def run(self) -> None:
        """Serve until cancelled; a failure to listen is logged (rate-limited) and retried, never raised."""
        self.ready = self.ready or asyncio.Event()
        backoff = Backoff(*LISTEN_RETRY_S)
        while True:
            try:
                await self._serve()
            except OSError as exc:
                delay = backoff.next_delay()
                self._log.log(
                    logging.ERROR,
                    f"listen {exc.errno}",
                    "notice page: cannot listen on %s:%d (%s); retrying in %.0f s",
                    self.host,
                    self.port,
                    exc.strerror or exc,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _serve(self) -> None:
        # handler_cancellation: a client that goes away cancels its handler at once, so a stream's slot is
        # free then, not at its next keepalive write (15 s later).
        options: Dict[str, Any] = {
            "keepalive_timeout": IDLE_TIMEOUT_S,
            "access_log": None,
            "logger": _HTTP_LOGGER,
        }
        runner = web.AppRunner(self.app(), handle_signals=False, handler_cancellation=True, **options)
        await runner.setup()
        server: Optional[asyncio.AbstractServer] = None
        self._closing = False
        try:
            manager = runner.server
            assert manager is not None
            loop = asyncio.get_running_loop()
            server = await loop.create_server(
                lambda: _Connection(self, manager, loop=loop, **options),
                self.host,
                self.port,
                reuse_address=True,
            )
            self.bound = [_host_port(sock.getsockname()) for sock in server.sockets]
            _LOGGER.info("notice page on http://%s/", self.bound[0] if self.bound else self.host)
            self._sweeper = loop.call_later(SWEEP_S, self._sweep)
            if self.ready is not None:
                self.ready.set()
            await asyncio.Event().wait()
        finally:
            if self._sweeper is not None:
                self._sweeper.cancel()
                self._sweeper = None
            # Live streams end themselves when woken with _closing set; cleanup would otherwise wait for
            # each one's next keepalive.
            self._closing = True
            self.changed()
            if server is not None:
                server.close()
            await runner.cleanup()

    # -- connections ----------------------------------------------------------------------------

    def _opened(self, conn: _Connection, transport: asyncio.BaseTransport) -> None:
        if len(self._transports) >= MAX_CONNECTIONS:
            oldest = next(iter(self._idle), None)
            if oldest is None:  # every connection is busy (live streams): no room for this one
                self.evicted += 1
                transport.close()
                return
            self._close(oldest)
        self._transports[conn] = transport
        self._idle[conn] = asyncio.get_running_loop().time()

    def _lost(self, conn: _Connection) -> None:
        self._transports.pop(conn, None)
        self._idle.pop(conn, None)

    def _close(self, conn: _Connection) -> None:
        transport = self._transports.pop(conn, None)
        self._idle.pop(conn, None)
        if transport is not None:
            self.evicted += 1
            transport.close()

    def _sweep(self) -> None:
        """Close the connections idle for :data:`IDLE_TIMEOUT_S` (no request in progress)."""
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - IDLE_TIMEOUT_S
        for conn, since in list(self._idle.items()):
            if since > cutoff:
                break
            self._close(conn)
        self._sweeper = loop.call_later(SWEEP_S, self._sweep)

    # -- handlers -------------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = request.protocol if isinstance(request.protocol, _Connection) else None
        if conn is not None:
            conn.busy += 1
            self._idle.pop(conn, None)
        try:
            host = (request.host or "").rsplit(":", 1)[0].strip("[]")
            if not is_loopback(host):
                raise web.HTTPForbidden(text="this page answers only to a loopback host name\n")
            response = await handler(request)
            if not response.prepared:
                response.headers.update(_SECURITY_HEADERS)
            return response
        finally:
            if conn is not None:
                conn.busy -= 1
                if not conn.busy and conn in self._transports:
                    self._idle[conn] = asyncio.get_running_loop().time()

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=_HTML, content_type="text/html")

    async def _script(self, request: web.Request) -> web.Response:
        return web.Response(text=_JS, content_type="application/javascript")

    async def _pause(self, request: web.Request) -> web.Response:
        if request.headers.get(PAUSE_HEADER) != "pause":
            raise web.HTTPForbidden(text=f"send the header {PAUSE_HEADER}: pause\n")
        refused = self._on_pause()
        if refused is None:
            return web.json_response({"ok": True, "paused": True})
        wait_s = max(1, math.ceil(refused.retry_after_s))
        body = {
            "ok": False,
            "paused": False,
            "error": refused.reason,
            "retry_after_s": wait_s,
            "message": refused_message(wait_s),
        }
        return web.json_response(body, status=429, headers={"Retry-After": str(wait_s)})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        while len(self._streams) >= MAX_STREAMS:  # the newest wins: the kiosk browser reconnecting
            _, oldest = self._streams.popitem(last=False)
            oldest.evicted = True
            oldest.wake.set()
        stream = _Stream()
        key = next(self._stream_ids)
        self._streams[key] = stream
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **_SECURITY_HEADERS})
        try:
            await response.prepare(request)
            last = ""
            while not self._closing and not stream.evicted:
                stream.wake.clear()
                current = self._state().to_json()
                if current != last:
                    await response.write(f"data: {current}\n\n".encode())
                    last = current
                if not await wait_event(stream.wake, KEEPALIVE_S) and not self._closing:
                    await response.write(b": keepalive\n\n")
            return response
        except ConnectionResetError:  # the browser went away (a reload, the kiosk turned off)
            return response
        finally:
            self._streams.pop(key, None)


def refused_message(wait_s: float) -> str:
    """What the page tells a visitor whose pause was refused: why, when it works again, what to do now."""
    minutes = max(1, math.ceil(wait_s / 60.0))
    return (
        "Pausing is not available right now: it has been used as often as this kiosk allows. "
        f"It can pause again in {minutes} min. Measuring goes on meanwhile; "
        "step away from the kiosk if you do not want to be measured."
    )


def _host_port(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
