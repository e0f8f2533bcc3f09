"""Loopback ports for the suite's servers: no two pytest-xdist workers, and no outgoing connection, share one.

The usual probe (bind to port 0, close, hand the number to a server) draws from the kernel's ephemeral range
(32768-60999 on Debian), the same range every outgoing connection's local port comes from. With the suite
spread over several worker processes, a broker stopped for an outage and started again on its port could
find the port taken meanwhile: by another worker's probe or by any client's connect(). So test ports come
from below that range, from a block of their own per worker (``PYTEST_XDIST_WORKER=gwN``), and are probed
with a bind before use (something else on the machine may hold one).
"""

from __future__ import annotations

import itertools
import os
import socket
from typing import Awaitable, Callable, Tuple

from aiohttp import web

FIRST_PORT = int(os.environ.get("HUME_EDGE_TEST_PORT_BASE", "20000"))
"""Where the blocks start; ``HUME_EDGE_TEST_PORT_BASE`` moves them, so two suites run at once on one machine
(two checkouts, say) never probe the same ports: give each its own base, ``BLOCK_PORTS`` x workers apart."""
BLOCK_PORTS = 1500
"""Ports per worker: one worker takes about 600 in a whole run; eight workers fit below 32768."""
MAX_WORKERS = 8

_next_offset = itertools.count()


def worker_index() -> int:
    """0 for ``gw0`` or a run without xdist, 1 for ``gw1``, ..."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0
    if index >= MAX_WORKERS:
        raise RuntimeError(
            f"tests/support/ports.py has port blocks for {MAX_WORKERS} workers, not {index + 1}"
        )
    return index


def free_port(host: str = "127.0.0.1") -> int:
    """A port of this worker's block that nobody listens on right now."""
    first = FIRST_PORT + worker_index() * BLOCK_PORTS
    for _ in range(BLOCK_PORTS):
        port = first + next(_next_offset) % BLOCK_PORTS
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue  # in use, or still in TIME_WAIT: the next one
            return port
    raise RuntimeError(f"no free port in {first}-{first + BLOCK_PORTS - 1} on {host}")


SHUTDOWN_S = 0.5
"""How long a stand-in server's ``cleanup()`` waits for its open connections."""


async def serve_ws(
    path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]], port: int = 0
) -> Tuple[web.AppRunner, int]:
    """A stand-in server answering ``path`` with ``handler`` on loopback (``port`` 0: any free one); its
    runner (``cleanup()`` stops it) and the port it listens on.

    ``cleanup()`` gives open connections :data:`SHUTDOWN_S` to finish, not aiohttp's default: a hostile
    stand-in holds its sockets open, and two tests each waited 20 s for that at their end."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_S)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, int(runner.addresses[0][1])
