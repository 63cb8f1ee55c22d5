"""Where the export follower reads a file from: positions, and the bytes that must lie before them.

Split from :mod:`stellaops_runtime.sources.tetragon_export` (the follower's loop): the checks
that keep a position honest when the file under it changes.

- :func:`made_as_read`: a /proc or /sys file put at the path (a symlink) is no export file.
- :func:`seek_line_start`: an agent starting at a file's end starts at the last line still
  being written, so that line is read whole, not its tail as a line of its own.
- :func:`bytes_before`: the bytes just before a position, compared with those last read
  there; a file truncated and written past the position again reads differently.
- :class:`SeenFiles`: a file left at a rotation keeps its position, so a path pointed back
  at it (a symlink to the rotated file, a rename back) continues there instead of counting
  every line again; the bytes before the position must still be the same (else the inode
  was reused by another file, which is then read from its start).
- :func:`find_rotated`: the file of a restart checkpoint, rotated beside the path while no
  agent ran (Tetragon's ``tetragon-<time>.log``, logrotate's ``tetragon.log.1``), so its
  lines after the checkpoint are read instead of lost to a gap, when it is certain that it
  is the only file rotated since.
"""

from __future__ import annotations

import os
import stat
from typing import Any, BinaryIO

from stellaops_runtime.sources.export_checkpoint import matches

CHUNK = 1 << 20
# A longer line is dropped and counted, read through without being held (docs/configuration.md):
# Tetragon's largest events (an argument read with maxData, 320 KiB, base64 in JSON; 127-frame
# stacks) are far below it. At 64 MiB a 60 MB line was held whole and the agent peaked at 254 MB.
MAX_LINE = 8 << 20
SEEN_FILES = 16  # files left at a rotation whose read position is kept
TAIL = 64  # bytes before the read position, compared on each poll: a rewrite in place is a truncation
# Rotated files' modification times closer than this (coarse timestamps, a clock slewed by NTP)
# do not say which was written last.
MTIME_SLACK_NS = 1_000_000_000


def ident(f: BinaryIO) -> tuple[int, int]:
    st = os.fstat(f.fileno())
    return (st.st_dev, st.st_ino)


def bytes_before(f: BinaryIO, pos: int, n: int) -> bytes | None:
    """The ``n`` bytes before ``pos`` as the file holds them now (None if unreadable)."""
    try:
        return os.pread(f.fileno(), n, pos - n)
    except OSError:
        return None


# Kernel file systems whose files are made as they are read: never an export file. A sysfs
# attribute's size reads 4096 (a page) whatever it holds, so the size check alone let it through.
PSEUDO_FS = frozenset(
    {"proc", "sysfs", "debugfs", "tracefs", "securityfs", "configfs", "cgroup", "cgroup2", "bpf",
     "pstore", "efivarfs", "binfmt_misc", "fusectl"}
)  # fmt: skip


def fs_type(dev: int) -> str | None:
    """The type of the mounted file system of device ``dev`` (/proc/self/mountinfo); None: unknown."""
    want = f"{os.major(dev)}:{os.minor(dev)}".encode()
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == want and b"-" in parts[3:]:
                    sep = parts.index(b"-", 3)
                    return parts[sep + 1].decode("ascii", "replace") if sep + 1 < len(parts) else None
    except (OSError, ValueError):
        return None
    return None


def made_as_read(fd: int, st: os.stat_result) -> bool:
    """A /proc or /sys file (made as it is read), never an export file: one on a kernel file
    system (:data:`PSEUDO_FS`), or a regular file whose size says 0 while it yields bytes (one
    of a file system not listed). Followed, it looked truncated or rewritten on every poll and
    was read again from its start each time. A real file empty at the ``fstat`` and written to
    just after (a new file at a rotation) has a size once a byte of it can be read: its size is
    read again."""
    if fs_type(st.st_dev) in PSEUDO_FS:
        return True
    if st.st_size:
        return False
    try:
        return bool(os.pread(fd, 1, 0)) and os.fstat(fd).st_size == 0
    except OSError:
        return False


def seek_line_start(f: BinaryIO, *, chunk: int, max_line: int) -> None:
    """Go to the file's end, or to the start of a last line still being written (read it whole)."""
    end = f.seek(0, os.SEEK_END)
    pos = end
    while pos > 0:
        step = min(chunk, pos)
        f.seek(pos - step)
        nl = f.read(step).rfind(b"\n")
        if nl >= 0:
            f.seek(pos - step + nl + 1)
            return
        pos -= step
        if end - pos > max_line:  # no line start near the end: from the end
            break
    f.seek(end if pos > 0 else 0)


def line_end(f: BinaryIO) -> int:
    """Seek ``f`` as :func:`seek_line_start` does (the follower's sizes) and return where."""
    seek_line_start(f, chunk=CHUNK, max_line=MAX_LINE)
    return f.tell()


class SeenFiles:
    """Read positions of the files left at rotations, the most recent :data:`SEEN_FILES`."""

    def __init__(self) -> None:
        self._files: dict[tuple[int, int], tuple[int, bytes]] = {}  # (dev, ino) -> (position, tail)

    def leave(self, f: BinaryIO, tail: bytes) -> None:
        key = ident(f)
        self._files.pop(key, None)
        if len(self._files) >= SEEN_FILES:
            del self._files[next(iter(self._files))]
        self._files[key] = (f.tell(), tail)

    def resume(self, f: BinaryIO) -> bytes | None:
        """Position ``f`` where it was left and return the tail read there; None (left at its
        start) for a file not left before, or whose bytes there changed."""
        seen = self._files.pop(ident(f), None)
        if seen is None:
            return None
        pos, tail = seen
        if os.fstat(f.fileno()).st_size < pos or bytes_before(f, pos, len(tail)) != tail:
            return None
        f.seek(pos)
        return tail


def find_rotated(
    path: str, cp: dict[str, Any], current: BinaryIO, *, same_dev: bool = True, step_ns: int | None = 0
) -> BinaryIO | None:
    """The checkpoint's file, renamed beside ``path`` since (a rotation while no agent ran),
    opened; None unless it is certain that the file now at the path (``current``) came right
    after it, and it is still the checkpoint's file (same inode, at least that long, same first
    bytes). Anything less keeps the hole a gap.

    Certain: no other rotated file of that name (``<stem>…<ext>…``, compressed ones too) is
    beside it, or every other one was last written before it. Modification times are wall-clock
    times: a clock stepped back between two rotations makes a later rotated file look older.
    ``step_ns``: how far the wall clock stepped since the checkpoint (measured against the boot
    clock, a :data:`MTIME_SLACK_NS` margin added); None: unknown (another boot). Another
    rotated file counts as older only if it is older by more than that, and with an unknown
    step only the checkpoint's file and the current one may be there."""
    d, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    try:
        cur = os.fstat(current.fileno())
        entries = list(os.scandir(d or "."))
    except OSError:
        return None
    found: tuple[str, os.stat_result] | None = None
    newest_other, others = 0, 0
    for e in entries:
        if e.name == name or not e.name.startswith(stem) or (ext and ext not in e.name[len(stem) :]):
            continue
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) == (cur.st_dev, cur.st_ino):
            continue
        if st.st_ino == cp["ino"] and (not same_dev or st.st_dev == cp["dev"]) and found is None:
            found = (e.path, st)
        else:
            newest_other, others = max(newest_other, st.st_mtime_ns), others + 1
    if found is None or (others and step_ns is None):
        return None
    # Their order against it rests on the wall clock: only a difference beyond any step since counts.
    older_than = found[1].st_mtime_ns - (step_ns or 0) - MTIME_SLACK_NS
    if (others and newest_other >= older_than) or cur.st_mtime_ns < older_than:
        return None
    try:
        fd = os.open(found[0], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode) or matches(f, cp, same_dev=same_dev):
        f.close()
        return None
    return f
