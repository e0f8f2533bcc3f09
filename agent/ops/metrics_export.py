"""Where metrics go: a file for node_exporter's textfile collector, and a small, bounded ``GET /metrics``.

**Textfile** (``[metrics] textfile_dir``): node_exporter reads every ``*.prom`` file of its
``--collector.textfile.directory`` at each scrape, so the file is replaced atomically (a temporary file in
the same directory, then ``os.replace``): a scrape never reads half a file. No fsync: the figures are
worthless after a power cut, and the SD card is spared. At a clean stop a last file says ``stopped``; after
a SIGKILL the file stays as it was, and ``hume_edge_health_timestamp_seconds`` ages (alert
``HumeEdgeKioskStale``).

**HTTP** (``[metrics] listen``, and ``hume-edge fleet --metrics-listen``): an asyncio server that answers
``GET /metrics`` and nothing else, built so that a scraper, a port scanner or a flood cannot hurt the
agent: at most :data:`MAX_CONNECTIONS` connections at once (more are closed unanswered), a request head of
at most :data:`MAX_HEAD_BYTES` read within :data:`HEAD_TIMEOUT_S`, one response per connection, and the
body rendered at most once per :data:`MIN_RENDER_S` whatever the scrape rate (a render of one kiosk costs
about 1 ms; the fleet's renders run apart, see :class:`ThreadedServer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Set, Tuple

from agent.aio import cancel_and_wait
from agent.ops.replace import replace_file

_LOGGER = logging.getLogger(__name__)

TEXTFILE_NAME = "hume_edge.prom"
TEXTFILE_MODE = 0o644
MAX_CONNECTIONS = 8
MAX_HEAD_BYTES = 4096
HEAD_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 10.0
MIN_RENDER_S = 1.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def write_textfile(directory: Path, body: bytes, name: str = TEXTFILE_NAME) -> Path:
    """Replace ``directory/name`` with ``body`` atomically; returns the path. World-readable: node_exporter
    runs as its own user, and serves the same figures on its port anyway (docs/monitoring.md). The
    temporary file's name starts with a dot and does not end in ``.prom``: the collector skips it."""
    path = directory / name
    replace_file(path, body, TEXTFILE_MODE)
    return path


class Cached:
    """``render()`` called at most once per ``min_s``; between, the last body is served again."""

    def __init__(self, render: Callable[[], bytes], min_s: float = MIN_RENDER_S) -> None:
        self._render = render
        self._min_s = min_s
        self._body = b""
        self._at = float("-inf")

    def __call__(self) -> bytes:
        now = time.monotonic()
        if now - self._at >= self._min_s:
            self._body = self._render()
            self._at = now
        return self._body


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class MetricsServer:
    """``GET /metrics`` on ``host:port`` from the running event loop; ``body()`` gives the exposition."""

    def __init__(self, host: str, port: int, body: Callable[[], bytes]) -> None:
        self.host = host
        self.port = port
        self.body = body
        self.open_connections = 0
        self.refused = 0
        """Connections closed unanswered because :data:`MAX_CONNECTIONS` were open."""
        self.served = 0
        self._server: Optional[asyncio.AbstractServer] = None
        self._clients: Set[asyncio.Task[Any]] = set()
        """The connections' tasks (asyncio starts one per connection): named here, ended by close()."""

    async def start(self) -> None:
        """Bind; OSError (address in use, not local) propagates with the address in its text."""
        try:
            self._server = await asyncio.start_server(
                self._handle, self.host, self.port, limit=MAX_HEAD_BYTES, backlog=MAX_CONNECTIONS
            )
        except OSError as exc:
            where = f"{self.host}:{self.port}"
            raise OSError(exc.errno, f"metrics: cannot listen on {where}: {exc.strerror}") from None
        sock = self._server.sockets[0].getsockname()
        self.port = int(sock[1])
        _LOGGER.info("metrics: serving http://%s:%d/metrics", self.host, self.port)

    async def close(self) -> None:
        """Stop listening and end every open connection."""
        if self._server is not None:
            self._server.close()
            await cancel_and_wait(list(self._clients), timeout_s=2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.set_name("hume-edge.metrics.client")
        self._clients.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass  # close() ends it; asyncio's stream callback would log a cancelled task as an error
        finally:
            self._clients.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= MAX_CONNECTIONS:
            self.refused += 1
            writer.close()
            return
        self.open_connections += 1
        try:
            reply = await self._reply(reader)
            writer.write(reply)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a slow, silent or vanished client: nothing to answer
        finally:
            self.open_connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _reply(self, reader: asyncio.StreamReader) -> bytes:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        except (asyncio.LimitOverrunError, ValueError):
            return _response("431 Request Header Fields Too Large", b"request head too large\n")
        method, _, rest = head.partition(b" ")
        target = rest.partition(b" ")[0].partition(b"?")[0]
        if target != b"/metrics":
            return _response("404 Not Found", b"only /metrics is served here\n")
        if method != b"GET":
            return _response("405 Method Not Allowed", b"only GET /metrics\n")
        self.served += 1
        return _response("200 OK", self.body(), CONTENT_TYPE)


class ThreadedServer:
    """A :class:`MetricsServer` on an event loop of its own thread, for a caller that is not asyncio
    (``hume-edge fleet``, whose paho loop runs in the main thread). ``body()`` is called on that thread:
    hand it something that only reads (the fleet swaps in a rendered ``bytes`` after each refresh)."""

    def __init__(self, host: str, port: int, body: Callable[[], bytes]) -> None:
        self.server = MetricsServer(host, port, body)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="hume-edge-metrics", daemon=True)

    def start(self) -> Tuple[str, int]:
        """Bind and serve; OSError when the address cannot be bound."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self.server.host, self.server.port

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.server.start())
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.server.close())
        self._loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
