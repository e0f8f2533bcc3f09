"""Headless Chromium (Debian ``chromium``) driven over the DevTools protocol with aiohttp.

No Selenium or Playwright: CDP over one WebSocket is all the tests need (navigate, wait on the DOM, click).
Flags: ``--no-sandbox`` (see FLAGS), ``--disable-dev-shm-usage`` for
a small /dev/shm, and the background-networking flags, without which Chromium keeps dialling Google's hosts
on a closed network. Waiting is on the DOM (a promise in the page that resolves when a condition holds),
never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Optional

import aiohttp
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
START_TIMEOUT_S = 30.0
FLAGS = (
    "--headless=new",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    # Root needs it, and so does a normal user where unprivileged user namespaces are off (a chroot, many
    # containers) and Debian's setuid chromium-sandbox (only recommended) is absent: Chromium then exits 1,
    # "No usable sandbox". The tests load only our own page from loopback.
    "--no-sandbox",
)

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup --dev installs it)"
)


class CdpError(RuntimeError):
    """Chromium answered a command with an error, or a page-side wait failed."""


class Page:
    """One page target: send CDP commands, evaluate JavaScript, wait on the DOM, click."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def send(
        self, method: str, params: Optional[Dict[str, Any]] = None, timeout_s: float = 30.0
    ) -> Any:
        msg_id = next(self._ids)
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:  # events of enabled domains arrive in between; skip them
            msg = await self._ws.receive(timeout=max(0.01, deadline - loop.time()))
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise CdpError(f"DevTools socket closed during {method}: {msg.type}")
            body = json.loads(msg.data)
            if body.get("id") == msg_id:
                if "error" in body:
                    raise CdpError(f"{method}: {body['error']}")
                return body.get("result")

    async def evaluate(self, expression: str, timeout_s: float = 30.0) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout_s=timeout_s + 5,
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression[:80]}: {result['exceptionDetails'].get('exception', result)}")
        return result["result"].get("value")

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", {"url": url})
        await self.wait_for("document.readyState === 'complete'")

    async def wait_for(self, condition: str, timeout_s: float = 10.0) -> None:
        """Resolve once ``condition`` (JavaScript) is true, checked on every animation frame and DOM change.

        Raises :class:`CdpError` if it is still false after ``timeout_s`` (measured by the page).
        """
        script = f"""new Promise((resolve, reject) => {{
          const ok = () => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }};
          if (ok()) return resolve(true);
          const obs = new MutationObserver(() => {{ if (ok()) {{ obs.disconnect(); resolve(true); }} }});
          obs.observe(document, {{subtree: true, childList: true, attributes: true, characterData: true}});
          setTimeout(() => {{ obs.disconnect(); ok() ? resolve(true) : reject(new Error("still false")); }},
                     {int(timeout_s * 1000)});
        }})"""
        await self.evaluate(script, timeout_s=timeout_s)

    async def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the element."""
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1},
            )


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Page]:
    """A headless Chromium with one blank page; killed (its whole process group) on exit."""
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="cdp-")
    args = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}"]
    proc = await asyncio.create_subprocess_exec(
        *args, "about:blank", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    port_file = Path(profile) / "DevToolsActivePort"
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.returncode is not None or loop.time() > deadline:
                raise CdpError(f"chromium did not start (exit {proc.returncode})")
            await asyncio.sleep(0.05)  # polling a file Chromium writes once; there is no event to await
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
            async with http.ws_connect(ws_url, max_msg_size=0) as ws:
                page = Page(ws)
                await page.send("Page.enable")
                yield page
                with contextlib.suppress(Exception):
                    await page.send("Browser.close", timeout_s=5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        await asyncio.wait_for(proc.wait(), 10)
        shutil.rmtree(profile, ignore_errors=True)
