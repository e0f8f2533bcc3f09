"""The tests' one way to wait for a condition with no event of its own (another thread's or process's state).

Where there is an event (a SUBACK, a retained message, a log line, a file), wait on it instead; these poll
at ``interval_s`` and never sleep past the condition holding, so a fast machine pays nothing for a slow
one's timeout.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Optional


async def eventually(
    condition: Callable[[], bool], timeout: float, interval_s: float = 0.02, *, what: Optional[str] = None
) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass: then False, or, when ``what``
    names the awaited state, an AssertionError saying so."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            if what is not None:
                raise AssertionError(f"not within {timeout:g} s: {what}")
            return False
        await asyncio.sleep(interval_s)  # polling: the condition has no event to await
    return True


def wait_until(condition: Callable[[], bool], timeout: float, interval_s: float = 0.05) -> bool:
    """:func:`eventually` for code outside an event loop (child processes, threads)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)  # polling: the condition has no event to await
    return True
