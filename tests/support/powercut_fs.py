"""A FUSE filesystem that loses what was not fsynced when the power is cut (in the spirit of LazyFS).

Test source, not product: the power-loss campaign (``tests/support/powerloss.py``) puts the agent's outbox
on it. Every file lives in a backing directory, which stands for what is on the card; every write goes to
an in-memory overlay of 4 KB pages and a pending size instead, which stands for the page cache. ``fsync``
(and ``fdatasync``) of a file moves its overlay to the backing file. A cut throws the overlay away:

* ``all``: everything not fsynced is lost (a card that had written nothing back yet);
* ``torn``: each unsynced 4 KB page and each file's size independently survives or not (seeded), as a
  kernel that had written back some pages, in any order, and maybe the new size, would leave it.

Simplifications, said so the results are read right: creating, renaming and deleting files is durable at
once (SQLite's WAL needs no directory fsync: its frames carry their own checksums); the card itself never
tears inside a 4 KB page (SQLite's powersafe-overwrite assumption); ``all`` and ``torn`` model what the
kernel had written back, not a card that lies about fsync.

A cut is "the same instant" as the SIGKILL of the agent: :meth:`PowercutFs.freeze` first (from then on
every write, truncate, open or fsync fails with EIO, so nothing the dying process still does lands), then
the kill, then :meth:`PowercutFs.cut` applies the loss and :meth:`PowercutFs.thaw` lets a new process in.
Handles opened before a cut stay dead after it (their generation is old).

Runs as its own process (``python -m tests.support.powercut_fs BACKING MOUNTPOINT CONTROL``), served by
mfusepy on libfuse 3 (Debian ``fuse3``), controlled over a Unix socket by :class:`PowercutMount`: root
and ``/dev/fuse`` needed (:func:`unavailable` says why not).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib.util
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

PAGE = 4096
MODES = ("all", "torn")


def unavailable() -> str:
    """Why the power-cut filesystem cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "not root: mounting a FUSE filesystem for the power-cut campaign needs root"
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse: the power-cut campaign needs FUSE"
    if importlib.util.find_spec("mfusepy") is None:
        return "mfusepy is not installed (pip install -e '.[dev]')"
    if shutil.which("fusermount3") is None:
        return "no fusermount3: apt install fuse3 (scripts/setup --dev does)"
    return ""


@dataclasses.dataclass
class Pending:
    """What a file has that is not on the card yet."""

    size: int
    pages: Dict[int, bytearray] = dataclasses.field(default_factory=dict)
    zero_from: Optional[int] = None
    """A truncation below the card's size: bytes from here on read as zeros unless rewritten."""


@dataclasses.dataclass
class Stats:
    writes: int = 0
    syncs: int = 0
    cuts: int = 0
    pages_lost: int = 0
    pages_kept: int = 0
    sizes_lost: int = 0
    refused: int = 0


class PowercutOps:
    """The filesystem's operations (mfusepy's ``Operations`` protocol), over ``backing``."""

    use_ns = True

    def __init__(self, backing: Path) -> None:
        self.backing = backing
        self._mutex = threading.RLock()
        self.pending: Dict[str, Pending] = {}
        self.frozen = False
        self.generation = 0
        self.handles: Dict[int, int] = {}
        """fh -> generation it was opened in."""
        self._next_fh = 1
        self.stats = Stats()

    # -- helpers --------------------------------------------------------------------------------

    def _real(self, path: str) -> str:
        return str(self.backing / path.lstrip("/"))

    @staticmethod
    def _fail(code: int) -> OSError:
        import mfusepy

        return mfusepy.FuseOSError(code)  # type: ignore[no-any-return]

    def _live(self, fh: Optional[int]) -> None:
        """Refuse a mutation while frozen or through a handle from before the last cut."""
        if self.frozen or (fh is not None and self.handles.get(fh, -1) != self.generation):
            self.stats.refused += 1
            raise self._fail(errno.EIO)

    def _size(self, path: str) -> int:
        p = self.pending.get(path)
        return p.size if p is not None else os.path.getsize(self._real(path))

    def _page(self, path: str, index: int) -> bytearray:
        """Page ``index`` as a process would read it now (overlay, else the card, zeros past the end)."""
        p = self.pending.get(path)
        if p is not None and index in p.pages:
            return bytearray(p.pages[index])
        with open(self._real(path), "rb") as fh:
            fh.seek(index * PAGE)
            data = bytearray(fh.read(PAGE))
        data.extend(b"\0" * (PAGE - len(data)))
        if p is not None and p.zero_from is not None:
            cut = max(0, p.zero_from - index * PAGE)
            if cut < PAGE:
                data[cut:] = b"\0" * (PAGE - cut)
        return data

    def _overlay(self, path: str) -> Pending:
        p = self.pending.get(path)
        if p is None:
            p = self.pending[path] = Pending(os.path.getsize(self._real(path)))
        return p

    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = self.generation
        return fh

    # -- metadata -------------------------------------------------------------------------------

    def getattr(self, path: str, fh: Optional[int] = None) -> Dict[str, Any]:
        with self._mutex:
            st = os.lstat(self._real(path))
            attrs = {
                key: getattr(st, key)
                for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns",
                            "st_mtime_ns", "st_ctime_ns")
            }  # fmt: skip
            attrs = {k.replace("_ns", ""): v for k, v in attrs.items()}
            if path in self.pending:
                attrs["st_size"] = self.pending[path].size
            return attrs

    def readdir(self, path: str, fh: int) -> List[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def statfs(self, path: str) -> Dict[str, int]:
        sv = os.statvfs(self._real(path))
        return {
            key: getattr(sv, key)
            for key in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files",
                        "f_flag", "f_frsize", "f_namemax")
        }  # fmt: skip

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise self._fail(errno.EACCES)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: Optional[Tuple[int, int]] = None) -> int:
        if times is None:
            os.utime(self._real(path))
        else:
            os.utime(self._real(path), ns=times)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        return 0

    def unlink(self, path: str) -> int:
        with self._mutex:
            self._live(None)
            os.unlink(self._real(path))
            self.pending.pop(path, None)
        return 0

    def rename(self, old: str, new: str) -> int:
        with self._mutex:
            self._live(None)
            os.rename(self._real(old), self._real(new))
            self.pending.pop(new, None)
            if old in self.pending:
                self.pending[new] = self.pending.pop(old)
        return 0

    # -- data -----------------------------------------------------------------------------------

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        with self._mutex:
            self._live(None)
            os.close(os.open(self._real(path), os.O_CREAT | os.O_WRONLY, mode))
            return self._new_fh()

    def open(self, path: str, flags: int) -> int:
        with self._mutex:
            if flags & (os.O_WRONLY | os.O_RDWR):
                self._live(None)
            if not os.path.exists(self._real(path)):
                raise self._fail(errno.ENOENT)
            return self._new_fh()

    def release(self, path: str, fh: int) -> int:
        with self._mutex:
            self.handles.pop(fh, None)
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._mutex:
            end = min(offset + size, self._size(path))
            out = bytearray()
            pos = offset
            while pos < end:
                index, within = divmod(pos, PAGE)
                take = min(PAGE - within, end - pos)
                out += self._page(path, index)[within : within + take]
                pos += take
            return bytes(out)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._mutex:
            self._live(fh)
            p = self._overlay(path)
            pos = offset
            view = memoryview(data)
            while view:
                index, within = divmod(pos, PAGE)
                take = min(PAGE - within, len(view))
                page = self._page(path, index)
                page[within : within + take] = view[:take]
                p.pages[index] = page
                view = view[take:]
                pos += take
            p.size = max(p.size, offset + len(data))
            self.stats.writes += 1
            return len(data)

    def truncate(self, path: str, length: int, fh: Optional[int] = None) -> int:
        with self._mutex:
            self._live(fh)
            p = self._overlay(path)
            if length < p.size:
                last = length // PAGE
                if length % PAGE:
                    page = self._page(path, last)
                    page[length % PAGE :] = b"\0" * (PAGE - length % PAGE)
                    p.pages[last] = page
                    last += 1
                for index in [i for i in p.pages if i >= last]:
                    del p.pages[index]
                p.zero_from = length if p.zero_from is None else min(p.zero_from, length)
            p.size = length
            self.stats.writes += 1
            return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._mutex:
            self._live(fh)
            p = self.pending.pop(path, None)
            if p is not None:
                self._apply(path, p, list(p.pages), size=True)
            self.stats.syncs += 1
            return 0

    def flush(self, path: str, fh: int) -> int:
        return 0

    # -- the card -------------------------------------------------------------------------------

    def _apply(self, path: str, p: Pending, pages: List[int], *, size: bool) -> None:
        """Write ``pages`` of the overlay to the card, and its size when ``size`` (else the card's stays)."""
        real = self._real(path)
        with open(real, "r+b") as fh:
            card = os.fstat(fh.fileno()).st_size
            if size and p.zero_from is not None and p.zero_from < card:
                fh.truncate(p.zero_from)
                card = p.zero_from
            limit = p.size if size else card
            for index in sorted(pages):
                start = index * PAGE
                if start < limit:
                    fh.seek(start)
                    fh.write(bytes(p.pages[index][: min(PAGE, limit - start)]))
            if size:
                fh.truncate(p.size)

    # -- control --------------------------------------------------------------------------------

    def freeze(self) -> None:
        with self._mutex:
            self.frozen = True

    def cut(self, mode: str, seed: int) -> Dict[str, int]:
        """Lose what is not on the card (see the module docstring); the files' new sizes by path."""
        if mode not in MODES:
            raise ValueError(f"cut mode {mode!r}: must be one of {', '.join(MODES)}")
        rng = random.Random(seed)
        with self._mutex:
            self.generation += 1
            for path, p in sorted(self.pending.items()):
                if not os.path.exists(self._real(path)):
                    continue
                if mode == "all":
                    self.stats.pages_lost += len(p.pages)
                    self.stats.sizes_lost += 1
                    continue
                kept = [i for i in sorted(p.pages) if rng.random() < 0.5]
                keep_size = rng.random() < 0.5
                self.stats.pages_kept += len(kept)
                self.stats.pages_lost += len(p.pages) - len(kept)
                self.stats.sizes_lost += 0 if keep_size else 1
                self._apply(path, p, kept, size=keep_size)
            self.pending.clear()
            self.stats.cuts += 1
            return {
                str(f.relative_to(self.backing)): f.stat().st_size
                for f in self.backing.rglob("*")
                if f.is_file()
            }

    def thaw(self) -> None:
        with self._mutex:
            self.frozen = False


def serve_control(ops: PowercutOps, path: str) -> None:
    """One JSON command per line on a Unix socket: freeze, cut {mode, seed}, thaw, stats."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)

    def handle(conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            for line in stream:
                cmd = json.loads(line)
                try:
                    if cmd["op"] == "freeze":
                        ops.freeze()
                        reply: Dict[str, Any] = {"ok": True}
                    elif cmd["op"] == "cut":
                        reply = {"ok": True, "sizes": ops.cut(cmd["mode"], int(cmd["seed"]))}
                    elif cmd["op"] == "thaw":
                        ops.thaw()
                        reply = {"ok": True}
                    else:
                        reply = {"ok": True, "stats": dataclasses.asdict(ops.stats)}
                except Exception as exc:  # the driver shows it
                    reply = {"ok": False, "error": repr(exc)}
                stream.write(json.dumps(reply).encode() + b"\n")
                stream.flush()

    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn,), name="powercut-control", daemon=True).start()


def main(argv: List[str]) -> int:
    import mfusepy

    backing, mountpoint, control = argv
    ops = PowercutOps(Path(backing))
    threading.Thread(target=serve_control, args=(ops, control), name="powercut-control", daemon=True).start()
    # One thread serves every request in order (the cut's barrier relies on it); no attribute or entry
    # caching, so a size or a file the cut took back is never served from the kernel's cache.
    mfusepy.FUSE(
        ops,
        mountpoint,
        foreground=True,
        nothreads=True,
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
        fsname="powercut",
    )
    return 0


class PowercutMount:
    """The filesystem as a child process, mounted at ``mountpoint`` over ``backing``."""

    def __init__(self, workdir: Path) -> None:
        self.backing = workdir / "card"
        self.mountpoint = workdir / "mnt"
        self.control = workdir / "powercut.sock"
        self.log = workdir / "powercut.log"
        for d in (self.backing, self.mountpoint):
            d.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.control.unlink()
        root = Path(__file__).resolve().parents[2]
        env = dict(os.environ, PYTHONPATH=str(root))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.powercut_fs", str(self.backing), str(self.mountpoint),
                 str(self.control)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while not (os.path.ismount(self.mountpoint) and self.control.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the power-cut filesystem did not mount:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)  # polling: the mount appears in /proc/self/mountinfo
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(str(self.control))
        self._stream = self._sock.makefile("rwb")

    def _ask(self, **cmd: Any) -> Dict[str, Any]:
        self._stream.write(json.dumps(cmd).encode() + b"\n")
        self._stream.flush()
        reply: Dict[str, Any] = json.loads(self._stream.readline())
        if not reply.get("ok"):
            raise RuntimeError(f"power-cut filesystem: {cmd['op']}: {reply.get('error')}")
        return reply

    def freeze(self) -> None:
        """The instant of the cut: nothing written from now on lands."""
        self._ask(op="freeze")

    def cut(self, mode: str, seed: int) -> Dict[str, int]:
        """Lose what was not fsynced (``mode``: all / torn), once the writer is dead; then let writers in."""
        sizes: Dict[str, int] = self._ask(op="cut", mode=mode, seed=seed)["sizes"]
        os.stat(self.mountpoint)  # a barrier: the dead writer's last requests were answered before this one
        self._ask(op="thaw")
        return sizes

    def stats(self) -> Stats:
        return Stats(**self._ask(op="stats")["stats"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.close()
            self._sock.close()
        subprocess.run(
            ["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True, timeout=30, check=False
        )
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def powercut_mount(workdir: Path) -> Iterator[PowercutMount]:
    mount = PowercutMount(workdir)
    try:
        yield mount
    finally:
        mount.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
