"""Per-part status in Frigate's style: retained ``status/camera``, ``status/microphone``, ``status/hume``.

``status`` says whether the process is up; a dashboard also needs to see that the kiosk is up but blind (a
camera unplugged), deaf, cut off from Hume, or deliberately paused. Each part is one word:

* ``online``: working;
* ``offline``: configured but failing (a device lost and being retried, the Hume link down);
* ``disabled``: not measuring on purpose: a privacy pause, or no such part configured (``source = "none"``);
* ``stopped``: the agent stopped cleanly (set last, after the visit's end and before ``status = stopped``).

Pure: the service reads the parts' own reports (``Recovery.lost``, the backend's link state) and publishes
whatever changed.
"""

from __future__ import annotations

ONLINE = "online"
OFFLINE = "offline"
DISABLED = "disabled"
STOPPED = "stopped"
PART_STATES = (ONLINE, OFFLINE, DISABLED, STOPPED)
PARTS = ("camera", "microphone", "hume")


def capture_state(configured: bool, lost: bool, paused: bool) -> str:
    """A camera's or microphone's state: a pause or no device is ``disabled``, a lost one ``offline``."""
    if not configured or paused:
        return DISABLED
    return OFFLINE if lost else ONLINE


def hume_state(ok: bool) -> str:
    """The Hume link: ``ok`` is the backend's "no link failing" (backing off, key refused, quota)."""
    return ONLINE if ok else OFFLINE


def topic(part: str) -> str:
    """The retained topic of a part, relative to ``{prefix}/{device_id}/``."""
    if part not in PARTS:
        raise ValueError(f"part {part!r}: must be one of {', '.join(PARTS)}")
    return f"status/{part}"
