"""``hume-edge``: the one command operators, fleet scripts and systemd run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from agent.errors import EX_CONFIG, ConfigError

QUIET_COMMANDS = ("check-config", "status", "broker-acl")
"""Commands that only print: they skip logging's set-up (part of their cold start, benchmarked)."""

EPILOG = """\
commands:
  run            run the agent (what the systemd unit starts)
  check-config   validate a config file and print the effective config (secrets masked)
  emulator       a local, protocol-faithful stand-in for Hume's streaming API (no credits spent)
  demo           everything on this machine: private broker, emulator, agent, live view
  status         what the running agent is doing (links, session, queue depth, last error)
  fleet          every kiosk on the broker, one line each: state, version, config, queue, last error;
                 or served to Prometheus (--metrics-listen HOST:PORT)
  broker-acl     a mosquitto ACL granting each kiosk, kiosk UI, dashboard and fleet account its own topics

examples:
  hume-edge check-config /etc/hume-edge/config.toml
  hume-edge run --config /etc/hume-edge/config.toml
  hume-edge emulator --port 8765 --api-key test-key
  hume-edge demo --seconds 60
  hume-edge fleet --config /etc/hume-edge/config.toml --json
  hume-edge broker-acl kiosk-lobby kiosk-hall > /etc/mosquitto/hume-edge.acl
exit codes: 0 ok, 1 failure, 69 Hume refused the API key at start-up, 78 config error
"""


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for (argparse's own action wants the string up front)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Union[str, Sequence[Any], None],
        option_string: Optional[str] = None,
    ) -> None:
        from agent import version

        print(f"{parser.prog} {version.installed()}")
        parser.exit()


def _add_config_arg(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--config",
        "-c",
        type=Path,
        required=required,
        metavar="PATH",
        help="TOML config file (see config/hume-edge.example.toml); default: embedded defaults",
    )


def _cmd_check_config(args: argparse.Namespace) -> int:
    from agent import config as config_mod

    try:
        cfg = config_mod.load_for_run(args.path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_CONFIG
    sys.stdout.write(f"# {args.path}: OK\n" + config_mod.render(cfg))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from agent import config as config_mod
    from agent.service import run_agent

    try:
        cfg = config_mod.load(args.config)
    except ConfigError as exc:
        logging.getLogger(__name__).error("%s", exc)
        return EX_CONFIG
    # run_agent refuses what check-config refuses (config.check_runnable), with the same message.
    source = "defaults" if args.config is None else str(args.config)
    return asyncio.run(run_agent(cfg, source=source))


def _cmd_emulator(args: argparse.Namespace) -> int:
    from hume_emulator import emulator

    return emulator.run_from_args(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from agent.dev import demo

    return demo.run_from_args(args)


def _cmd_status(args: argparse.Namespace) -> int:
    from agent.ops import status

    return status.show(args)


def _cmd_fleet(args: argparse.Namespace) -> int:
    from agent.ops import fleet

    if getattr(args, "metrics_listen", None) is None:
        return fleet.run_from_args(args)
    from agent.ops import fleet_metrics  # prometheus_client only with --metrics-listen

    return fleet.run_from_args(args, serve=fleet_metrics.serve)


def _cmd_probe(args: argparse.Namespace) -> int:
    from agent.hume import probe

    return probe.run_from_args(args)


def _cmd_broker_acl(args: argparse.Namespace) -> int:
    from agent.mqtt import broker_acl

    return broker_acl.run_from_args(args)


def wanted(command: Optional[str], name: str) -> bool:
    """Whether ``build_parser(command)`` defines sub-command ``name``'s own options."""
    return command is None or command == name


def requested_command(argv: List[str]) -> Optional[str]:
    """The sub-command ``argv`` names (the first word that is not a global option), if any."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--log-level":
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The whole command line; each sub-command's --help has an example.

    With ``command`` set, only that sub-command gets its options: the others' modules (the emulator
    with aiohttp.web, the demo) are then not imported. ``hume-edge --version`` took 0.36 CPU-s here,
    20x a bare interpreter, when every call imported them, paid again by the unit's ExecStartPre.
    """
    parser = argparse.ArgumentParser(
        prog="hume-edge",
        description="Kiosk emotion sensor: camera + microphone -> Hume Expression Measurement -> "
        "top emotions over MQTT, with a durable offline buffer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="log verbosity (overrides log_level in the config file)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: Dict[str, Callable[[argparse.Namespace], int]] = {}

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], help_: str, example: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        handlers[name] = handler
        return p

    p = add(
        "run",
        _cmd_run,
        "Run the agent until SIGTERM / SIGINT.",
        "hume-edge run --config /etc/hume-edge/config.toml",
    )
    _add_config_arg(p)

    p = add(
        "check-config",
        _cmd_check_config,
        "Validate a config file; print the effective config with secrets masked. Exit 0, or 78 listing "
        "every problem.",
        "hume-edge check-config /etc/hume-edge/config.toml",
    )
    p.add_argument("path", type=Path, metavar="PATH", help="TOML config file to check")

    p = add(
        "emulator",
        _cmd_emulator,
        "Serve a local, protocol-faithful emulator of Hume's streaming APIs: v1 realtime "
        "(ws://HOST:PORT/v1/expression/{audio,video}/realtime) and legacy v0 (ws://HOST:PORT/v0/stream/models).",
        "hume-edge emulator --host 127.0.0.1 --port 8765 --api-key test-key --seed 7",
    )
    if wanted(command, "emulator"):
        from hume_emulator import emulator

        emulator.add_arguments(p)

    p = add(
        "demo",
        _cmd_demo,
        "Run everything locally: a private mosquitto, the emulator and the agent on synthetic sources, "
        "printing top emotions as they reach the broker.",
        "hume-edge demo --seconds 60",
    )
    if wanted(command, "demo"):
        from agent.dev import demo

        demo.add_arguments(p)

    p = add(
        "status",
        _cmd_status,
        "Show what the running agent is doing, from its status snapshot (never touches the outbox).",
        "hume-edge status",
    )
    if wanted(command, "status"):
        from agent.ops import status

        status.add_arguments(p)

    p = add(
        "fleet",
        _cmd_fleet,
        "Show every kiosk that publishes to the broker, one line each: online / stopped / offline, "
        "version, config fingerprint (flagged where it differs from most kiosks), session, queue depth "
        "and drops, last seen, last error. Reads the agents' retained status and health topics; never "
        "connects to a kiosk. With --metrics-listen it serves them to Prometheus instead "
        "(docs/monitoring.md). Exit 0, 1 if the broker cannot be read, 78 bad config.",
        "hume-edge fleet --config /etc/hume-edge/config.toml --watch\n"
        "  hume-edge fleet --config /etc/hume-edge/config.toml --metrics-listen 0.0.0.0:9851",
    )
    if wanted(command, "fleet"):
        from agent.ops import fleet

        fleet.add_arguments(p)

    p = add(
        "probe",
        _cmd_probe,
        "Check the real Hume link before a fleet goes live (billed: refuses without --yes and prints the "
        "cost ceiling first): opens the configured backend's sessions with the kiosk's key, sends a few "
        "seconds of the face and speech this package ships, and prints latency, labels, message types and "
        "fields; anything our client does not know (type, field, close code, header) is listed as a "
        "protocol difference. Exit 0 ok, 3 protocol differences, 1 link failed, 69 key refused, 78 bad "
        "config, 2 not run.",
        "hume-edge probe --config /etc/hume-edge/config.toml --yes --transcript probe.json",
    )
    if wanted(command, "probe"):
        from agent.hume import probe

        probe.add_arguments(p)

    p = add(
        "broker-acl",
        _cmd_broker_acl,
        "Print a mosquitto ACL (acl_file) for these kiosks: each kiosk's agent, its UI account "
        "(KIOSK-ui), 'dashboard' and 'fleet' get their own topics, by name, and no other account gets "
        "anything. Names must match ^[A-Za-z0-9._-]+$; anything else is refused (exit 78).",
        "hume-edge broker-acl kiosk-lobby kiosk-hall > /etc/mosquitto/hume-edge.acl",
    )
    if wanted(command, "broker-acl"):
        from agent.mqtt import broker_acl

        broker_acl.add_arguments(p)
    parser.set_defaults(_handlers=handlers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``hume-edge`` console script."""
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(requested_command(words) or "")
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in QUIET_COMMANDS:  # they print; nothing to log, nothing to set up
        handler0: Callable[[argparse.Namespace], int] = args._handlers[args.command]
        return handler0(args)
    from agent.ops import logs

    level = args.log_level
    if level is None and args.command == "run":
        level = _peek_log_level(getattr(args, "config", None))
    if level is None and args.command == "demo":
        level = "warning"  # the live view is the demo's output; say only what went wrong
    logs.configure(level or "info")
    handler: Callable[[argparse.Namespace], int] = args._handlers[args.command]
    return handler(args)


def _peek_log_level(path: Optional[Path]) -> Optional[str]:
    """The config's log_level, so logging is set up before the config errors are reported."""
    try:
        from agent import config as config_mod

        return config_mod.load(path).log_level
    except ConfigError:
        return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
