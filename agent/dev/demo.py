"""``hume-edge demo``: the whole pipeline on one machine, with nothing to configure.

A private mosquitto on a free loopback port, the local emulator, and the agent on its embedded defaults
(synthetic face camera, synthetic espeak-ng voice) — then a subscriber on the real broker prints top
emotions as they arrive. Everything lives in a temporary directory that is removed on exit; Ctrl-C (or
``--seconds``) stops every part and leaves no process behind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import config as config_mod
from agent.aio import Timers
from agent.dev.localbroker import LocalBroker
from agent.service import run_agent
from hume_emulator.emulator import Emulator, EmulatorSettings

_LOGGER = logging.getLogger(__name__)

STOPPED_WAIT_S = 2.0
"""How long the view waits for the agent's final "stopped" status after the agent returned."""
DEMO_KEY = "demo-key"
DEMO_DEVICE = "demo-kiosk"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=None, metavar="N", help="stop after N seconds (exit 0)")
    p.add_argument("--seed", type=int, default=7, help="emulator seed: same seed, same predictions")
    p.add_argument(
        "--api",
        choices=("v1", "v0"),
        default="v1",
        help="Hume API version the agent speaks to the emulator (default: %(default)s)",
    )


def demo_config(workdir: Path, mqtt_port: int, emulator: Emulator, api: str = "v1") -> config_mod.Config:
    """The embedded defaults (the kiosk's config) with the demo's changes: the private broker, the
    emulator on loopback, and synthetic sources (a scripted face, an espeak-ng voice)."""
    hume: Dict[str, Any] = {"backend": api, "api_key": DEMO_KEY}
    if api == "v1":
        # v1 sessions are billed 10 s at least; the default wait before opening one is shortened here.
        hume["v1"] = {"url": emulator.base_url, "min_session_s": 1.0}
    else:
        hume["v0"] = {"url": emulator.url}
    return config_mod.from_dict(
        {
            "device_id": DEMO_DEVICE,
            "hume": hume,
            "camera": {"source": "synthetic"},
            "microphone": {"source": "speech"},
            "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
            "outbox": {"path": str(workdir / "outbox.sqlite")},
            "summary": {"window_s": 3.0},
            "session": {"debounce_s": 0.5},
        },
        source="demo defaults",
        environ={},
    )


def top_emotions(payload: Any) -> List[Tuple[str, float]]:
    """The first list of ``{"name", "score"}`` items in a summary payload, whatever its nesting."""
    if isinstance(payload, list):
        if payload and all(isinstance(i, dict) and {"name", "score"} <= set(i) for i in payload):
            return [(str(i["name"]), float(i["score"])) for i in payload]
        for item in payload:
            found = top_emotions(item)
            if found:
                return found
    elif isinstance(payload, dict):
        for value in payload.values():
            found = top_emotions(value)
            if found:
                return found
    return []


class LiveView:
    """Prints one compact line per message that reaches the broker."""

    def __init__(self, out: TextIO, prefix: str) -> None:
        self.out = out
        self.prefix = prefix
        self.started = time.monotonic()
        self.summaries = 0
        self.first_after_s: Optional[float] = None
        self.stopped = threading.Event()
        """Set when the agent's retained ``status`` says ``stopped`` (paho's thread sets it)."""

    def on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic[len(self.prefix) :]
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            payload = msg.payload.decode("utf-8", "replace")
        line = self.format(topic, payload)
        if line:
            self.out.write(f"{time.strftime('%H:%M:%S')}  {line}\n")
            self.out.flush()

    def format(self, topic: str, payload: Any) -> Optional[str]:
        if topic.startswith("summary/"):
            top = top_emotions(payload)
            if not top:
                return None
            self.summaries += 1
            if self.first_after_s is None:
                self.first_after_s = time.monotonic() - self.started
            session = str(payload.get("session", ""))[:8] if isinstance(payload, dict) else ""
            emotions = "  ".join(f"{name} {score:.2f}" for name, score in top)
            return f"{topic[8:]:<9} visit {session}:  {emotions}"
        if topic == "session" and isinstance(payload, dict):
            session = str(payload.get("session", ""))[:8]
            return f"{'session':<9} {payload.get('event')} {session} ({payload.get('reason')})"
        if topic == "status":
            if payload == "stopped":
                self.stopped.set()
            return f"{'status':<9} {payload}"
        return None


async def _run(args: argparse.Namespace, workdir: Path) -> int:
    broker = LocalBroker(workdir / "broker")
    broker.start()
    emulator = Emulator(EmulatorSettings(api_keys=(DEMO_KEY,), seed=args.seed))
    if args.api == "v1":
        emulator.serve_v1_too()
    try:
        async with emulator as emu:
            cfg = demo_config(workdir, broker.port, emu, args.api)
            prefix = f"{cfg.mqtt.topic_prefix}/{DEMO_DEVICE}/"
            view = LiveView(sys.stdout, prefix)
            sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hume-edge-demo-view")
            sub.on_message = view.on_message
            sub.connect(broker.host, broker.port)
            sub.subscribe(prefix + "#", qos=1)
            sub.loop_start()
            print(
                f"demo: broker mqtt://{broker.host}:{broker.port}, emulator {emu.base_url} (API {args.api}); "
                f"watching {prefix}#  (Ctrl-C stops)",
                flush=True,
            )
            stop = asyncio.Event()
            timers = Timers()
            if args.seconds is not None:
                timers.call_later(args.seconds, stop.set)
            try:
                code = await run_agent(cfg, stop)
                # The agent published "stopped" before it returned; let the view print it before it goes.
                await asyncio.get_running_loop().run_in_executor(None, view.stopped.wait, STOPPED_WAIT_S)
            finally:
                timers.cancel()
                sub.loop_stop()
                sub.disconnect()
            if view.first_after_s is not None:
                print(f"demo: {view.summaries} summaries; the first arrived after {view.first_after_s:.1f} s")
            else:
                print("demo: no summaries arrived (see the log lines above)", file=sys.stderr)
                code = code or 1
            return code
    finally:
        broker.stop()


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point of ``hume-edge demo``."""
    for noisy in ("aiohttp.access", "hume_emulator.emulator"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="hume-edge-demo-") as tmp:
        workdir = Path(tmp)
        os.environ["RUNTIME_DIRECTORY"] = str(workdir)
        try:
            return asyncio.run(_run(args, workdir))
        except KeyboardInterrupt:  # Ctrl-C before the agent installed its own handler
            return 0
