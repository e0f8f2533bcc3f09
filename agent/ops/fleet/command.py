"""``hume-edge fleet``: options, one report or ``--watch``, exit codes (0; 1 broker; 78 config)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, TextIO

from agent import config as config_mod
from agent.config import Config, MqttConfig
from agent.errors import EX_CONFIG, ConfigError
from agent.ops.fleet.broker import DEFAULT_WAIT_S, QUIET_S, FleetError, FleetSession, collect, settle
from agent.ops.fleet.fold import FleetFold, FleetReport
from agent.ops.fleet.table import render_table
from agent.ops.health_view import clean_text

EXIT_OK, EXIT_BROKER = 0, 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``hume-edge fleet`` options."""
    parser.add_argument(
        "--config",
        "-c",
        default=None,
        metavar="PATH",
        help="read the broker, TLS, credentials and topic prefix from this config's [mqtt] (the agents' "
        "own config works; its password may also come from $CREDENTIALS_DIRECTORY/mqtt_password)",
    )
    parser.add_argument("--host", help="broker host (overrides the config)")
    parser.add_argument("--port", type=int, help="broker port (overrides the config)")
    parser.add_argument("--prefix", help="topic prefix (overrides mqtt.topic_prefix)")
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="PATTERN",
        help="a device id or shell-style pattern of the kiosks you run (repeatable: --expect 'kiosk-*' "
        "--expect lobby); every other kiosk on the broker is marked *unexpected and has no vote in the "
        "config majority (any account that may publish under the prefix can pose as a kiosk)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document (a line per refresh)")
    parser.add_argument("--watch", action="store_true", help="keep the subscription and refresh until Ctrl-C")
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="keep the subscription and serve every kiosk's Prometheus metrics at http://HOST:PORT/metrics "
        "(a device label each; docs/monitoring.md); prints no table unless --watch is also given",
    )
    parser.add_argument(
        "--interval-s", type=float, default=2.0, metavar="S", help="refresh period with --watch (default 2)"
    )
    parser.add_argument(
        "--wait-s",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="S",
        help=f"longest time to collect retained messages (default {DEFAULT_WAIT_S:g}); collection ends "
        f"earlier, {QUIET_S:g} s after the broker's SUBACK once nothing more arrives",
    )


def broker_config(args: argparse.Namespace) -> MqttConfig:
    """The [mqtt] section of ``--config`` (or the defaults) with the command line's overrides."""
    cfg: Config = config_mod.load(Path(args.config) if args.config else None)
    mqtt_cfg = cfg.mqtt
    overrides: Dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.prefix:
        overrides["topic_prefix"] = args.prefix
    return dataclasses.replace(mqtt_cfg, **overrides)


def _emit(report: FleetReport, as_json: bool, out: TextIO, clear: bool, separate: bool = False) -> None:
    if as_json:
        out.write(json.dumps(report.to_json(), sort_keys=True) + "\n")
    else:
        if clear:
            out.write("\x1b[H\x1b[2J")
        elif separate:
            out.write("\n")
        out.write("\n".join(render_table(report, time.time())) + "\n")
    out.flush()


Serve = Callable[[MqttConfig, argparse.Namespace, TextIO], int]
"""``--metrics-listen``'s server (``agent.ops.fleet_metrics.serve``), handed in by the command line."""


def run_from_args(
    args: argparse.Namespace, out: Optional[TextIO] = None, serve: Optional[Serve] = None
) -> int:
    """``hume-edge fleet``: exit 0 with the report, 1 if the broker could not be read, 78 bad config."""
    stream = sys.stdout if out is None else out
    problems = [
        f"{name} = {value:g}: must be > 0"
        for name, value in (("--wait-s", args.wait_s), ("--interval-s", args.interval_s))
        if not value > 0
    ]
    if args.port is not None and not 1 <= args.port <= 65535:
        problems.append(f"--port = {args.port}: must be between 1 and 65535")
    problems += [
        f"--expect {p!r}: must be a device id or a pattern such as 'kiosk-*', with no '/' or control "
        "characters"
        for p in args.expect
        if not p or "/" in p or clean_text(p) != p
    ]
    listen = getattr(args, "metrics_listen", None)
    if listen is not None:
        try:
            config_mod.split_listen(listen)
        except ValueError as exc:
            problems.append(f"--metrics-listen {exc}")
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return EX_CONFIG
    try:
        cfg = broker_config(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_CONFIG
    if listen is not None and serve is not None:
        return serve(cfg, args, stream)
    if not args.watch:
        try:
            report = collect(cfg, args.wait_s, expect=args.expect)
        except FleetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BROKER
        _emit(report, args.json, stream, clear=False)
        return EXIT_OK
    return watch(cfg, args.wait_s, args.interval_s, args.json, stream, expect=args.expect)


def watch(
    cfg: MqttConfig,
    wait_s: float,
    interval_s: float,
    as_json: bool,
    out: TextIO,
    *,
    expect: Sequence[str] = (),
    fold: Optional[FleetFold] = None,
    emit: bool = True,
) -> int:
    """Collect, print, then keep folding live messages and print again every ``interval_s`` until Ctrl-C.

    A lost connection is said once on stderr and retried every interval; the last report stays on screen.
    ``fold`` replaces the plain fold (the metrics exporter's keeps samples too); ``emit=False`` prints no
    report.
    """
    session = FleetSession(cfg, fold or FleetFold(cfg.topic_prefix, expect=expect), time.monotonic)
    clear = not as_json and out.isatty()
    try:
        session.connect()
        settle(session, wait_s, QUIET_S)
        if emit:
            _emit(session.fold.report(), as_json, out, clear)
        said_lost = False
        while True:
            next_at = session.clock() + interval_s
            while session.clock() < next_at:
                if session.connected:
                    session.pump(min(0.1, max(0.0, next_at - session.clock())))
                else:
                    if not said_lost:
                        print(f"fleet: lost the connection to {session.where}; reconnecting", file=sys.stderr)
                        said_lost = True
                    try:
                        session.client.reconnect()
                        session.pump(0.1)
                    except (OSError, ValueError):
                        time.sleep(min(interval_s, max(0.0, next_at - session.clock())))
            if session.connected:
                said_lost = False
            if emit:
                _emit(session.fold.report(), as_json, out, clear, separate=True)
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BROKER
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        session.close()
