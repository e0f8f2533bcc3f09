"""A fake systemd for an agent process: the test owns ``$NOTIFY_SOCKET`` and sees the protocol.

The datagram socket systemd would own (:class:`NotifyListener`), the environment that points a process at
it, and starting, stopping (SIGTERM within the unit's ``TimeoutStopSec``) and killing that process. Shared
by test_systemd_notify.py and test_hume_status.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional

TIMEOUT_S = 30.0
STOP_BOUND_S = 20.0  # the unit's TimeoutStopSec


class NotifyListener:
    """The datagram socket systemd would own, in the abstract namespace (no path length limit)."""

    def __init__(self) -> None:
        self.name = f"@hume-edge-notify-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.setblocking(False)
        self.messages: List[str] = []

    async def until(
        self,
        predicate: Callable[[List[str]], bool],
        timeout: float = TIMEOUT_S,
        sender: Optional[asyncio.subprocess.Process] = None,
    ) -> None:
        """Receive until ``predicate(messages)`` holds; fail after ``timeout`` or once ``sender`` exited."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.messages):
            remaining = deadline - loop.time()
            if remaining <= 0 or (sender is not None and sender.returncode is not None):
                raise AssertionError(f"not seen; got {self.messages[-20:]}")
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), min(remaining, 0.5))
            except asyncio.TimeoutError:
                continue
            self.messages.extend(data.decode().splitlines())

    def after(self, first: str) -> List[str]:
        return self.messages[self.messages.index(first) + 1 :] if first in self.messages else []

    def close(self) -> None:
        self.sock.close()


def notify_env(listener: NotifyListener, runtime: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HUME_API_KEY", "CREDENTIALS_DIRECTORY")}
    env.pop("JOURNAL_STREAM", None)
    env.update(NOTIFY_SOCKET=listener.name, WATCHDOG_USEC="1000000", RUNTIME_DIRECTORY=str(runtime))
    return env


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def start_process(args: List[str], env: Dict[str, str], log: Path) -> asyncio.subprocess.Process:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return await asyncio.create_subprocess_exec(
            *args, env=env, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT
        )
    finally:
        os.close(fd)


async def kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    await asyncio.wait_for(proc.wait(), 10)


async def stop(proc: asyncio.subprocess.Process, listener: NotifyListener, log: Path) -> int:
    """SIGTERM, expect STOPPING=1, and an exit within the unit's stop timeout."""
    proc.send_signal(signal.SIGTERM)
    try:
        await listener.until(lambda m: "STOPPING=1" in m, STOP_BOUND_S)
        return await asyncio.wait_for(proc.wait(), STOP_BOUND_S)
    except (AssertionError, asyncio.TimeoutError):
        await kill(proc)
        raise AssertionError(f"did not stop cleanly; log:\n{tail(log)}") from None
