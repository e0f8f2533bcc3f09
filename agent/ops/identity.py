"""What runs on this kiosk: agent version, Python, OS, a fingerprint of the effective config, when it started.

Every ``health`` message and the status file carry one :class:`Identity`, so a fleet admin can tell from
the broker alone (``hume-edge fleet``) which version and which config each kiosk runs, without logging in.

**The config fingerprint** is a hash of the settings whose effective value differs from the agent's
built-in default, minus secrets (the API key and the MQTT password: a hash of a short secret can be
brute-forced) and minus what is per-device by design (``device_id``, ``mqtt.client_id``). So:

* two kiosks installed from the same config file, with different device ids, have the same fingerprint;
* a key written out with its default value and a key left out give the same fingerprint (same behaviour);
* an upgrade that only adds new keys with defaults does not change it, so a staged rollout does not flag
  every upgraded kiosk as running a different config (the version column shows the upgrade itself).

Values are hashed as canonical JSON (sorted keys, lists for tuples), never the rendered TOML with its
comments, so a documentation change does not change a fingerprint either. Pure, apart from
:func:`collect` reading ``/etc/os-release`` and the installed package's version once at start-up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from pathlib import Path
from typing import Dict, Tuple

from agent import version
from agent.config import Config, iter_settings
from agent.messages import utc_iso

PER_DEVICE_KEYS = frozenset({"device_id", "mqtt.client_id"})
"""Settings that differ between kiosks by design: left out of the fingerprint."""
FINGERPRINT_CHARS = 12
"""48 bits of SHA-256: a chance collision among 10,000 distinct configs is about 2e-7."""
OS_RELEASE = Path("/etc/os-release")


def agent_version() -> str:
    """The installed package's version; ``0+unknown`` when running from a source tree never installed."""
    return version.installed()


def fingerprint_items(cfg: Config) -> Dict[str, object]:
    """The settings the fingerprint covers: non-default, non-secret, not per-device (JSON-ready)."""
    defaults = {key: value for key, value, _ in iter_settings(Config())}
    items: Dict[str, object] = {}
    for key, value, field in iter_settings(cfg):
        if field.metadata.get("secret") or key in PER_DEVICE_KEYS or defaults.get(key) == value:
            continue
        items[key] = list(value) if isinstance(value, tuple) else value
    return items


def config_fingerprint(cfg: Config) -> str:
    """A short, stable hash of :func:`fingerprint_items`: equal configs, equal fingerprints."""
    canonical = json.dumps(fingerprint_items(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:FINGERPRINT_CHARS]


def os_name(os_release: Path = OS_RELEASE) -> str:
    """``PRETTY_NAME`` from os-release(5) (``Debian GNU/Linux 12 (bookworm)``), else the platform string."""
    try:
        text = os_release.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "PRETTY_NAME" and value.strip():
            return value.strip().strip("\"'")
    return platform.platform(terse=True)


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who this agent is, fixed for the life of the process."""

    version: str
    """The agent's package version."""
    python: str
    """``platform.python_version()``, e.g. ``3.11.2``."""
    os: str
    """The OS's pretty name, e.g. ``Debian GNU/Linux 12 (bookworm)``."""
    machine: str
    """``platform.machine()``: ``aarch64``, ``armv7l``, ``x86_64``."""
    config_fingerprint: str
    """:func:`config_fingerprint` of the effective config."""
    backend: str
    """The Hume API version spoken: ``v0`` or ``v1``."""
    models: Tuple[str, ...]
    """The Hume models the agent runs."""
    started_at: float
    """When the agent started (epoch seconds; UTC ISO-8601 on the wire)."""

    def to_json(self) -> Dict[str, object]:
        """The wire shape (the ``identity`` object of ``health`` and of the status file)."""
        body = dataclasses.asdict(self)
        body["models"] = list(self.models)
        body["started_at"] = utc_iso(self.started_at)
        return body


def collect(cfg: Config, started_at: float, os_release: Path = OS_RELEASE) -> Identity:
    """This process's identity (reads os-release and the package metadata: call it once, at start-up)."""
    return Identity(
        version=agent_version(),
        python=platform.python_version(),
        os=os_name(os_release),
        machine=platform.machine(),
        config_fingerprint=config_fingerprint(cfg),
        backend=cfg.hume.backend,
        models=tuple(cfg.hume.models),
        started_at=started_at,
    )
