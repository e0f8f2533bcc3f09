"""Rate-limited log lines, for failures an outsider can cause at will.

A refused command, a malformed request to the page, a disk that keeps failing: each may recur many times a
second. :class:`LogThrottle` lets each kind through once per interval and says, the next time, how many
were held back. A leaf (it needs only :mod:`logging`), so every layer can use it.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Dict, Tuple


class LogThrottle:
    """Say a recurring problem once per key every ``every_s``; the next line says how many were not said.

    For failures an outsider can cause at will (refused commands, a page flooded, a disk that keeps
    failing): the journal gets one line per kind of problem per ``every_s`` (600 s: 144 lines a day at
    most per kind), whatever the rate. At most ``max_keys`` kinds are remembered (memory bounded whatever
    the keys); past it the oldest is forgotten.
    """

    def __init__(
        self,
        logger: logging.Logger,
        every_s: float = 600.0,
        max_keys: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every_s = every_s
        self.max_keys = max_keys
        self._clock = clock
        self._said: Dict[str, Tuple[float, int]] = {}
        """key -> (when last said, how many since were not said)."""

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` at ``level`` unless ``key`` was said within ``every_s``; True if it was said."""
        now = self._clock()
        said = self._said.get(key)
        if said is not None and now - said[0] < self.every_s:
            self._said[key] = (said[0], said[1] + 1)
            return False
        if said is None and len(self._said) >= self.max_keys:
            del self._said[next(iter(self._said))]
        self._said.pop(key, None)
        self._said[key] = (now, 0)
        if said is not None and said[1]:
            msg += " (%d more like this since, not logged)"
            args = (*args, said[1])
        self.logger.log(level, msg, *args)
        return True

    def clear(self, key: str) -> None:
        """The problem is over: the next one of ``key`` is said at once."""
        self._said.pop(key, None)

    def reset(self) -> None:
        """Every problem is over (a link came back): the next one of any key is said at once."""
        self._said.clear()
