"""``hume-edge broker-acl``: a mosquitto ACL that grants each account its own topics, and nothing by pattern.

Why per account: a ``pattern`` line applies to *every* login. The old shipped ACL's ``pattern write
hume-edge/%u/#`` let ``dashboard``, ``fleet`` and ``kiosk-lobby-ui`` each publish a whole fake kiosk under
their own names (status, health, summaries, notice, a Home Assistant device; in ``hume-edge fleet`` three
such fakes outvoted the real kiosk), and an account named ``kiosk-lobby/cmd`` matched
``hume-edge/kiosk-lobby/cmd/#`` and paused kiosk-lobby: a ``/`` (or ``+``, ``#``) in a user or certificate
name escapes a pattern. Here every grant names its account and its topics literally, one block per account:

* ``<kiosk>``: the agent (``mqtt.username = device_id``): writes its own tree and its Home Assistant
  discovery topic, reads its own ``cmd/#`` (so only it reads ``cmd/text``) and Home Assistant's birth.
* ``<kiosk>-ui``: that kiosk's own UI: writes its ``cmd/session``, ``cmd/text``, ``cmd/privacy``,
  ``cmd/discovery``; reads its ``cmd/result``, ``status``, ``session``, ``notice``.
* ``dashboard``: reads what dashboards show (never ``cmd/text``); writes only Home Assistant's birth.
* ``fleet``: reads every kiosk's ``status`` and ``health`` (``hume-edge fleet``).

An account the file does not name can do nothing: mosquitto denies what no line grants. Account names (and
so device ids and certificate common names used as user names) must match :data:`ACCOUNT_NAME`; the
generator refuses anything else, and names that would collide (a kiosk called ``dashboard``, or ``x-ui``
next to kiosk ``x``). The shipped ``config/mosquitto/hume-edge.acl`` is this command's output for the two
example kiosks, and a test keeps it so.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import List, Sequence, TextIO

from agent.errors import EX_CONFIG
from agent.mqtt.discovery import config_topic

ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
"""What a kiosk id, and so every account name in the ACL, may be: no ``/``, ``+``, ``#``, space or control
character, each of which would change what an ACL line or a topic means."""
_PREFIX = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
DASHBOARD, FLEET, UI_SUFFIX = "dashboard", "fleet", "-ui"
DEFAULT_PREFIX, DEFAULT_DISCOVERY_PREFIX = "hume-edge", "homeassistant"
UI_WRITES = ("cmd/session", "cmd/text", "cmd/privacy", "cmd/discovery")
UI_READS = ("cmd/result", "status", "status/#", "session", "state/session", "notice")
DASHBOARD_READS = (
    "status",
    "status/#",
    "session",
    "notice",
    "summary/#",
    "state/#",
    "aggregate",
    "health",
    "cmd/result",
)

HEADER = """\
# mosquitto ACL for hume-edge (acl_file), made by `hume-edge broker-acl {args}`.
# Regenerate it when a kiosk is added or removed; do not add `pattern` lines: a pattern applies to every
# account, and a user name with '/' in it escapes one. Every grant below names its account; an account
# this file does not name can do nothing. Account names must match ^[A-Za-z0-9._-]+$ (docs/security.md).
# A denied publish is dropped by the broker (MQTT 5: PUBACK 0x87); a denied subscription never delivers."""


def problems(kiosks: Sequence[str], prefix: str, discovery_prefix: str) -> List[str]:
    """Everything wrong with the arguments, each naming the value and what is allowed; empty when fine."""
    found: List[str] = []
    if not kiosks:
        found.append("no kiosk named: give the device id of every kiosk, e.g. kiosk-lobby kiosk-hall")
    for kiosk in kiosks:
        if not ACCOUNT_NAME.match(kiosk):
            found.append(f"kiosk {kiosk!r}: an account name must match ^[A-Za-z0-9._-]+$ (no '/', '+', '#')")
    names = list(kiosks) + [k + UI_SUFFIX for k in kiosks] + [DASHBOARD, FLEET]
    clashes = sorted({n for n in names if names.count(n) > 1})
    found.extend(
        f"kiosk list: account {name!r} would be granted twice (a kiosk named like another's UI account, "
        f"'{DASHBOARD}' or '{FLEET}', or listed twice)"
        for name in clashes
    )
    for flag, value in (("--prefix", prefix), ("--discovery-prefix", discovery_prefix)):
        if not _PREFIX.match(value):
            found.append(f"{flag} {value!r}: topic levels of [A-Za-z0-9._-] separated by '/'")
    return found


def render(
    kiosks: Sequence[str], prefix: str = DEFAULT_PREFIX, discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX
) -> str:
    """The ACL text; call :func:`problems` first (ValueError here if it has any)."""
    bad = problems(kiosks, prefix, discovery_prefix)
    if bad:
        raise ValueError("; ".join(bad))
    args = " ".join(
        [
            *(
                f"{flag} {value}"
                for flag, value, default in (
                    ("--prefix", prefix, DEFAULT_PREFIX),
                    ("--discovery-prefix", discovery_prefix, DEFAULT_DISCOVERY_PREFIX),
                )
                if value != default
            ),
            *kiosks,
        ]
    )
    out = [HEADER.format(args=args)]
    for kiosk in kiosks:
        tree = f"{prefix}/{kiosk}"
        out += [
            f"\n# --- kiosk {kiosk}: its agent (mqtt.username = {kiosk}), then its own UI ---",
            f"user {kiosk}",
            f"topic write {tree}/#",
            f"topic read {tree}/cmd/#",
            f"topic write {config_topic(discovery_prefix, kiosk)}",
            f"topic read {discovery_prefix}/status",
            f"user {kiosk}{UI_SUFFIX}",
            *(f"topic write {tree}/{t}" for t in UI_WRITES),
            *(f"topic read {tree}/{t}" for t in UI_READS),
        ]
    out += [
        "\n# --- dashboards: read everything a dashboard shows, command nothing ---",
        f"user {DASHBOARD}",
        *(f"topic read {prefix}/+/{t}" for t in DASHBOARD_READS),
        f"topic read {discovery_prefix}/device/+/config",
        "# Home Assistant itself announces its birth, which makes every kiosk re-send its discovery.",
        f"topic write {discovery_prefix}/status",
        "\n# --- the fleet view (hume-edge fleet): status and health of every kiosk, nothing else ---",
        f"user {FLEET}",
        f"topic read {prefix}/+/status",
        f"topic read {prefix}/+/health",
    ]
    return "\n".join(out) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``hume-edge broker-acl`` options."""
    parser.add_argument(
        "kiosks", nargs="*", metavar="KIOSK", help="the device id of every kiosk (its agent's user name)"
    )
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help="the agents' mqtt.topic_prefix (default: %(default)s)"
    )
    parser.add_argument(
        "--discovery-prefix",
        default=DEFAULT_DISCOVERY_PREFIX,
        help="the agents' mqtt.discovery_prefix (default: %(default)s)",
    )


def run_from_args(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Print the ACL; exit 78 listing every problem (and print nothing) when an argument is refused."""
    bad = problems(args.kiosks, args.prefix, args.discovery_prefix)
    if bad:
        print("error: " + "\n  ".join(["hume-edge broker-acl refuses its arguments:", *bad]), file=sys.stderr)
        return EX_CONFIG
    out.write(render(args.kiosks, args.prefix, args.discovery_prefix))
    return 0
