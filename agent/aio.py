"""Small asyncio helpers that stay correct on Python 3.9-3.11."""

from __future__ import annotations

import asyncio
from typing import Optional


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
