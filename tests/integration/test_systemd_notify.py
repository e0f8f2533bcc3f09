"""An agent process under a fake systemd: the test owns ``$NOTIFY_SOCKET`` and sees the protocol.

READY=1 once running, WATCHDOG=1 periodically, STATUS= lines, and STOPPING=1 on SIGTERM, after which
the process exits 0. The real agent (``hume-edge run``) runs against the emulator and a private
mosquitto; a tiny stand-in built from the same plumbing (Notifier, logs, status) pins down the
protocol on its own, so a regression is located even while the service is changing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

from agent.ops import status
from tests.support.notify import TIMEOUT_S, NotifyListener, kill, notify_env, start_process, stop, tail

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def listener() -> Iterator[NotifyListener]:
    lst = NotifyListener()
    yield lst
    lst.close()


def _is_status(m: str) -> bool:
    return m.startswith("STATUS=")


async def _sees_the_lifecycle(listener: NotifyListener, proc: asyncio.subprocess.Process, log: Path) -> None:
    try:
        await listener.until(lambda m: "READY=1" in m)
        await listener.until(
            lambda m: listener.after("READY=1").count("WATCHDOG=1") >= 3 and any(_is_status(x) for x in m)
        )
    except AssertionError as exc:
        await kill(proc)
        raise AssertionError(f"{exc} (exit {proc.returncode})\nlog:\n{tail(log)}") from None


# --------------------------------------------------------------------------------------------------
# The stand-in: the service plumbing alone, wired as the service does it.

STAND_IN = textwrap.dedent(
    """
    import asyncio, signal
    from agent.ops import logs, status
    from agent.ops.sdnotify import Notifier

    async def main() -> int:
        logs.configure("info")
        notifier = Notifier.from_env()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def snapshot():
            snap = {"links": {"hume": {"state": "connected"}, "mqtt": {"state": "connected"}},
                    "queue_depth": 0, "last_error": logs.last_problem()}
            notifier.status(status.summary_line(snap))
            return snap

        async def watchdog():  # as the agent's tick loop does
            while notifier.watchdog_interval_s is not None:
                notifier.watchdog()
                await asyncio.sleep(notifier.watchdog_interval_s)  # polling

        tasks = [asyncio.ensure_future(watchdog()),
                 asyncio.ensure_future(status.run(status.default_path(), snapshot, interval_s=0.2))]
        notifier.ready()
        await stop.wait()
        notifier.stopping()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return 0

    raise SystemExit(asyncio.run(main()))
    """
)


async def test_stand_in_speaks_the_protocol_and_stops_on_sigterm(
    listener: NotifyListener, tmp_path: Path
) -> None:
    runtime, log = tmp_path / "run", tmp_path / "stand-in.log"
    env = notify_env(listener, runtime)
    env["PYTHONPATH"] = str(ROOT)
    proc = await start_process([sys.executable, "-c", STAND_IN], env, log)
    await _sees_the_lifecycle(listener, proc, log)
    assert "STATUS=hume connected, mqtt connected, idle, queue 0" in listener.messages
    snap = status.read(runtime / "status.json")
    assert snap is not None
    assert snap["pid"] == proc.pid
    assert await stop(proc, listener, log) == 0
    final = status.read(runtime / "status.json")
    assert final is not None
    assert final["state"] == "stopped"


# --------------------------------------------------------------------------------------------------
# The real agent.


@pytest.mark.skipif(
    importlib.util.find_spec("agent.service") is None,
    reason="agent/service.py (hume-edge run, the lead's wiring) does not exist yet",
)
async def test_agent_run_notifies_systemd_and_stops_cleanly(
    listener: NotifyListener, tmp_path: Path, emulator: Any, mosquitto: Any
) -> None:
    runtime, log, outbox = tmp_path / "run", tmp_path / "agent.log", tmp_path / "outbox.sqlite"
    config = tmp_path / "config.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            device_id = "notify-test"
            [hume]
            backend = "v0"
            api_key = "test-key"
            [hume.v0]
            url = "{emulator.url}"
            [camera]
            source = "synthetic"
            [microphone]
            source = "speech"
            [mqtt]
            host = "127.0.0.1"
            port = {mosquitto.port}
            [outbox]
            path = "{outbox}"
            """
        )
    )
    program = Path(sys.executable).parent / "hume-edge"
    proc = await start_process(
        [str(program), "run", "--config", str(config)], notify_env(listener, runtime), log
    )
    await _sees_the_lifecycle(listener, proc, log)
    assert any(m.startswith("STATUS=") and "mqtt" in m for m in listener.messages)

    look = await asyncio.create_subprocess_exec(
        str(program), "status", "--path", str(runtime / "status.json"), stdout=subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(look.communicate(), TIMEOUT_S)
    assert look.returncode == 0, out.decode()
    assert "link mqtt:" in out.decode()

    assert await stop(proc, listener, log) == 0, tail(log)
    with sqlite3.connect(outbox) as db:  # the agent is gone: the test may look at its outbox now
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
