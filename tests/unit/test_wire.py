"""One v1 session's client side, without sockets: pacing, rate_limited resends, pairing, Observations."""

from __future__ import annotations

import collections
import re
from typing import Deque, Dict, List

import pytest

from agent.hume.types import Observation, OutgoingMedia
from agent.hume.v1 import protocol as p
from agent.hume.v1.wire import AudioWire, VideoWire
from agent.media.audio import BYTES_PER_MS

FRAME = p.AUDIO_FRAME_MS * BYTES_PER_MS


def audio_queue(n: int, t0: float = 1000.0) -> Deque[OutgoingMedia]:
    return collections.deque(
        OutgoingMedia("audio", bytes([i % 256]) * FRAME, t0 + i * 0.1, "visit", 0.1) for i in range(n)
    )


def result(start: int, end: int) -> p.AudioResult:
    return p.AudioResult(0, 0, start, end, "interval", (p.Score("joy", 0.7),), ())


def test_audio_is_never_sent_ahead_of_real_time() -> None:
    emitted: List[Observation] = []
    wire = AudioWire(audio_queue(50), emitted.append, {}, now=0.0)
    now, sent_ms = 0.0, 0
    while wire.queue:
        wait, media = wire.next_send(now)
        if media is None:
            now += wait
            continue
        wire.sent(media, now)
        sent_ms += p.AUDIO_FRAME_MS
        assert sent_ms <= now * 1000 + p.AUDIO_FRAME_MS + 1e-6
    assert sent_ms == 5000


def test_rate_limited_frame_is_resent_first_and_leaves_the_timeline() -> None:
    emitted: List[Observation] = []
    stats: Dict[str, int] = {}
    wire = AudioWire(audio_queue(3), emitted.append, stats, now=0.0)
    first = wire.next_send(0.0)[1]
    assert first is not None
    wire.sent(first, 0.0)
    rejected = wire.next_send(0.1)[1]
    assert rejected is not None
    wire.sent(rejected, 0.1)
    wire.on_message(p.ErrorMessage("rate_limited", "slow down", True), 0.12)
    assert wire.queue[0] is rejected
    assert stats["audio_frames_resent"] == 1
    _, again = wire.next_send(0.5)
    assert again is rejected
    wire.sent(again, 0.5)
    wire.on_message(result(100, 200), 0.6)  # the accepted timeline: frame 0 then the resent frame 1
    (obs,) = emitted
    assert obs.captured_at == rejected.captured_at
    assert obs.model == "prosody"
    assert obs.session_id == "visit"
    assert [(s.name, s.score) for s in obs.measurements[0].emotions] == [("joy", 0.7)]
    assert (obs.measurements[0].begin_s, obs.measurements[0].end_s) == (0.1, 0.2)


def test_result_window_maps_back_to_capture_time_inside_a_frame() -> None:
    emitted: List[Observation] = []
    wire = AudioWire(audio_queue(5, t0=50.0), emitted.append, {}, now=0.0)
    now = 0.0
    while wire.queue:
        wait, media = wire.next_send(now)
        if media is None:
            now += wait
        else:
            wire.sent(media, now)
    wire.on_message(result(250, 480), now)
    assert abs(emitted[0].captured_at - 50.25) < 1e-9


def frames(n: int) -> Deque[OutgoingMedia]:
    return collections.deque(OutgoingMedia("frame", b"jpeg%d" % i, 100.0 + i, "visit") for i in range(n))


def face(face_id: int) -> p.Face:
    return p.Face((0.0, 0.0, 80.0, 80.0), 0.99, face_id, (p.Score("interest", 0.6),), ())


def test_video_sends_only_the_newest_frame_at_most_fps() -> None:
    stats: Dict[str, int] = {}
    queue = frames(3)
    wire = VideoWire(queue, lambda _: None, stats, now=0.0, fps=2.0)
    _, media = wire.next_send(0.0)
    assert media is not None
    assert media.captured_at == 102.0
    assert stats["video_frames_stale"] == 2
    queue.append(OutgoingMedia("frame", b"x", 103.0, "visit"))
    wait, none = wire.next_send(0.1)
    assert none is None
    assert 0.39 < wait <= 0.4


def test_video_replies_pair_with_frames_by_order_and_errors_consume_frames() -> None:
    emitted: List[Observation] = []
    queue: Deque[OutgoingMedia] = collections.deque()
    wire = VideoWire(queue, emitted.append, {}, now=0.0, fps=3.0)
    for i in range(4):
        queue.append(OutgoingMedia("frame", b"f", 200.0 + i, "visit"))
        _, media = wire.next_send(float(i))
        assert media is not None
        wire.sent(media, float(i))
    wire.on_message(p.VideoResult(0, (face(0), p.Face((0.0, 0.0, 9.0, 9.0), 0.95))), 4.0)
    wire.on_message(p.ErrorMessage("invalid_image_frame", "not a JPEG", True), 4.0)
    wire.on_message(p.ErrorMessage("message_invalid", "answers a text message", True), 4.0)
    wire.on_message(p.VideoResult(1, ()), 4.0)
    wire.on_message(p.ErrorMessage("rate_limited", "too fast", True), 4.0)
    assert [o.captured_at for o in emitted] == [200.0, 202.0]
    with_face, empty = emitted
    # the unmeasured face is not a measurement; the id is qualified by this connection, as v0's are
    assert [m.face_id for m in with_face.measurements] == [f"face_0@{wire.face_scope}"]
    assert with_face.warning_code is None
    assert empty.measurements == ()
    assert empty.warning_code == "W0103"
    assert with_face.latency_s == 4.0
    assert wire.unanswered == 0  # 4 frames: 2 results, 2 frame errors (the text's error consumes none)


def test_video_frames_without_a_reply_are_unanswered_and_audio_has_none() -> None:
    queue: Deque[OutgoingMedia] = collections.deque()
    wire = VideoWire(queue, lambda _: None, {}, now=0.0, fps=3.0)
    for i in range(3):
        queue.append(OutgoingMedia("frame", b"f", 300.0 + i, "visit"))
        _, media = wire.next_send(float(i))
        assert media is not None
        wire.sent(media, float(i))
    wire.on_message(p.VideoResult(0, ()), 3.0)
    assert wire.unanswered == 2  # the session ends now: two replies lost
    assert AudioWire(collections.deque(), lambda _: None, {}, now=0.0).unanswered == 0


def test_video_sends_held_frames_oldest_first_within_the_lag_and_drops_older_ones() -> None:
    """A visit's frames held while it qualified (hume.v1.min_session_s) are all measured, in order."""
    stats: Dict[str, int] = {}
    queue = frames(8)  # captured at 100 .. 107
    wire = VideoWire(queue, lambda _: None, stats, now=0.0, fps=3.0, max_lag_s=6.0)
    sent = []
    now = 0.0
    while queue:
        wait, media = wire.next_send(now)
        if media is None:
            now += wait
            continue
        wire.sent(media, now)
        wire.on_message(p.VideoResult(len(sent), ()), now)  # answered at once
        sent.append(media.captured_at)
    assert sent == [101.0, 102.0, 103.0, 104.0, 105.0, 106.0, 107.0]  # 100 is more than 6 s behind
    assert stats["video_frames_stale"] == 1
    assert now == pytest.approx(2.0, abs=0.01)  # at the API's rate: one every 1/3 s


def test_face_ids_are_qualified_per_connection_like_v0s() -> None:
    """Hume numbers faces per connection and a visitor gets connections of their own: two visitors' face
    0 must not share an id (docs/mqtt.md promises ``face_0@3fa2c1``; v1 published a bare ``"0"``)."""
    ids = []
    for _visit in range(2):
        emitted: List[Observation] = []
        queue: Deque[OutgoingMedia] = collections.deque([OutgoingMedia("frame", b"f", 200.0, "visit")])
        wire = VideoWire(queue, emitted.append, {}, now=0.0, fps=3.0)
        _, media = wire.next_send(0.0)
        assert media is not None
        wire.sent(media, 0.0)
        wire.on_message(p.VideoResult(0, (face(0),)), 1.0)
        [obs] = emitted
        ids += [m.face_id for m in obs.measurements]
    assert len(set(ids)) == 2, ids
    assert all(re.fullmatch(r"face_0@[0-9a-f]{6}", str(i)) for i in ids), ids
