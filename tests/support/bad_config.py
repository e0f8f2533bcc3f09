"""Generated config files (known sections and keys with values of every type) and how ``check-config``
answers them: the fault campaign's and the hypothesis tests' bad config input."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
from pathlib import Path
from typing import Optional, Tuple

# --------------------------------------------------------------------------------------------------
# Config files


def _toml_value(rng: random.Random, depth: int = 0) -> str:
    kind = rng.randrange(10 if depth < 2 else 7)
    if kind == 0:
        return rng.choice(["true", "false"])
    if kind == 1:
        return str(rng.choice([0, 1, -1, 5, 60, 1883, 10**6, 2**63 - 1, -(2**63)]))
    if kind == 2:
        return rng.choice(["0.0", "0.5", "-1.5", "1e308", "inf", "-inf", "nan", "3.0"])
    if kind in (3, 4):
        text = "".join(
            chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)]))
            for _ in range(rng.randrange(12))
        )
        return json.dumps(rng.choice([text, "v1", "none", "synthetic", "face", "tcp", "5", "3.1.1"]))
    if kind == 5:
        return rng.choice(["1979-05-27T07:32:00Z", "07:32:00", "'literal'", '"""multi\nline"""'])
    if kind == 6:
        return rng.choice(["", "[", "{", "=", "0x1F", "1_000", "+1", "'unterminated", '"\\x"'])
    if kind in (7, 8):
        return "[" + ", ".join(_toml_value(rng, depth + 1) for _ in range(rng.randrange(4))) + "]"
    return "{" + ", ".join(f"k{i} = {_toml_value(rng, depth + 1)}" for i in range(rng.randrange(3))) + "}"


def random_toml(rng: random.Random) -> bytes:
    """A config file: known sections and keys with values of any type, unknown ones, and plain garbage."""
    from agent.config import Config

    if rng.random() < 0.1:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(200)))
    sections = {f.name: f for f in dataclasses.fields(Config)}
    lines = []
    for _ in range(rng.randrange(3)):
        lines.append(f"{rng.choice(['device_id', 'log_level', 'bogus'])} = {_toml_value(rng)}")
    for _ in range(rng.randrange(5)):
        name = rng.choice([*sections, "nonsense", "hume.v1", "mqtt"])
        section = sections.get(name)
        tp = section.default_factory() if section is not None and callable(section.default_factory) else None
        keys = [f.name for f in dataclasses.fields(tp)] if dataclasses.is_dataclass(tp) else ["x"]
        lines.append(f"[{name}]")
        for _ in range(rng.randrange(6)):
            lines.append(f"{rng.choice([*keys, 'unknown_key'])} = {_toml_value(rng)}")
    text = "\n".join(lines) + "\n"
    if rng.random() < 0.1:
        text = text[: rng.randrange(len(text) + 1)]
    return text.encode("utf-8", "surrogatepass")


def check_config_file(path: Path) -> Tuple[int, str]:
    """``hume-edge check-config`` in-process: the exit code and what it printed (a traceback propagates)."""
    import io

    from agent import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["check-config", str(path)])
    return code, out.getvalue() + err.getvalue()


def config_inputs(rng: random.Random, n: int, workdir: Optional[Path] = None) -> int:
    """Run ``n`` generated configs through check-config; raise on anything but exit 0 / 78 with a message."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "config.toml"
        for _ in range(n):
            path.write_bytes(random_toml(rng))
            code, said = check_config_file(path)
            if code not in (0, 78) or (code == 78 and "error" not in said):
                raise AssertionError(f"check-config exited {code} on:\n{path.read_bytes()!r}\n{said}")
    return n
