"""``hume-edge fleet``: every kiosk on a broker, one line each, from what the agents already publish.

Each agent keeps two retained topics up to date: ``{prefix}/{device}/status`` (``online`` / ``stopped``, or
the broker's ``offline`` last will) and ``{prefix}/{device}/health`` (links, outbox, session, last error and
the agent's identity: version, config fingerprint, ...). A subscription to ``{prefix}/+/status`` and
``{prefix}/+/health`` therefore gets the latest state of the whole fleet straight from the broker, in one
round trip, without reaching any kiosk: the broker is the inventory.

Two halves: :class:`FleetFold` is pure (bytes in, typed :class:`FleetReport` out) and is where every
decision is made; :func:`collect` and :func:`watch` are the thin paho part. Collection ends when the
broker has acknowledged the subscription (SUBACK: retained messages follow it) and then stayed quiet for
:data:`QUIET_S`, bounded by ``--wait-s``, rather than after a fixed sleep: on this machine the whole
command (Python start-up included) takes 1.2-1.5 s for a 3-kiosk fleet.

Every byte from the broker is untrusted: anyone with publish rights under the prefix can write there. A
payload over :data:`MAX_PAYLOAD_BYTES` is not parsed; bad JSON, wrong types, unknown status words and
topics outside the pattern are counted (``ignored``) and change nothing; text is stripped of control
characters (no terminal escapes reach the screen) and clipped; at most :data:`MAX_KIOSKS` kiosks are
tracked. ``--expect`` names the kiosks the admin runs (ids or ``kiosk-*`` patterns): any other kiosk is
marked unexpected and has no vote in the config majority, since three fakes published by one hostile
account would otherwise outvote the real kiosk and flag it ``*differs``. With MQTT 5 the client also
announces a Maximum Packet Size, so the broker drops oversized messages instead of sending them.

The map, in the order a message meets it:

* (``agent.ops.health_view``: one ``health`` payload, untrusted bytes, into the typed :class:`HealthView`
  the table shows; ``hume-edge status`` reads its file with it too);
* ``fold``: :class:`FleetFold`, ``status`` and ``health`` messages into a :class:`FleetReport` (pure);
* ``table``: the report as the terminal table and its summary line;
* ``broker``: the paho session that subscribes, settles and feeds the fold (:func:`collect`);
* ``command``: ``hume-edge fleet`` itself: options, ``--watch``, exit codes.

Every public name is importable from ``agent.ops.fleet`` itself.
"""

from __future__ import annotations

from agent.ops.fleet.broker import (
    CONNECT_TIMEOUT_S,
    DEFAULT_WAIT_S,
    MAX_PACKET_BYTES,
    QUIET_S,
    FleetError,
    FleetSession,
    collect,
    settle,
)
from agent.ops.fleet.command import (
    EXIT_BROKER,
    EXIT_OK,
    add_arguments,
    broker_config,
    run_from_args,
    watch,
)
from agent.ops.fleet.fold import (
    MAX_DEVICE_CHARS,
    MAX_KIOSKS,
    STATES,
    FleetFold,
    FleetReport,
    Ignored,
    KioskRow,
)
from agent.ops.fleet.table import (
    render_table,
    summary_line,
)
from agent.ops.health_view import (
    MAX_PAYLOAD_BYTES,
    MAX_TEXT_CHARS,
    HealthView,
    clean_text,
    parse_health,
)

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_WAIT_S",
    "EXIT_BROKER",
    "EXIT_OK",
    "MAX_DEVICE_CHARS",
    "MAX_KIOSKS",
    "MAX_PACKET_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_TEXT_CHARS",
    "QUIET_S",
    "STATES",
    "FleetError",
    "FleetFold",
    "FleetReport",
    "FleetSession",
    "HealthView",
    "Ignored",
    "KioskRow",
    "add_arguments",
    "broker_config",
    "clean_text",
    "collect",
    "parse_health",
    "render_table",
    "run_from_args",
    "settle",
    "summary_line",
    "watch",
]
