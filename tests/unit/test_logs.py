"""Log format under journald and in a terminal, repeat collapsing, and the last problem kept for status."""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from typing import Iterator

import pytest

from agent.ops import logs


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    logs._handler = None


def _configure(monkeypatch: pytest.MonkeyPatch, journal: bool, level: str = "debug") -> io.StringIO:
    stream = io.StringIO()
    if journal:
        monkeypatch.setenv("JOURNAL_STREAM", "8:12345")  # StringIO has no fileno: the variable decides
    else:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    logs.configure(level, stream)
    return stream


def test_journald_lines_carry_priority_and_no_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _configure(monkeypatch, journal=True)
    log = logging.getLogger("agent.test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert out.getvalue().splitlines() == [
        "<7>agent.test: d",
        "<6>agent.test: i",
        "<4>agent.test: w",
        "<3>agent.test: e",
    ]


def test_journald_prefixes_every_line_of_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _configure(monkeypatch, journal=True)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("agent.test").exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>RuntimeError: boom"


@pytest.mark.parametrize("journal", [True, False])
def test_no_outside_string_can_forge_a_log_line(monkeypatch: pytest.MonkeyPatch, journal: bool) -> None:
    """U+2028 in a command topic forged separate journal entries (#31): every line break but the agent's own
    newlines is escaped, under journald and in a terminal."""
    out = _configure(monkeypatch, journal=journal)
    topic = "cmd/x\u2028<3>forged: error\u2029\r\x0b\x0c\x1c\x85y"
    logging.getLogger("agent.test").info("refused %s", topic)
    text = out.getvalue()
    assert text.count("\n") == 1
    assert len(text.splitlines()) == 1, text
    assert "\\u2028<3>forged" in text


def test_terminal_lines_are_timestamped(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _configure(monkeypatch, journal=False)
    logging.getLogger("agent.test").warning("link down")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING agent\.test: link down\n", out.getvalue()
    )


def test_journal_stream_must_match_stderr_device_and_inode() -> None:
    with tempfile.TemporaryFile("w") as fh:
        st = os.fstat(fh.fileno())
        assert logs.under_journald(fh, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not logs.under_journald(fh, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not logs.under_journald(fh, {})


def test_level_filters_and_bad_level_names_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _configure(monkeypatch, journal=True, level="WARNING")
    logging.getLogger("agent.test").info("hidden")
    assert out.getvalue() == ""
    with pytest.raises(ValueError, match="debug, info, warning, error"):
        logs.configure("loud")


def test_repeats_collapse_into_one_summary_line(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _configure(monkeypatch, journal=True)
    log = logging.getLogger("agent.test")
    for _ in range(50):
        log.warning("broker unreachable")
    log.info("broker connected")
    assert out.getvalue().splitlines() == [
        "<4>agent.test: broker unreachable",
        "<4>agent.test: (previous message repeated 49 times)",
        "<6>agent.test: broker connected",
    ]


def test_repeats_are_written_again_after_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _configure(monkeypatch, journal=True)
    record = logging.makeLogRecord({"name": "agent.t", "levelno": 30, "levelname": "WARNING", "msg": "x"})
    later = logging.makeLogRecord({**record.__dict__, "created": record.created + logs.REPEAT_WINDOW_S + 1})
    logging.getLogger("agent.t").handle(record)
    logging.getLogger("agent.t").handle(record)
    logging.getLogger("agent.t").handle(later)
    assert out.getvalue().splitlines() == [
        "<4>agent.t: x",
        "<4>agent.t: (previous message repeated 1 times)",
        "<4>agent.t: x",
    ]


def test_reconfigure_flushes_pending_repeats_and_keeps_one_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _configure(monkeypatch, journal=True)
    log = logging.getLogger("agent.test")
    log.error("same")
    log.error("same")
    before = len(logging.getLogger().handlers)
    logs.configure("info", io.StringIO())
    assert len(logging.getLogger().handlers) == before
    assert out.getvalue().splitlines()[-1] == "<3>agent.test: (previous message repeated 1 times)"


def test_last_problem_is_the_latest_warning_or_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _configure(monkeypatch, journal=True)
    log = logging.getLogger("agent.test")
    assert logs.last_problem() is None
    log.warning("mqtt down")
    log.info("fine now")
    problem = logs.last_problem()
    assert problem is not None
    assert (problem["level"], problem["logger"], problem["message"]) == ("warning", "agent.test", "mqtt down")
