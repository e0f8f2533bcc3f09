"""The agent's asyncio toolkit: named tasks, their owner, cancel-and-wait, waits with a timeout, owned timers.

One place for what Python 3.9-3.11 gets subtly wrong, so no module carries its own copy:

- ``asyncio.wait_for`` swallows a cancellation that lands as its awaitable completes (cpython gh-86296,
  bpo-42130, fixed in 3.12): :func:`wait_event` and :func:`wait_get` wait without it, and
  :func:`cancel_and_wait` cancels again a task that swallowed one.
- An ``asyncio.Event`` or ``Queue`` binds to the loop current at its creation on 3.9, and parts of the agent
  are built before the loop runs: :class:`OnFirstUse` makes one inside the loop, when first asked for.
- Every task has a name (``hume-edge.<part>``, shown by a stuck-task log line and by ``asyncio`` debug
  output) and an owner that cancels it; every timer has an owner that cancels it (:class:`Timers`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Dict, Generic, Iterable, List, Optional, Set, TypeVar

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

RECANCEL_S = 1.0
"""A task still running this long after its cancellation is cancelled again (the 3.9-3.11 swallow)."""
STOP_TIMEOUT_S = 10.0
"""How long :meth:`TaskOwner.cancel` waits for the agent's loops; the unit's TimeoutStopSec is larger."""


def spawn(coro: Awaitable[T], name: str) -> asyncio.Task[T]:
    """``coro`` as a task called ``name`` (every task of the agent is named: stuck-task logs say which)."""
    task: asyncio.Task[T] = asyncio.ensure_future(coro)
    task.set_name(name)
    return task


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]],
    *,
    timeout_s: Optional[float] = None,
    recancel_s: float = RECANCEL_S,
) -> Set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait until they have finished; return those still running after ``timeout_s``.

    A task still running ``recancel_s`` after its cancellation is cancelled again: before Python 3.12,
    ``asyncio.wait_for`` inside it can swallow one cancellation that lands as its awaitable completes.
    ``timeout_s`` None waits as long as it takes. Exceptions of the tasks are not raised here.
    """
    pending: Set[asyncio.Task[Any]] = set(tasks)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while pending:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        for task in pending:
            task.cancel()
        step = recancel_s if remaining is None else min(recancel_s, remaining)
        _, pending = await asyncio.wait(pending, timeout=step)
    return pending


async def wait_event(event: asyncio.Event, timeout: Optional[float]) -> bool:
    """Wait until ``event`` is set (True) or ``timeout`` seconds pass (False).

    Not ``asyncio.wait_for(event.wait(), timeout)``: before Python 3.12 that swallows a cancellation which
    lands as the event is set (cpython gh-86296), and a loop that ignored its cancellation would never stop.
    """
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((waiter,), timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()


async def wait_get(queue: asyncio.Queue[T], timeout: Optional[float]) -> Optional[T]:
    """The next item of ``queue``, or None after ``timeout`` seconds.

    Not ``asyncio.wait_for(queue.get(), ...)``: before Python 3.12 that can swallow a cancellation that
    lands as the item arrives (bpo-42130), and a loop that ignored its cancellation would hang shutdown.
    """
    if not queue.empty():
        return queue.get_nowait()
    if timeout is not None and timeout <= 0:
        return None
    getter = asyncio.ensure_future(queue.get())
    try:
        await asyncio.wait((getter,), timeout=timeout)
    finally:
        if not getter.done():
            getter.cancel()
    return getter.result() if getter.done() and not getter.cancelled() else None


class OnFirstUse(Generic[T]):
    """A loop-bound object (``asyncio.Event``, ``asyncio.Queue``) made when first asked for.

    On Python 3.9 those bind to the loop current at their creation, and the agent's parts may be constructed
    before the loop runs; making it on first use, inside the loop, binds it to the right one.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: Optional[T] = None

    def get(self) -> T:
        """The object, made now if it was not yet (call inside the running loop)."""
        if self._value is None:
            self._value = self._factory()
        return self._value

    @property
    def made(self) -> Optional[T]:
        """The object if it was made, else None (for callers that must not make it, e.g. off the loop)."""
        return self._value


class Timers:
    """Owns ``call_later`` timers, so a stop cancels them rather than leaving callbacks to fire later."""

    def __init__(self) -> None:
        self._handles: Set[asyncio.TimerHandle] = set()
        self._keyed: Set[str] = set()

    def call_later(self, delay_s: float, callback: Callable[..., None], *args: Any) -> None:
        def fire() -> None:
            self._handles.discard(handle)
            callback(*args)

        handle = asyncio.get_running_loop().call_later(delay_s, fire)
        self._handles.add(handle)

    def once(self, key: str, delay_s: float, callback: Callable[[], None]) -> None:
        """``callback`` in ``delay_s``, unless a timer of ``key`` is pending (one wake-up per kind)."""
        if key in self._keyed:
            return
        self._keyed.add(key)

        def fire() -> None:
            self._keyed.discard(key)
            callback()

        self.call_later(delay_s, fire)

    def cancel(self) -> None:
        """Cancel every pending timer (idempotent)."""
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        self._keyed.clear()

    @property
    def pending(self) -> int:
        return len(self._handles)


class TaskOwner:
    """Owns named tasks; the first one to end (other than by cancellation) ends the whole set.

    A 3.9-safe subset of ``asyncio.TaskGroup``: every long-lived loop of the agent is supposed to run
    until cancelled, so a loop that returns or raises is either a fatal condition (a refused key at
    start-up) or a bug, and in both cases the process should stop rather than limp on.
    """

    def __init__(self, prefix: str = "hume-edge", stop_timeout_s: float = STOP_TIMEOUT_S) -> None:
        self._prefix = prefix
        self._stop_timeout_s = stop_timeout_s
        self._tasks: Dict[str, asyncio.Task[Any]] = {}

    def start(self, name: str, coro: Awaitable[Any]) -> None:
        self._tasks[name] = spawn(coro, f"{self._prefix}.{name}")

    async def wait_any(self, stop: asyncio.Event) -> Optional[asyncio.Task[Any]]:
        """Wait for ``stop`` or for a task to end; return the ended task (None when stopped)."""
        stopper = spawn(stop.wait(), f"{self._prefix}.stop")
        try:
            done, _ = await asyncio.wait(
                [stopper, *self._tasks.values()], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopper.cancel()
        ended = [t for t in done if t is not stopper]
        return ended[0] if ended else None

    async def cancel(self, names: Iterable[str]) -> None:
        """Cancel the named tasks and wait (bounded) until they have finished."""
        tasks = [self._tasks.pop(n) for n in list(names) if n in self._tasks]
        for t in await cancel_and_wait(tasks, timeout_s=self._stop_timeout_s):
            _LOGGER.error("task %s did not stop within %.0f s", t.get_name(), self._stop_timeout_s)
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                _LOGGER.debug("task %s ended with %r during shutdown", t.get_name(), t.exception())

    @property
    def names(self) -> List[str]:
        return list(self._tasks)
