"""Logging to stderr that reads well in a terminal and in the journal.

Under systemd, stderr is a stream into journald, which stamps each line itself and reads an ``<N>``
syslog priority prefix (sd-daemon(3)) from the start of every line; so there we write no timestamp and
prefix every line, tracebacks included, so that ``journalctl -p warning`` finds whole error reports.
Elsewhere a person reads the output, so it carries a timestamp and the level name.

A message repeated back to back (a link failing the same way every second) is written once, then
summarised as "repeated N times" when something else is logged or the burst outlasts
:data:`REPEAT_WINDOW_S`. The most recent warning or error is kept for ``hume-edge status``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Dict, Optional, TextIO, Tuple

LEVELS = ("debug", "info", "warning", "error")

REPEAT_WINDOW_S = 60.0
"""Identical messages within this long of the first one are counted instead of written."""

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
"""Python level -> syslog priority (sd-daemon.h: SD_DEBUG <7> ... SD_CRIT <2>)."""


def under_journald(stream: TextIO, environ: Optional[Dict[str, str]] = None) -> bool:
    """Whether ``stream`` is the journal connection systemd announced in ``$JOURNAL_STREAM`` (dev:inode).

    Comparing the device and inode (as systemd.exec(5) advises) keeps a terminal started from a
    service's environment readable; a stream that cannot be inspected trusts the variable alone.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return True
    return value == f"{st.st_dev}:{st.st_ino}"


LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}
"""Every character ``str.splitlines`` (and some log viewers) treats as a line break, except ``\\n``."""


def escape_line_breaks(text: str) -> str:
    """``text`` with every line break but ``\\n`` escaped (``\\u2028``): a record's lines are the ones the
    agent wrote. U+2028 in a command topic once forged separate journal entries (#31); outside strings are
    also clipped (:func:`agent.untrusted.clip`) where they are logged, this is the last line of defence."""
    return text.translate(LINE_BREAKS)


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``, with the priority prefix repeated on every line of a multi-line record."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Prefix each line, so journald files a traceback's lines at the record's priority."""
        prefix = f"<{_PRIORITY.get(record.levelno, 6)}>"
        return "\n".join(prefix + line for line in escape_line_breaks(super().format(record)).split("\n"))


class AgentHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stderr handler that collapses back-to-back repeats and remembers the last problem."""

    def __init__(self, stream: TextIO, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__(stream)
        self.window_s = window_s
        self._last: Optional[logging.LogRecord] = None
        self._last_key: Optional[Tuple[str, int, str]] = None
        self._first_at = 0.0
        self._repeats = 0
        self.last_problem: Optional[Dict[str, object]] = None
        """The latest warning or worse: ``{"at": unix time, "level": "error", "logger", "message"}``."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_line_breaks(super().format(record))

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record unless it repeats the previous one within the window (called under the lock)."""
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.last_problem = {
                "at": record.created,
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": message,
            }
        key = (record.name, record.levelno, message)
        if key == self._last_key and record.created - self._first_at < self.window_s:
            self._repeats += 1
            return
        self._flush_repeats()
        self._last, self._last_key, self._first_at = record, key, record.created
        super().emit(record)

    def _flush_repeats(self) -> None:
        if self._repeats and self._last is not None:
            summary = logging.makeLogRecord(
                {
                    "name": self._last.name,
                    "levelno": self._last.levelno,
                    "levelname": self._last.levelname,
                    "msg": "(previous message repeated %d times)",
                    "args": (self._repeats,),
                    "created": time.time(),
                }
            )
            super().emit(summary)
        self._repeats = 0

    def close(self) -> None:
        """Say how often the last message repeated before the handler goes away."""
        self.acquire()
        try:
            self._flush_repeats()
        finally:
            self.release()
        super().close()


_handler: Optional[AgentHandler] = None


def configure(level: str, stream: Optional[TextIO] = None) -> None:
    """Send the agent's logs to stderr (or ``stream``) at ``level``; calling it again replaces the setup."""
    global _handler  # noqa: PLW0603 - one process-wide handler, replaced as a whole
    name = level.lower()
    if name not in LEVELS:
        raise ValueError(f"log level {level!r}: must be one of {', '.join(LEVELS)}")
    out = sys.stderr if stream is None else stream
    handler = AgentHandler(out)
    if under_journald(out):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler.close()
    root.addHandler(handler)
    root.setLevel(name.upper())
    _handler = handler


def last_problem() -> Optional[Dict[str, object]]:
    """The latest warning or error logged since :func:`configure`, for the status snapshot."""
    return None if _handler is None else _handler.last_problem
