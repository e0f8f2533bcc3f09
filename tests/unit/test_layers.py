"""The layer order of ``agent/`` as the README's layers table states it, enforced on every import.

The table is the one source: this test reads it, maps every module of ``agent/`` to its layer (a path ending
in ``/`` covers a folder), reads every import with ``ast`` (lazy ones inside functions included) and fails on
an import that runs from a lower layer up to a higher one, on a module the table does not place, and on the
emulator package reached from anything but the entry points.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[2]
ENTRY_LAYER = 7
EMULATOR_MAY_USE_UP_TO = 3


def layer_table() -> List[Tuple[int, str, str]]:
    """(layer number, layer name, path) for every path named in the README's layers table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = []
    for number, name, cells in re.findall(r"^\| (\d) ([^|]+?) \| (`agent/[^\n]*) \|$", text, re.M):
        rows.extend((int(number), name, path) for path in re.findall(r"`([^`]+)`", cells))
    assert rows, "README.md has no layers table (| 1 leaves | `agent/...` |)"
    return rows


def layer_of(path: str, table: List[Tuple[int, str, str]]) -> int:
    """The layer of ``path`` (relative, POSIX): its own row, else the longest folder row containing it."""
    matches = [(len(p), n) for n, _, p in table if p == path or (p.endswith("/") and path.startswith(p))]
    assert matches, f"{path} is in no layer: add it to the layers table in README.md"
    return max(matches)[1]


def module_path(module: str) -> str:
    """``agent.mqtt.link`` -> ``agent/mqtt/link.py`` (or the package's ``__init__.py``)."""
    base = ROOT.joinpath(*module.split("."))
    if (base / "__init__.py").exists():
        return f"{module.replace('.', '/')}/__init__.py"
    return f"{module.replace('.', '/')}.py"


def imports(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, module) of every ``agent``/``hume_emulator`` import; ``from a import b`` names ``a.b`` when that
    is a module itself."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                is_module = (
                    ROOT.joinpath(*full.split(".")).with_suffix(".py").exists()
                    or ROOT.joinpath(*full.split("."), "__init__.py").exists()
                )
                yield node.lineno, full if is_module else node.module


def ours(module: str) -> bool:
    return module.split(".", maxsplit=1)[0] in ("agent", "hume_emulator")


def graph(package: str) -> Dict[str, List[Tuple[int, str]]]:
    """Every module of ``package`` and the agent/emulator modules it imports."""
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        out[rel] = [(line, m) for line, m in imports(path) if ours(m)]
    return out


def upward(rel: str, deps: List[Tuple[int, str]], table: List[Tuple[int, str, str]]) -> List[str]:
    """The imports of module ``rel`` that break the layer order, as readable lines."""
    own = layer_of(rel, table)
    wrong = []
    for line, module in deps:
        if module.startswith("hume_emulator"):
            if own != ENTRY_LAYER:
                wrong.append(f"{rel}:{line} imports {module}: only the entry points use the emulators")
            continue
        target = layer_of(module_path(module), table)
        if target > own:
            wrong.append(f"{rel}:{line} (layer {own}) imports {module} (layer {target}): upwards")
    return wrong


def test_every_agent_import_runs_down_the_layers() -> None:
    table = layer_table()
    wrong = [w for rel, deps in graph("agent").items() for w in upward(rel, deps, table)]
    assert not wrong, "\n".join(wrong)


def test_what_run_loads_never_reaches_the_emulators() -> None:
    """``hume-edge run`` imports ``agent.service``; nothing it reaches, lazily or not, is the emulator."""
    deps = {rel: {m for _, m in d} for rel, d in graph("agent").items()}
    seen: Set[str] = set()
    todo = ["agent.service"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        assert not module.startswith("hume_emulator"), f"agent.service reaches {module}"
        todo.extend(deps.get(module_path(module), ()))
    assert "agent.mqtt.publisher" in seen  # the walk follows imports at all


def test_the_emulators_take_only_the_shared_vocabulary() -> None:
    table = layer_table()
    wrong = []
    for rel, deps in graph("hume_emulator").items():
        for line, module in deps:
            if module.startswith("agent"):
                target = layer_of(module_path(module), table)
                if target > EMULATOR_MAY_USE_UP_TO:
                    wrong.append(f"{rel}:{line} imports {module} (layer {target})")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """A leaf importing the service lazily, or a pure module importing the emulator, is caught."""
    table = layer_table()
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from agent.service import run_agent\n    import hume_emulator.emulator\n")
    deps = list(imports(bad))
    assert [m for _, m in deps] == ["agent.service", "hume_emulator.emulator"]
    wrong = upward("agent/errors.py", deps, table)
    assert len(wrong) == 2
    assert "(layer 1) imports agent.service (layer 6)" in wrong[0]
    assert "only the entry points" in wrong[1]
    assert upward("agent/cli.py", deps, table) == []
