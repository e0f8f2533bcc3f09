"""The v1 backend's bookkeeping before any socket: visits, the minimum-session hold, what is dropped."""

from __future__ import annotations

from agent.config import HumeConfig, HumeV1Config
from agent.hume.v1 import protocol as p
from agent.hume.v1.client import V1Backend
from agent.hume.v1.handshake import ws_base
from agent.media.audio import BYTES_PER_MS

SECOND = bytes(16000 * 2)


def backend(**overrides: object) -> V1Backend:
    v1 = HumeV1Config(min_session_s=float(overrides.pop("min_session_s", 5.0)))  # type: ignore[arg-type]
    return V1Backend(HumeConfig(backend="v1", api_key="k", v1=v1, **overrides))  # type: ignore[arg-type]


async def test_a_visit_shorter_than_the_minimum_is_dropped_unsent() -> None:
    b = backend()
    for i in range(3):
        b.send_audio(SECOND, 100.0 + i, "passer-by")
    assert dict(b.status().counters)["visits_pending"] == 1
    b.mark_boundary()
    status = dict(b.status().counters)
    assert status["visits_pending"] == 0
    assert status["short_visits"] == 1
    assert status["media_dropped_short_visit"] == 30


async def test_a_visit_qualifies_once_present_long_enough() -> None:
    b = backend()
    for i in range(6):
        b.send_audio(SECOND, 100.0 + i, "visitor")
    (visit,) = b._visits.pending
    assert visit.qualified
    assert len(visit.audio) == 60  # 100 ms frames
    assert {len(m.data) for m in visit.audio} == {p.AUDIO_FRAME_MS * BYTES_PER_MS}
    b.mark_boundary()
    assert "short_visits" not in dict(b.status().counters)


async def test_a_new_session_id_is_a_boundary() -> None:
    b = backend(min_session_s=0.0)
    b.send_audio(SECOND, 100.0, "a")
    b.send_audio(SECOND, 101.0, "b")
    first, second = b._visits.pending
    assert first.ended
    assert not second.ended
    assert (first.session_id, second.session_id) == ("a", "b")


async def test_text_and_oversized_frames_are_counted_and_dropped() -> None:
    b = backend()
    b.send_text("hello", 100.0, "visitor")
    b.send_frame(b"\xff\xd8" + bytes(p.VIDEO_MESSAGE_MAX_BYTES), 100.0, "visitor")
    counters = dict(b.status().counters)
    assert counters["text_dropped"] == 1
    assert counters["video_frames_too_large"] == 1
    assert not b._visits.pending


async def test_only_configured_modalities_are_streamed() -> None:
    b = backend(models=("prosody",))
    b.send_frame(b"\xff\xd8jpeg", 100.0, "visitor")
    assert dict(b.status().counters)["video_dropped_disabled"] == 1
    assert {name for name, _ in b.status().links} == {"audio"}


async def test_video_holds_the_frames_of_the_qualifying_seconds_bounded() -> None:
    """While a visit qualifies (5 s) its frames wait: as many as 5 s and the held margin (3 s: the frames
    held through the debounce, the session's opening) at the API's 3 fps, the freshest."""
    b = backend()
    for i in range(40):
        b.send_frame(b"\xff\xd8%d" % i, 100.0 + i * 0.1, "visitor")
    (visit,) = b._visits.pending
    assert [m.data for m in visit.video] == [b"\xff\xd8%d" % i for i in range(15, 40)]


def test_url_accepts_http_or_ws_bases() -> None:
    assert ws_base("wss://api.cloud.hume.ai/") == "wss://api.cloud.hume.ai"
    assert ws_base("http://127.0.0.1:8080") == "ws://127.0.0.1:8080"
    assert ws_base("https://example.org") == "wss://example.org"
