"""The tests' one way to run a part of the agent in-process: its ``run()`` as a task for a block."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Coroutine, Protocol

from agent.aio import cancel_and_wait, spawn

STOP_TIMEOUT_S = 10.0


class Runs(Protocol):
    def run(self) -> Coroutine[Any, Any, None]: ...


@contextlib.asynccontextmanager
async def running(part: Runs) -> AsyncIterator[asyncio.Task[None]]:
    """``part.run()`` as a task for the duration of the block; cancelled and awaited afterwards.

    The part must stop within :data:`STOP_TIMEOUT_S` of its cancellation (cancelled again meanwhile, as the
    agent's own task owner does). What the task ended with is the test's to check (``task.exception()``).
    """
    task = spawn(part.run(), f"test.{type(part).__name__}")
    try:
        yield task
    finally:
        pending = await cancel_and_wait([task], timeout_s=STOP_TIMEOUT_S)
        assert not pending, f"{type(part).__name__}.run() did not stop within {STOP_TIMEOUT_S:g} s"
