"""The media gate (agent.visit.gate): what may leave, and every piece held back counted by reason and kind."""

from __future__ import annotations

from agent.visit.gate import KINDS, REASONS, MediaGate


def test_a_text_before_the_notice_is_a_held_back_text_not_a_dropped_frame() -> None:
    """The service's old ``_streaming`` property counted ``unannounced`` on every read, so a ``cmd/text``
    arriving before the notice's PUBACK showed up in health as a dropped frame."""
    gate = MediaGate()
    assert not gate.admit("text", in_visit=True, paused=False, announced=False)
    assert gate.drops["unannounced"] == {"frame": 0, "audio": 0, "text": 1}
    assert gate.media_dropped("unannounced") == 0  # frames and audio only


def test_each_piece_is_counted_once_under_its_reason_and_kind() -> None:
    gate = MediaGate()
    assert not gate.admit("frame", in_visit=True, paused=False, announced=False)
    assert not gate.admit("audio", in_visit=True, paused=True, announced=True)
    assert not gate.captured("frame", paused=True)
    assert gate.captured("audio", paused=False)
    assert gate.admit("audio", in_visit=True, paused=False, announced=True)
    assert gate.drops == {
        "paused": {"frame": 1, "audio": 1, "text": 0},
        "unannounced": {"frame": 1, "audio": 0, "text": 0},
        "withdrawn": {"frame": 0, "audio": 0, "text": 0},
    }
    assert gate.media_dropped("paused", "withdrawn") == 2


def test_outside_a_visit_nothing_leaves_and_nothing_is_a_drop() -> None:
    gate = MediaGate()
    for kind in KINDS:
        assert not gate.admit(kind, in_visit=False, paused=True, announced=False)
    assert all(n == 0 for reason in REASONS for n in gate.drops[reason].values())


def test_a_withdrawal_drops_queues_only_when_something_was_sent_since_the_last() -> None:
    gate = MediaGate()
    assert not gate.withdraw()  # nothing sent yet: no queue to drop
    assert gate.withdrawals == 0
    gate.sent()
    assert gate.withdraw()
    assert gate.withdrawals == 1  # a frame encoded across it compares this and is dropped
    assert not gate.withdraw()  # already dropped
    gate.drop("withdrawn", "frame")
    assert gate.media_dropped("withdrawn") == 1
