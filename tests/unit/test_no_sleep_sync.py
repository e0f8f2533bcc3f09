"""No fixed sleep stands in for an event in the tests: each ``sleep(`` says in a comment what it is.

A sleep is either part of a scenario (an outage's length, a camera's pace, a visitor standing still) or a
poll of state that has no event of its own (``tests/support/waits.py``); a sleep hoping that something has
happened by then is what makes a suite flaky on a slow machine, and this keeps new ones from creeping in.
"""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SAYS_WHY = re.compile(r"#.*\b(scenario|polling)\b", re.IGNORECASE)


def test_every_sleep_in_the_tests_says_scenario_or_polling() -> None:
    unexplained = [
        f"{path.relative_to(TESTS.parent)}:{number}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "sleep(" in line and not SAYS_WHY.search(line)
    ]
    assert not unexplained, "a sleep with no '# scenario: ...' or '# polling: ...' comment:\n" + "\n".join(
        unexplained
    )
