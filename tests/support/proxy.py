"""A TCP proxy on loopback that a test can cut or silently freeze, for link faults a broker cannot fake.

It runs its own asyncio loop in a daemon thread, so sync tests, async tests and subprocess drivers can all
use it the same way::

    with Proxy("127.0.0.1", broker.port) as proxy:   # clients connect to proxy.port
        proxy.blackhole()   # stop forwarding: bytes are read and discarded, no FIN, no RST
        proxy.cut()         # close every open connection (FIN), the listener stays
        proxy.resume()      # forward again (a frozen stream lost bytes: cut() it first)
        proxy.delay(0.3)    # every chunk waits this long before it is passed on (latency, in order)
        proxy.throttle(2000)  # at most this many bytes per second in each direction
        proxy.half_open()   # the server side of every open connection is closed, the client side is
                            # left open and silent (no FIN): a peer that vanished, as after a NAT reset
        proxy.freeze()      # stop reading: bytes wait in the sockets' buffers (no FIN either way), and
                            # resume() passes them on, in order, as a congested link or a stalled router does
        proxy.reset()       # RST every open connection; with refuse=True also every new one until resume()

``blackhole`` reads and discards rather than pausing reads, so the sender's writes keep succeeding, as
they do when a router or Wi-Fi link dies and nothing answers. ``freeze`` holds instead of discarding, so a
link frozen shorter than the peers' keepalive resumes with nothing lost. ``resume()`` ends every mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Any, List, Optional, Set, Tuple

from agent.aio import cancel_and_wait, spawn

CHUNK_BYTES = 65536
CONTROL_TIMEOUT_S = 10.0


class Proxy:
    """Forward ``listen host:port`` to ``target``; see the module docstring."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = port
        self.frozen = False
        self.refusing = False
        self.delay_s = 0.0
        self.rate_bps: Optional[float] = None
        self.connections = 0
        self.discarded_bytes = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-proxy", daemon=True)
        self._server: Optional[asyncio.AbstractServer] = None
        self._writers: Set[asyncio.StreamWriter] = set()
        self._pairs: Set[Tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._dead: Set[asyncio.StreamWriter] = set()
        self._connections: Set[asyncio.Task[Any]] = set()
        """Server-side writers closed by :meth:`half_open`; bytes meant for them are discarded."""
        self._released: asyncio.Event  # made on the proxy's loop (Python 3.9 binds events to a loop)
        self._flowing: asyncio.Event
        """Clear while frozen (:meth:`freeze`): the pumps read nothing until it is set again."""

    # -- control (any thread) -------------------------------------------------------------------

    def start(self) -> Proxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def blackhole(self) -> None:
        self.frozen = True
        self._loop.call_soon_threadsafe(self._released.clear)

    def resume(self) -> None:
        self.frozen = False
        self.refusing = False
        self.delay_s = 0.0
        self.rate_bps = None
        self._loop.call_soon_threadsafe(self._released.set)
        self._loop.call_soon_threadsafe(self._flowing.set)

    def freeze(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def reset(self, refuse: bool = False) -> None:
        self.refusing = refuse
        self._call(self._reset_all())

    def delay(self, seconds: float) -> None:
        self.delay_s = seconds

    def throttle(self, bytes_per_s: float) -> None:
        self.rate_bps = bytes_per_s

    def half_open(self) -> None:
        self._call(self._half_open())

    def cut(self) -> None:
        self._call(self._close_all())

    def stop(self) -> None:
        """Close the listener and every connection, end their tasks, then the loop and its thread.

        A cut, not a drain: bytes a client wrote that are not forwarded yet are lost. A test that checks
        what a client sends as it stops (``stopped``, a DISCONNECT) checks it before the proxy stops.
        """
        if self._thread.is_alive():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CONTROL_TIMEOUT_S)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    # -- the proxy's own loop -------------------------------------------------------------------

    async def _listen(self) -> None:
        self._released = asyncio.Event()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close_all(self) -> None:
        self._released.set()
        self._released = asyncio.Event()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _reset_all(self) -> None:
        """RST both sides of every connection and end its task (a frozen one is waiting, not reading)."""
        for writer in list(self._writers):
            _abort(writer)
        self._writers.clear()
        await cancel_and_wait(set(self._connections), timeout_s=CONTROL_TIMEOUT_S)

    async def _half_open(self) -> None:
        for _, up_writer in list(self._pairs):
            self._dead.add(up_writer)
            up_writer.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._close_all()
        await cancel_and_wait(self._connections, timeout_s=CONTROL_TIMEOUT_S)
        if self._server is not None:
            await self._server.wait_closed()  # 3.12+ waits here for the connections ended above

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection (asyncio's task for it, owned here until it ends)."""
        task = asyncio.current_task()
        assert task is not None
        task.set_name(f"test-proxy-{self.port}.connection")
        self._connections.add(task)
        try:
            await self._relay(reader, writer)
        except asyncio.CancelledError:
            pass  # stop() ended it; asyncio's stream callback would log a cancelled connection as an error
        finally:
            self._connections.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refusing:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        self._pairs.add((writer, up_writer))
        pumps: List[asyncio.Task[Any]] = [
            spawn(self._pump(reader, up_writer), f"test-proxy-{self.port}.to-target"),
            spawn(self._pump(up_reader, writer), f"test-proxy-{self.port}.to-client"),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            # A frozen link passes nothing on, not even the other side's FIN: hold it until resume() or cut().
            if self.frozen:
                await self._released.wait()
            elif up_writer in self._dead:
                # Half-open: the client keeps a socket nobody answers, until it gives up or the test cuts it.
                released = spawn(self._released.wait(), f"test-proxy-{self.port}.released")
                pumps.append(released)
                await asyncio.wait([pumps[0], released], return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(pumps)
            self._pairs.discard((writer, up_writer))
            self._dead.discard(up_writer)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._flowing.wait()
                rate = self.rate_bps
                data = await reader.read(max(1, int(rate / 10)) if rate else CHUNK_BYTES)
                if not data:
                    return
                if self.frozen or writer in self._dead:
                    self.discarded_bytes += len(data)
                    continue
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)  # scenario: the injected latency
                await self._flowing.wait()  # frozen after this read: hold the bytes read too
                writer.write(data)
                await writer.drain()
                if self.rate_bps:
                    await asyncio.sleep(len(data) / self.rate_bps)  # scenario: the throttled rate
        except (OSError, asyncio.IncompleteReadError):
            return


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a restarted peer or a NAT that lost the flow answers."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
