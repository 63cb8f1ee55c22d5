"""Where the export follower's stored counts end: a checkpoint a restarted agent resumes at.

The JSON export file keeps what no agent has read, so an agent that restarts (an upgrade, a
crash, SIGKILL) can read the lines written while none ran instead of skipping them, and must
never read again the lines whose counts the last agent already stored: a doubled count is
worse than a gap. So the follower (sources/tetragon_export.py) notes, for every line it
queues, the file and byte offset just after it, keyed by the queue's running count
(:class:`ExportPositions`); the node's watch record (agent/watch_record.py) asks for the
position of the last line a drain takes (:meth:`ExportPositions.checkpoint`) and keeps two:

- *committed*: the position whose counts a flush stored (or a graceful shutdown stored or
  spooled); every line before it is counted, none after it;
- *in flight*: the position of the latest drain, written before its rows can reach the store.
  Lines between the two may or may not be counted (a SIGKILL between COMMIT and the record's
  write): the next agent resumes after them and marks the time they were written as a gap
  (unknown, never doubled).

A checkpoint names the file by (dev, inode) and the SHA-256 of its first bytes (at most
:data:`HEAD` bytes, never past the offset): the next agent uses it only if the file at the path
is that file, at least that long, starting with those bytes (:func:`matches`); a file rotated,
truncated or rewritten since (copytruncate) is not, and the restart hole stays a gap.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections import deque
from typing import Any, BinaryIO

MAX_SPANS = 8  # files whose spans a batch names (store/export_spans.py MAX_SPANS)
HEAD = 1024  # bytes of a file's start that identify it with its (dev, inode)
_KEYS = ("path_sha256", "dev", "ino", "pos", "head_len", "head_sha256")


def path_hash(path: str) -> str:
    """The followed path as the record keeps it: a hash (the record is at most 4 KiB; a path may not be)."""
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()


class FileInfo:
    """One file followed: its identity and its first bytes (read as far as they are known)."""

    __slots__ = ("dev", "end", "head", "ino", "start")

    def __init__(self, f: BinaryIO) -> None:
        st = os.fstat(f.fileno())
        self.dev, self.ino = st.st_dev, st.st_ino
        self.head = b""
        self.start = self.end = f.tell()  # the bytes this agent reads of it (store/export_spans.py)

    def learn(self, f: BinaryIO, upto: int) -> None:
        """The file has been read to ``upto``: keep its first bytes (up to :data:`HEAD`)."""
        want = min(HEAD, upto)
        if len(self.head) < want:
            with contextlib.suppress(OSError):  # unknown for now: learned at the next read
                self.head = os.pread(f.fileno(), want, 0)


class ExportPositions:
    """File offsets of the lines queued and not taken yet, by the queue's running count."""

    def __init__(self, path: str, queue: Any) -> None:
        self.path = path
        self.queue = queue  # sources/queue.py EventQueue: ``enqueued``, ``len()``
        self.file: FileInfo | None = None
        # (queue.enqueued after the line, file, offset after it); the first one is the latest
        # whose count the consumer has taken: older ones are dropped as lines are queued.
        self._marks: deque[tuple[int, FileInfo, int]] = deque()
        # Every file followed in this agent's life, oldest first (the last MAX_SPANS): its spans.
        self.files: deque[FileInfo] = deque(maxlen=MAX_SPANS)

    def opened(self, f: BinaryIO) -> None:
        """A file is followed from its current offset (opened, rotated in, truncated)."""
        self.file = FileInfo(f)
        self.file.learn(f, f.tell())
        self.files.append(self.file)
        self._mark(f.tell())

    def read(self, f: BinaryIO) -> None:
        """The current file was read to its current offset."""
        if self.file is not None and len(self.file.head) < HEAD:
            self.file.learn(f, f.tell())

    def queued(self, end: int) -> None:
        """A line ending at ``end`` (after its newline) of the current file was queued."""
        self._mark(end)

    def _mark(self, pos: int) -> None:
        if self.file is None:
            return
        self.file.end = max(self.file.end, pos)
        self._prune(self.queue.enqueued - len(self.queue))
        self._marks.append((self.queue.enqueued, self.file, pos))

    def _prune(self, taken: int) -> None:
        m = self._marks
        while len(m) >= 2 and m[1][0] <= taken:
            m.popleft()

    def checkpoint(self, taken: int) -> dict[str, Any] | None:
        """Where the first ``taken`` queued lines end (None: not known, e.g. no file yet).

        Asked with the consumer's count at a drain: lines taken later are never asked about
        with an older count (their marks are gone)."""
        self._prune(taken)
        if not self._marks or self._marks[0][0] > taken:
            return None
        _, info, pos = self._marks[0]
        head = info.head[: min(pos, HEAD)]
        return {
            "path_sha256": path_hash(self.path),
            "dev": info.dev,
            "ino": info.ino,
            "pos": pos,
            "head_len": len(head),
            "head_sha256": hashlib.sha256(head).hexdigest(),
        }

    def spans(self, taken: int) -> list[list[Any]]:
        """The bytes of each file whose lines are among the first ``taken`` queued: ``[ino, first
        byte, byte after the last line, head]`` (``head``: the SHA-256 of its first :data:`HEAD`
        bytes, "" while fewer were read), one per file (a file truncated and read again from its
        start with the same head: the least and the greatest), the file of :meth:`checkpoint`
        last (up to its position); files opened after it are left out (none of their lines is
        taken). store/export_spans.py says what they are for."""
        self._prune(taken)
        if not self._marks or self._marks[0][0] > taken:
            return []
        _, info, pos = self._marks[0]
        files = list(self.files) if info in self.files else [info]  # more than MAX_SPANS: pruned
        out: dict[tuple[int, str], list[Any]] = {}
        for fi in files:
            end = pos if fi is info else fi.end
            head = hashlib.sha256(fi.head).hexdigest() if len(fi.head) >= HEAD else ""
            got = out.setdefault((fi.ino, head), [fi.ino, fi.start, end, head])
            got[1], got[2] = min(got[1], fi.start), max(got[2], end)
            if fi is info:
                break
        return list(out.values())


def valid(cp: Any) -> dict[str, Any] | None:
    """A checkpoint read back from the watch record, or None if it is not one."""
    if not isinstance(cp, dict) or set(cp) != set(_KEYS):
        return None
    if not isinstance(cp["path_sha256"], str) or not isinstance(cp["head_sha256"], str):
        return None
    ints = (cp["dev"], cp["ino"], cp["pos"], cp["head_len"])
    if any(type(v) is not int or v < 0 for v in ints) or cp["head_len"] > min(cp["pos"], HEAD):
        return None
    return cp


def matches(f: BinaryIO, cp: dict[str, Any], *, same_dev: bool = True) -> str:
    """Why ``f`` is not the file of checkpoint ``cp`` ("" when it is). ``same_dev`` False (a
    checkpoint of an earlier boot): the device number may have changed (a btrfs or overlay
    mount numbered anew at boot); the inode and the first bytes still must not."""
    try:
        st = os.fstat(f.fileno())
        if st.st_ino != cp["ino"] or (same_dev and st.st_dev != cp["dev"]):
            return "another file is at the path (rotated or re-created)"
        if st.st_size < cp["pos"]:
            return "the file is shorter than the stored position (truncated)"
        head = os.pread(f.fileno(), cp["head_len"], 0)
    except OSError as e:
        return f"cannot read it: {e.strerror}"
    if len(head) != cp["head_len"] or hashlib.sha256(head).hexdigest() != cp["head_sha256"]:
        return "its first bytes changed (truncated and rewritten)"
    return ""
