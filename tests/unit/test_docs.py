"""The documentation as shipped: a README that stays a front page, a benchmark page nobody types, and no
reference to a file outside the repository (a reader has only the repository)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.support.boundaries import documented_kinds

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 200

# Documents that lived beside the repository on a developer's machine, and that machine's roots.
OUTSIDE = re.compile(
    r"shared/reference|(?<![\w.-])/(?:work|farm)/|hume-api-facts\.md|hume-streaming-api\.txt|"
    r"hume-v1-realtime-facts\.md|test-bench\.md|style-examples\.md"
)


def tracked_text_files() -> list[Path]:
    names = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    return [ROOT / n for n in names if n and (ROOT / n).is_file()]


def test_the_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move the detail to a docs/ page"


def test_every_docs_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert pages, "no docs pages"
    assert [p for p in pages if f": {p}" not in nav] == []


def test_the_benchmark_page_is_the_rendering_of_its_saved_runs() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench" / "render_page.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_consumer_rules_name_every_kind_that_takes_a_seq() -> None:
    """Every kind the outbox stamps (the schema's root: the messages that go through it) is in the consumer
    rules' "Every sequenced message (...)", so a consumer of those topics sees no gap that is not a loss.
    3f521f5's README named summary, idle, session and aggregate only: a campaign that subscribed to them
    counted every notice as lost, 13 of 463 (#28)."""
    schema = json.loads((ROOT / "agent" / "schema" / "messages.schema.json").read_text(encoding="utf-8"))
    stamped = {ref["$ref"].rsplit("/", 1)[-1] for ref in schema["oneOf"]}
    assert stamped == {"summary", "idle", "session", "aggregate", "notice"}, stamped
    assert sorted(stamped - set(documented_kinds(ROOT))) == []


def test_no_file_refers_to_a_document_outside_the_repository() -> None:
    found = []
    for path in tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert found == [], "\n".join(found)
