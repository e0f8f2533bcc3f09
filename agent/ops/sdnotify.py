"""systemd's notify protocol (sd_notify(3)): readiness, watchdog pings, status text, stopping.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named by ``$NOTIFY_SOCKET``;
it has been stable for a decade, so we speak it ourselves rather than depend on an unmaintained package.
Outside systemd (no ``$NOTIFY_SOCKET``) every call is a cheap no-op, so the service can call the
notifier unconditionally. A send never raises: losing a notification must not take the agent down, and
systemd's own timeouts (start, watchdog) are what catch a notifier that stopped working.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Mapping, Optional

_LOGGER = logging.getLogger(__name__)


def _address(value: str) -> Optional[str]:
    """The socket address for ``$NOTIFY_SOCKET``; ``@name`` is Linux's abstract namespace (leading NUL)."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # e.g. systemd 254's "vsock:CID:PORT", which a kiosk never gets


def _watchdog_interval(environ: Mapping[str, str]) -> Optional[float]:
    """Half of ``WATCHDOG_USEC`` (sd_watchdog_enabled(3)'s advice), if the watchdog is meant for us."""
    pid = environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # set for our parent, inherited by accident
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class Notifier:
    """Talks to systemd (or whatever listens on ``$NOTIFY_SOCKET``); a no-op when there is nobody."""

    def __init__(self, notify_socket: str = "", watchdog_interval_s: Optional[float] = None) -> None:
        self._address = _address(notify_socket) if notify_socket else None
        if notify_socket and self._address is None:
            _LOGGER.warning(
                "NOTIFY_SOCKET=%r is not a unix socket path: notifications are off", notify_socket
            )
        self._sock: Optional[socket.socket] = None
        self._failing = False
        self.watchdog_interval_s = watchdog_interval_s if self._address else None
        """Seconds between ``watchdog()`` calls systemd expects, or None when no watchdog is armed."""

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> Notifier:
        """The notifier systemd set up for this process (``NOTIFY_SOCKET``, ``WATCHDOG_USEC/PID``)."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET", ""), _watchdog_interval(env))

    @property
    def enabled(self) -> bool:
        """Whether notifications go anywhere."""
        return self._address is not None

    def ready(self) -> None:
        """The agent is up (links connected or retrying): systemd ends the start job."""
        self.send("READY=1")

    def status(self, text: str) -> None:
        """One line shown by ``systemctl status`` (newlines would end the field, so they become spaces)."""
        self.send("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> None:
        """Proof of life; must come from the event loop itself so a stuck loop stops sending it."""
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        """Shutdown has begun: systemd shows "deactivating" instead of a hung service."""
        self.send("STOPPING=1")

    def send(self, message: str) -> None:
        """Send one datagram of ``KEY=VALUE`` lines; failures are logged once, never raised."""
        if self._address is None:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never block the event loop on a full receive queue: drop the message instead.
                self._sock.setblocking(False)
            self._sock.sendto(message.encode("utf-8", "replace"), self._address)
        except OSError as exc:
            if not self._failing:
                _LOGGER.warning("cannot notify systemd (%s); will keep trying quietly", exc)
                self._failing = True
            return
        if self._failing:
            _LOGGER.info("notifying systemd works again")
            self._failing = False

    def close(self) -> None:
        """Release the socket (it is reopened if the notifier is used again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
