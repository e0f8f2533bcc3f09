"""What camera and microphone share: a device is lost, told once, retried with backoff, told once it is back.

An unattended kiosk loses its USB camera or microphone to a loose cable or a brown-out; the agent must keep
running, say so once in the journal (not once per retry), and pick the device up again by itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Dict, Optional

from agent.backoff import Backoff

CLOSE_TIMEOUT_S = 5.0
"""How long a stopping agent waits for a device's thread (``close()``): one read (at most a frame period, or
PyAudio's period) and a close; a camera still opening can take longer, and then the process exits without
it."""


async def join_thread(thread: threading.Thread, timeout_s: float) -> bool:
    """Wait (off the event loop) until ``thread`` ends; False if it is still running after ``timeout_s``."""
    await asyncio.to_thread(thread.join, timeout_s)
    return not thread.is_alive()


class Recovery:
    """Loss and return of one device: logging once per outage, retry delays, and counters for status."""

    def __init__(self, log: logging.Logger, what: str, initial_s: float = 0.5, max_s: float = 10.0) -> None:
        self._log = log
        self.what = what
        self._backoff = Backoff(initial_s, max_s)
        self.failures = 0
        """Failed opens and reads since start."""
        self.outages = 0
        """Times the device went from working (or never opened) to failing."""
        self.last_error: Optional[str] = None

    @property
    def lost(self) -> bool:
        """Whether the device is failing right now."""
        return self.last_error is not None

    def failed(self, exc: BaseException) -> float:
        """Count a failure; log it if it starts an outage; return the delay before the next attempt."""
        self.failures += 1
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not self.lost:
            self.outages += 1
            self._log.warning("%s unavailable (%s); retrying until it is back", self.what, text)
        else:
            self._log.debug("%s still unavailable (%s)", self.what, text)
        self.last_error = text
        return self._backoff.next_delay()

    def ok(self) -> None:
        """The device delivered; log its return if it had been lost."""
        if self.lost:
            self._log.info("%s is back after %d failed attempt(s)", self.what, self._backoff.attempts)
        self.last_error = None
        self._backoff.reset()

    def status(self) -> Dict[str, Any]:
        """Counters for the agent's status file."""
        return {
            "lost": self.lost,
            "failures": self.failures,
            "outages": self.outages,
            "last_error": self.last_error,
        }
