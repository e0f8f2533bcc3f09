"""The notify protocol against a datagram socket the test owns (abstract namespace and a path)."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import pytest

from agent.ops.sdnotify import Notifier


@pytest.fixture
def abstract_listener() -> Iterator[Tuple[socket.socket, str]]:
    """A datagram socket in Linux's abstract namespace, named the way systemd writes it ("@...")."""
    name = f"hume-edge-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    yield sock, "@" + name
    sock.close()


def test_unset_socket_is_a_silent_no_op() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.watchdog_interval_s is None
    n.ready()
    n.status("x")
    n.watchdog()
    n.stopping()


def test_messages_reach_an_abstract_socket(abstract_listener: Tuple[socket.socket, str]) -> None:
    sock, name = abstract_listener
    n = Notifier.from_env({"NOTIFY_SOCKET": name})
    assert n.enabled
    n.ready()
    n.status("hume connected\nmqtt down")
    n.watchdog()
    n.stopping()
    assert [sock.recv(4096).decode() for _ in range(4)] == [
        "READY=1",
        "STATUS=hume connected mqtt down",
        "WATCHDOG=1",
        "STOPPING=1",
    ]
    n.close()


def test_messages_reach_a_socket_path() -> None:
    # pytest's tmp_path can exceed sun_path's 108 bytes; a short private directory cannot.
    with tempfile.TemporaryDirectory(prefix="sdn") as d:
        path = str(Path(d) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(2.0)
        try:
            Notifier.from_env({"NOTIFY_SOCKET": path}).ready()
            assert sock.recv(4096) == b"READY=1"
        finally:
            sock.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_for_us(env: Dict[str, str], expected: Optional[float]) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": "@nobody-listens", **env})
    assert n.watchdog_interval_s == expected


def test_watchdog_without_notify_socket_is_off() -> None:
    assert Notifier.from_env({"WATCHDOG_USEC": "1000000"}).watchdog_interval_s is None


def test_send_failure_never_raises_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": f"@hume-edge-nobody-{uuid.uuid4().hex}"})
    with caplog.at_level(logging.WARNING, logger="agent.ops.sdnotify"):
        for _ in range(5):
            n.watchdog()
    assert len([r for r in caplog.records if "cannot notify" in r.getMessage()]) == 1


def test_relative_socket_name_is_refused_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="agent.ops.sdnotify"):
        n = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not n.enabled
    assert "vsock:2:1234" in caplog.text
