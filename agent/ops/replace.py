"""Replacing a small file atomically: what readers of the status snapshot and of the metrics textfile see
is always a whole file, the old one or the new one.

A temporary file in the same directory (so ``os.replace`` is a rename within one filesystem), its mode set
before the rename, removed again if anything fails. No fsync: both files describe this boot's running
process and are worthless after a power loss, and the SD card is spared the writes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` (permissions ``mode``); the old file stays if anything fails."""
    import tempfile  # noqa: PLC0415 - hume-edge status only reads (its cold start is benchmarked)

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
