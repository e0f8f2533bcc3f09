"""The status both backends build from their links: the headline error explains the headline state."""

from __future__ import annotations

from agent.hume.types import BackendStatus, LinkStatus


def test_the_error_behind_the_most_severe_state_wins_over_a_later_lesser_one() -> None:
    # The flake this came from: the audio socket was refused the key, the video socket was closed by the
    # server a moment later; the status said "auth_failed" with the close as its error.
    links = (
        ("audio", LinkStatus("auth_failed", last_error="Hume refused the API key (HTTP 401)")),
        ("video", LinkStatus("backoff", last_error="closed by the server (code 1011)")),
    )
    status = BackendStatus.of_links("v0", links, {"audio": 10.0, "video": 11.0})
    assert (status.state, status.ok) == ("auth_failed", False)
    assert status.last_error == "audio: Hume refused the API key (HTTP 401)"


def test_the_latest_error_among_links_of_one_state_and_none_when_healthy() -> None:
    links = (
        ("audio", LinkStatus("backoff", last_error="refused")),
        ("video", LinkStatus("backoff", last_error="timed out")),
    )
    assert BackendStatus.of_links("v1", links, {"audio": 5.0, "video": 4.0}).last_error == "audio: refused"
    assert BackendStatus.of_links("v1", links, {"audio": 4.0, "video": 5.0}).last_error == "video: timed out"
    healthy = BackendStatus.of_links("v1", (("audio", LinkStatus("open")), ("video", LinkStatus("idle"))), {})
    assert (healthy.state, healthy.ok, healthy.last_error) == ("open", True, None)


def test_an_old_error_of_a_recovered_link_still_shows_when_no_link_in_the_state_has_one() -> None:
    links = (
        ("audio", LinkStatus("connecting")),
        ("video", LinkStatus("open", last_error="closed by the server (code 1011)")),
    )
    status = BackendStatus.of_links("v1", links, {"video": 3.0})
    assert status.state == "connecting"
    assert status.last_error == "video: closed by the server (code 1011)"
