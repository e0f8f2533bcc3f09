"""Reading bytes that come from outside (the broker, Hume's server, a file another process wrote).

Every such parse is bounded: a size limit checked before decoding, JSON nesting that cannot exhaust the
interpreter's stack, and text that is clipped before it reaches a log line, the status file, the health
message or a ``cmd/result`` reply. CPython's JSON decoder recurses once per nesting level and raises
``RecursionError`` (not ``ValueError``) around 1,000 levels: 2 KB of ``[`` is enough, so a caller that only
catches ``ValueError`` dies on it.
"""

from __future__ import annotations

import collections
import json
import re
from typing import Any, Optional, Union

MAX_SHOWN_CHARS = 200
"""Outside text shown in logs, health and replies is cut to this many characters."""


class UntrustedInputError(ValueError):
    """Outside data that is too large, too deeply nested, or not JSON; the text says which."""


def loads(data: Union[bytes, str], *, max_bytes: int, what: str) -> Any:
    """``json.loads`` for outside input: at most ``max_bytes``, and nesting that cannot crash the agent."""
    if len(data) > max_bytes:
        raise UntrustedInputError(f"{what}: {len(data)} bytes, at most {max_bytes} allowed")
    try:
        return json.loads(data)
    except RecursionError:
        raise UntrustedInputError(f"{what}: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise UntrustedInputError(f"{what}: not valid JSON ({clip(str(exc), 80)})") from None


def clip(text: object, max_chars: int = MAX_SHOWN_CHARS) -> str:
    """``text`` as a printable one-liner of at most ``max_chars`` characters (plus a count of the rest)."""
    s = str(text)
    flat = "".join(ch if ch.isprintable() else "?" for ch in s[: max_chars + 1])
    if len(s) <= max_chars:
        return flat
    return f"{flat[:max_chars]}... (+{len(s) - max_chars} chars)"


CODE_PATTERN = re.compile(r"[A-Z][0-9]{4}")
"""Hume's documented error and warning codes: a letter and four digits (E0100, W0103, I0100)."""

MAX_DISTINCT_KEYS = 32
"""Distinct codes (or other outside words) counted one by one; the rest are counted together as ``other``."""


def code_key(code: Optional[str], missing: str = "none") -> str:
    """A server's error or warning code as a counter name: itself when it has the documented shape,
    ``missing`` when absent, ``malformed`` otherwise (a 512 KiB "code" must not become a dict key, a log
    line or a health field)."""
    if not code:
        return missing
    return code if CODE_PATTERN.fullmatch(code) else "malformed"


class BoundedCounter(collections.Counter):  # type: ignore[type-arg]
    """A ``Counter`` of at most :data:`MAX_DISTINCT_KEYS` names; later new names count under ``other``."""

    def __init__(self, max_keys: int = MAX_DISTINCT_KEYS) -> None:
        super().__init__()
        self.max_keys = max_keys

    def add(self, key: str, n: int = 1) -> str:
        """Count ``key`` (or ``other`` once full); return the name it was counted under."""
        if key not in self and len(self) >= self.max_keys:
            key = "other"
        self[key] += n
        return key
