"""The installed package's version, found cheaply.

``hume-edge --version`` runs often (scripts, fleet checks) and is benchmarked against a bare interpreter
(scripts/bench/cli.py): importing ``importlib.metadata`` (email parsing and friends) cost 21 ms of CPU
here, a fifth of the command. The name of the ``.dist-info`` directory on ``sys.path`` says the same.
"""

from __future__ import annotations

import os
import sys

PACKAGE = "hume-edge-agent"


def installed() -> str:
    """The installed distribution's version; ``0+unknown`` when running from a source tree never installed."""
    prefix = PACKAGE.replace("-", "_") + "-"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix) and name.endswith(".dist-info"):
                return name[len(prefix) : -len(".dist-info")]
    from importlib import metadata  # noqa: PLC0415 - the slow way, only when the fast one found nothing

    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "0+unknown"
