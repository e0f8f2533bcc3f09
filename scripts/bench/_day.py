"""A kiosk-day's bill from one played unit: the formula behind benchmark 8's dollars-per-day (pure).

``kioskday.py`` plays one unit of the day (a lead-in with nobody there, then visits and glances) against
each side and measures what it billed. A day at occupancy ``o`` holds ``o x day / visitor seconds per unit``
such units, and the rest of the day is empty, billed at the lead-in's rate (zero for the agent, which
sends nothing to an empty kiosk; the naive sides stream all day). Prices: ``agent.hume.pricing``.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

from agent.hume import pricing

Bill = Mapping[str, float]
"""Billed media: ``audio_s``, ``video_s`` (v1's metered seconds), ``images`` (v0's face requests)."""


def usd(bill: Bill, v1: bool) -> float:
    """What ``bill`` costs: audio per minute on both; v1 video per minute, v0 per image."""
    audio = bill["audio_s"] / 60 * pricing.AUDIO_USD_PER_MIN
    if v1:
        return audio + bill["video_s"] / 60 * pricing.V1_VIDEO_USD_PER_MIN
    return audio + bill["images"] * pricing.IMAGE_USD


def day(
    unit_bill: Bill,
    empty_bill_per_s: Bill,
    unit_bytes: float,
    empty_bytes_per_s: float,
    *,
    occupancy: float,
    day_s: float,
    unit_s: float,
    visitor_s: float,
    v1: bool,
) -> Dict[str, Any]:
    """The day's ``bill``, ``usd`` and ``bytes`` at ``occupancy`` (0-1) of ``day_s`` seconds.

    ``unit_s``: how long one unit plays; ``visitor_s``: the seconds of it someone is in front of the kiosk.
    Units that fill the day past its length leave no empty time (never a negative one).
    """
    units = occupancy * day_s / visitor_s
    empty_s = max(0.0, day_s - units * unit_s)
    bill = {k: units * unit_bill[k] + empty_s * empty_bill_per_s[k] for k in unit_bill}
    return {"bill": bill, "usd": usd(bill, v1), "bytes": units * unit_bytes + empty_s * empty_bytes_per_s}
