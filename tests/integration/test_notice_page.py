"""The on-screen notice page: loopback only, nothing measured on any route, live in headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from typing import AsyncIterator, List, Optional

import aiohttp
import pytest

from agent.hume.v0.protocol import EXPRESSIONS
from agent.ops import logs
from agent.privacy.notice_page import MAX_STREAMS, NoticePage, PageState
from agent.privacy.state import PauseRefused
from tests.support.chromium import chromium, needs_chromium
from tests.support.tasks import running
from tests.support.waits import eventually

pytestmark = pytest.mark.timeout(60)


class Kiosk:
    """What the service would be: a state the test moves, and the pauses the page asked for."""

    def __init__(self) -> None:
        self.state = PageState(
            measuring=False, notice="We measure expressions here.", paused=False, pause_left_s=None
        )
        self.pauses = 0
        self.paused = asyncio.Event()
        self.refuse: Optional[PauseRefused] = None
        """What the desk would answer a pause (None: granted)."""

    def pause(self) -> Optional[PauseRefused]:
        self.pauses += 1
        self.paused.set()
        return self.refuse


@contextlib.asynccontextmanager
async def serving(kiosk: Kiosk) -> AsyncIterator[NoticePage]:
    page = NoticePage("127.0.0.1", 0, lambda: kiosk.state, kiosk.pause)
    page.ready = asyncio.Event()
    async with running(page):
        await asyncio.wait_for(page.ready.wait(), 10)
        yield page


def test_refuses_a_non_loopback_bind() -> None:
    for host in ("0.0.0.0", "::", "192.168.1.10", "kiosk.local"):
        with pytest.raises(ValueError, match="must be a loopback address"):
            NoticePage(host, 8750, lambda: Kiosk().state, lambda: None)


async def test_binds_loopback_and_no_route_exposes_measurement_data() -> None:
    kiosk = Kiosk()
    kiosk.state = PageState(True, "We measure expressions here.", False, None)
    async with serving(kiosk) as page:
        assert page.bound
        assert all(b.startswith("127.0.0.1:") for b in page.bound)
        base = f"http://{page.bound[0]}"
        bodies: List[str] = []
        async with aiohttp.ClientSession() as http:
            app = page.app()
            routes = [(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None]
            assert {p for _, p in routes} == {"/", "/page.js", "/events", "/pause"}
            for method, path in routes:
                if path == "/events":
                    async with http.get(base + path) as resp:
                        assert resp.status == 200
                        line = await asyncio.wait_for(resp.content.readline(), 5)
                        bodies.append(line.decode())
                        assert json.loads(line.decode()[len("data: ") :])["measuring"] is True
                    continue
                headers = {"X-Hume-Edge": "pause"} if method == "POST" else {}
                async with http.request(method, base + path, headers=headers) as resp:
                    assert resp.status == 200, path
                    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
                    bodies.append(await resp.text())
            # Guards: another Host name (DNS rebinding), a cross-site POST without the header.
            async with http.get(
                base + "/", headers={"Host": f"evil.example:{page.bound[0].split(':')[1]}"}
            ) as r:
                assert r.status == 403
            async with http.post(base + "/pause") as r:
                assert r.status == 403
        assert kiosk.pauses == 1  # only the POST with the header paused
        text = "\n".join(bodies)
        for name in EXPRESSIONS:
            assert f'"{name}"' not in text
            assert f">{name}<" not in text
        for word in (
            "score",
            "face_id",
            "session",
            "jpeg",
            "base64",
            "data:image",
            "<img",
            "<video",
            "<audio",
        ):
            assert word not in text.lower()


async def test_streams_are_bounded_the_newest_wins_and_a_gone_client_frees_its_slot_at_once() -> None:
    """Eight held streams once locked the kiosk's browser out (503), and a slot freed 15 s after its client
    was gone (#31): now the newest stream ends the oldest, and a closed client's slot is free at once."""
    kiosk = Kiosk()
    async with serving(kiosk) as page, aiohttp.ClientSession() as http:
        base = f"http://{page.bound[0]}/events"
        open_streams = [await http.get(base) for _ in range(MAX_STREAMS)]
        try:
            for resp in open_streams:
                await asyncio.wait_for(resp.content.readline(), 5)
            assert page.streams == MAX_STREAMS
            async with http.get(base) as newest:
                assert newest.status == 200
                assert (await asyncio.wait_for(newest.content.readline(), 5)).startswith(b"data: ")
                assert page.streams == MAX_STREAMS
                # The oldest stream was ended to make room: its client reads the end of it.
                assert await asyncio.wait_for(open_streams[0].content.read(), 5) == b"\n"
            for resp in open_streams:
                resp.close()
            assert await eventually(lambda: page.streams == 0, 2.0), f"{page.streams} slots still held"
        finally:
            for resp in open_streams:
                resp.close()


async def test_a_malformed_request_is_refused_without_a_traceback_in_last_error() -> None:
    """aiohttp logged an ERROR with a traceback quoting the raw request: it became the published health's
    ``last_error`` (#31). Now it is one INFO line, rate-limited."""
    kiosk = Kiosk()
    root = logging.getLogger()
    level = root.level
    logs.configure("debug", io.StringIO())
    try:
        async with serving(kiosk) as page:
            host, port = page.bound[0].rsplit(":", 1)
            for junk in (
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
                b"\x00 x\r\n\r\n",
            ):
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(junk)
                assert (await asyncio.wait_for(reader.read(12), 5)).startswith(b"HTTP/1.")
                writer.close()
        assert logs.last_problem() is None, logs.last_problem()
    finally:
        handler, logs._handler = logs._handler, None  # as before: no agent handler in the test process
        if handler is not None:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)


@needs_chromium
async def test_chromium_shows_the_notice_live_and_its_button_pauses() -> None:
    kiosk = Kiosk()
    async with serving(kiosk) as page, chromium() as browser:
        await browser.navigate(f"http://{page.bound[0]}/")
        await browser.wait_for("document.getElementById('state').textContent === 'Not measuring.'")
        assert await browser.evaluate("document.getElementById('notice').hidden") is True
        # A session starts: the page must show the notice within a second, with no reload.
        kiosk.state = PageState(True, kiosk.state.notice, False, None)
        page.changed()
        await browser.wait_for(
            "!document.getElementById('notice').hidden && "
            "document.getElementById('notice').textContent === 'We measure expressions here.'",
            timeout_s=1.0,
        )
        await browser.click("#pause")
        await asyncio.wait_for(kiosk.paused.wait(), 5)
        kiosk.state = PageState(False, kiosk.state.notice, True, 300)
        page.changed()
        await browser.wait_for(
            "document.body.dataset.paused === 'true' && document.getElementById('notice').hidden"
        )
        assert "Paused" in await browser.evaluate("document.getElementById('state').textContent")


@needs_chromium
async def test_a_refused_pause_is_shown_to_the_visitor_not_swallowed() -> None:
    """A pause past ``privacy.page_pauses_per_hour`` (#31) is answered 429; the page must tell the visitor
    why, when pausing works again and that measuring goes on, and let them press again later."""
    kiosk = Kiosk()
    kiosk.state = PageState(True, "We measure expressions here.", False, None)
    kiosk.refuse = PauseRefused("the on-screen pause was used as often as this kiosk allows", 130.0)
    async with serving(kiosk) as page, chromium() as browser:
        await browser.navigate(f"http://{page.bound[0]}/")
        await browser.wait_for("!document.getElementById('notice').hidden")
        assert await browser.evaluate("document.getElementById('refused').hidden") is True
        await browser.click("#pause")
        await asyncio.wait_for(kiosk.paused.wait(), 5)
        await browser.wait_for("!document.getElementById('refused').hidden")
        shown = await browser.evaluate("document.getElementById('refused').textContent")
        assert "Pausing is not available right now" in shown
        assert "It can pause again in 3 min" in shown
        assert "Measuring goes on" in shown
        assert await browser.evaluate("document.getElementById('pause').disabled") is False
        # A state update while still measuring keeps the explanation up; a granted pause replaces it.
        page.changed()
        kiosk.state = PageState(False, kiosk.state.notice, True, 300)
        page.changed()
        await browser.wait_for("document.body.dataset.paused === 'true'")
        assert await browser.evaluate("document.getElementById('refused').hidden") is True
