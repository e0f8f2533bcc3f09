"""What Hume bills, as far as it is published: the one place the agent and the benchmarks price media.

Source: Hume's published prices (hume.ai/pricing; v0: the newer rate set, reconciled in May 2026, exactly
three times the older one) and Hume's v1 realtime documentation (v1 bills
media-seconds: audio as streamed, 1/3 s per frame that passes the send-rate check, at least 10 s per
session that took media). v1's prices are not published: its media-seconds are priced at the same table's
per-minute rates (audio only; video at the older video-only rate x3, as that table lists none).
"""

from __future__ import annotations

from typing import Mapping

IMAGE_USD = 0.00204
"""v0: per image (each frame sent to the face model)."""
AUDIO_USD_PER_MIN = 0.0639
"""Per minute of audio only, metered per second (v0; assumed for v1)."""
V1_VIDEO_USD_PER_MIN = 0.045
"""v1 video, per billed minute (unpublished: the older table's video-only $0.015/min x 3)."""
V1_MIN_BILLED_S = 10.0
"""v1 bills every session that took media at least this long."""
V1_FRAME_BILLED_S = 1 / 3
"""v1 bills each video frame that passes the send-rate check as a third of a second."""
V1_BILLED_S_MAX = 86_400.0
"""A server's ``received`` claim is capped at a day per session (a hostile one cannot run up a metric)."""


def v1_billed_s(endpoint: str, received: Mapping[str, object]) -> float:
    """Media-seconds Hume bills for one v1 session of ``endpoint`` from its ``session.closed``
    ``received`` totals: audio by its accepted duration, video 1/3 s per accepted frame, at least
    :data:`V1_MIN_BILLED_S` once any media was taken in. A value that is not a non-negative integer
    counts as 0 (the server is outside input)."""

    def count(key: str) -> int:
        value = received.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            return 0
        return value

    media_s = (
        count("audio_duration_ms") / 1000 if endpoint == "audio" else count("frames") * V1_FRAME_BILLED_S
    )
    return min(max(V1_MIN_BILLED_S, media_s), V1_BILLED_S_MAX) if media_s > 0 else 0.0


def v1_session_usd(endpoint: str, media_s: float) -> float:
    """The most one v1 session of ``endpoint`` ("audio" or "video") costs for ``media_s`` billed seconds."""
    billed_s = max(V1_MIN_BILLED_S, media_s)
    rate = AUDIO_USD_PER_MIN if endpoint == "audio" else V1_VIDEO_USD_PER_MIN
    return billed_s / 60 * rate
