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
page cannot send without a CORS preflight this server never grants. At most :data:`MAX_STREAMS` live
streams at once, so a misbehaving client cannot grow memory without bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import Callable, List, Optional

from aiohttp import web
from aiohttp.typedefs import Handler

from agent.aio import wait_event
from agent.config import is_loopback

_LOGGER = logging.getLogger(__name__)

MAX_STREAMS = 8
"""Live /events streams at once (a kiosk needs one; a reloading browser briefly two)."""
KEEPALIVE_S = 15.0
"""An SSE comment this often, so a browser that went away is noticed and its stream closed."""
PAUSE_HEADER = "X-Hume-Edge"


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
#notice{flex:1}#notice[hidden]{display:none}#state{flex:1}
button{font:inherit;padding:.5em 1.2em;border:0;border-radius:.4em;background:#fc3;color:#000}
button:disabled{opacity:.5}
</style></head>
<body><div id="bar">
<p id="notice" role="status" aria-live="polite" hidden></p>
<p id="state" aria-live="polite">Connecting&hellip;</p>
<button id="pause" type="button">Pause measuring</button>
</div><script src="page.js"></script></body></html>
"""

_JS = """"use strict";
const notice = document.getElementById("notice");
const state = document.getElementById("state");
const button = document.getElementById("pause");
function show(s) {
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
    .catch(() => { button.disabled = false; });
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


class NoticePage:
    """The page's server: ``await run()`` serves until cancelled; :meth:`changed` pushes the new state."""

    def __init__(
        self, host: str, port: int, state: Callable[[], PageState], on_pause: Callable[[], None]
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"notice page host {host!r}: must be a loopback address (127.0.0.1, ::1)")
        self.host = host
        self.port = port
        self._state = state
        self._on_pause = on_pause
        self._changed: Optional[asyncio.Event] = None
        self._streams = 0
        self._closing = False
        self.bound: List[str] = []
        """``host:port`` actually listened on (filled once :meth:`run` has bound)."""
        self.ready: Optional[asyncio.Event] = None

    def changed(self) -> None:
        """Wake every live stream: the state may differ now (it sends only when it does)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/page.js", self._script)
        app.router.add_get("/events", self._events)
        app.router.add_post("/pause", self._pause)
        return app

    async def run(self) -> None:
        self._changed = asyncio.Event()
        self.ready = self.ready or asyncio.Event()
        runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
            self.bound = [f"{a[0]}:{a[1]}" for a in runner.addresses if isinstance(a, tuple)]
            _LOGGER.info("notice page on http://%s/", self.bound[0] if self.bound else self.host)
            self.ready.set()
            await asyncio.Event().wait()
        finally:
            # Live streams end themselves when woken with _closing set; cleanup would otherwise wait for
            # each one's next keepalive.
            self._closing = True
            self.changed()
            await runner.cleanup()

    # -- handlers -------------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        host = (request.host or "").rsplit(":", 1)[0].strip("[]")
        if not is_loopback(host):
            raise web.HTTPForbidden(text="this page answers only to a loopback host name\n")
        response = await handler(request)
        if not response.prepared:
            response.headers.update(_SECURITY_HEADERS)
        return response

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=_HTML, content_type="text/html")

    async def _script(self, request: web.Request) -> web.Response:
        return web.Response(text=_JS, content_type="application/javascript")

    async def _pause(self, request: web.Request) -> web.Response:
        if request.headers.get(PAUSE_HEADER) != "pause":
            raise web.HTTPForbidden(text=f"send the header {PAUSE_HEADER}: pause\n")
        self._on_pause()
        return web.json_response({"ok": True, "paused": True})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self._streams >= MAX_STREAMS:
            raise web.HTTPServiceUnavailable(text=f"at most {MAX_STREAMS} live streams\n")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **_SECURITY_HEADERS})
        self._streams += 1
        try:
            await response.prepare(request)
            last = ""
            while not self._closing:
                changed = self._changed or asyncio.Event()
                current = self._state().to_json()
                if current != last:
                    await response.write(f"data: {current}\n\n".encode())
                    last = current
                if not await wait_event(changed, KEEPALIVE_S) and not self._closing:
                    await response.write(b": keepalive\n\n")
            return response
        except ConnectionResetError:  # the browser went away (a reload, the kiosk turned off)
            return response
        finally:
            self._streams -= 1
