"""Tetragon JSON export source: follow the export file, across rotations.

For nodes where the gRPC port is not reachable, Tetragon's JSON exporter
still writes one event per line to a file (default
``/var/run/cilium/tetragon/tetragon.log``) and rotates it by renaming the
file and starting a new one at the same path. This source follows that path
like ``tail -F``: it reads to the end of the current file, notices when the
path names a new file (rotation) or the file shrank (truncation), finishes
the old one and continues with the new one from its first byte.

Lines go to the EventQueue undecoded; the pipeline decodes them. Unlike a gRPC
stream, the file keeps what the agent has not read yet, so a full queue makes
the reader wait rather than drop lines (``queue_waits``; the bytes read become
lines in sources/export_lines.py). A path that cannot be
followed (a directory, a FIFO or device, a file the agent may not read) is
retried with a logged reason and never stops the agent.

A restarted agent resumes where the last agent's stored counts end when the node's watch record
(agent/watch_record.py) holds a checkpoint of the file still at the path
(sources/export_checkpoint.py, agent/export_resume.py), or of the file rotated beside it once
meanwhile (sources/export_restart.py): the lines written while no agent ran are read, none is
counted twice, and never before where the store says another agent of the node stored counts of it
(sources/export_store.py). Otherwise it starts at the file's end (unless ``exportFromStart``), so
the lines written while no agent ran are never read: like the gRPC source, this source gives the
watch record its watching moment (``watching_ns``: the last time it had read every complete line
written before) and takes the hole since the last agent (``resume_outage``) as an outage up to the
moment it opened the file (``take_outage``), a node-wide gap.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import time
from typing import Any, BinaryIO

from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources.export_checkpoint import ExportPositions
from stellaops_runtime.sources.export_files import CHUNK, SeenFiles, bytes_before, fs_type, made_as_read
from stellaops_runtime.sources.export_lines import ExportLines
from stellaops_runtime.sources.export_lock import ExportLock
from stellaops_runtime.sources.export_restart import HISTORY_WAIT_SECONDS, RestartResume
from stellaops_runtime.sources.export_stats import ExportStats
from stellaops_runtime.sources.open_outage import OpenOutage
from stellaops_runtime.sources.queue import EventQueue

log = logging.getLogger(__name__)

MAX_NEXT = 64  # files rotated in while the current one is still being read, held open until read


class TetragonExportSource(ExportLines, RestartResume):
    """Follows a Tetragon JSON export file and queues each line."""

    name = "tetragon-export"

    def __init__(
        self,
        path: str,
        *,
        queue: EventQueue,
        from_start: bool = False,
        poll_interval: float = 0.1,
        history_wait: float = HISTORY_WAIT_SECONDS,
    ) -> None:
        self.path = path
        self.queue = queue
        self.from_start = from_start
        self.history_wait = history_wait  # tetragon.exportHistoryWaitSeconds
        self.poll_interval = poll_interval
        self.stats = ExportStats()
        self._buf = bytearray()
        self._skipping = False  # inside an oversized line
        self._tail = b""  # the last bytes read, just before the read position ("" unknown)
        self._seen = SeenFiles()  # positions of files left at rotations (a path pointed back at one)
        self._cur_id = (0, 0)  # (dev, ino) of the file being read
        self._next: list[tuple[BinaryIO, tuple[int, int]]] = []  # files that came later, in order
        self._look_warned = ""
        self._read_warned = ""  # a read failing on every poll is logged once per reason
        self._pending: list[bytes] = []  # complete lines not queued yet (the queue was full)
        self._ends: list[int] = []  # the file offset just after each of them
        self.positions = ExportPositions(path, queue)  # where the queued lines end (a checkpoint)
        self._resume: tuple[dict[str, Any], tuple[int, int] | None] | None = None  # (checkpoint, moment)
        self._outage = OpenOutage()  # the hole since the last agent (sources/open_outage.py)
        self._opened_at = (0, 0)  # (wall, boottime) ns the first file was opened
        self.alive_ns = 0  # wall ns: every complete line written before it has been queued
        self.lock = ExportLock(path)  # one follower of the directory's files (sources/export_lock.py)
        self.keep_lock = False  # True: released by the agent after its last flush (agent/runner.py)

    async def run(self, stop: asyncio.Event) -> None:
        f = await self._open(stop, at_end=not self.from_start)
        if f is None:
            self._let_go()
            return
        try:
            while not stop.is_set():
                before = time.time_ns()
                self.lock.keep()  # a directory made again at the path: locked too (export_lock.py)
                self.stats.unguarded = self.lock.unguarded  # a refused lock may be taken later
                self._look()
                if self._tail and bytes_before(f, f.tell(), len(self._tail)) not in (self._tail, None):
                    self._truncated(f)
                try:
                    at = f.tell()
                    data = f.read(CHUNK)
                except OSError as e:
                    why = f"cannot read export file {self.path}: {e.strerror}"
                    self._read_warned = self._error("read_errors", why, self._read_warned)
                    await asyncio.sleep(self.poll_interval)
                    continue
                if data:
                    self.positions.read(f)
                    self._feed(data, at)
                    if not await self._queue_lines(stop):
                        return
                    if len(data) == CHUNK:
                        await asyncio.sleep(0)  # let the consumer run between big reads
                        continue
                self._look()
                if not self._buf and not self._next:  # every line written before is queued
                    self.alive_ns = before
                if self._next:  # the path names a later file: this one is finished
                    if not await self._finish(f, stop):
                        return
                    self._seen.leave(f, self._tail)
                    f.close()
                    f, self._cur_id = self._next.pop(0)
                    self._tail = self._seen.resume(f) or b""
                    self.positions.opened(f)
                    if self._tail:
                        log.warning("export file %s names a file read before: continuing there", self.path)
                    self.stats.rotations += 1
                    log.info("export file %s rotated; following the new file", self.path)
                    continue
                self._check_size(f)
                await asyncio.sleep(self.poll_interval)
        finally:
            f.close()
            for g, _ in self._next:
                g.close()
            self._next.clear()
            self.stats.connected = False
            self._let_go()

    def _let_go(self) -> None:
        """The lock goes, unless kept until the agent's last flush stored its counts and position."""
        if not self.keep_lock:
            self.lock.release()

    async def _finish(self, f: BinaryIO, stop: asyncio.Event) -> bool:
        """Queue the rest of a rotated file (read by chunks: it may be far behind); False if stopped."""
        while True:
            try:
                at = f.tell()
                rest = f.read(CHUNK)
            except OSError as e:
                self._error("read_errors", f"cannot read the rotated export file {self.path}: {e.strerror}")
                rest = b""
            if not rest:
                break
            self.positions.read(f)
            self._feed(rest, at)
            if not await self._queue_lines(stop):
                return False
            await asyncio.sleep(0)
        self._flush_partial(f.tell())
        return await self._queue_lines(stop)

    def _look(self) -> None:
        """Open a file newly at the path at once (a rotation), to be read after the current one: a
        second rotation before the current file is read to its end (the pipeline behind, the
        reader waiting for room) cannot take it away unread."""
        try:
            st = os.stat(self.path)
            if self._known((st.st_dev, st.st_ino)):
                return
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:  # renamed away and not recreated yet, or unreadable: looked at next time
            if not isinstance(e, FileNotFoundError):
                why = f"cannot open export file {self.path}: {e.strerror}"
                self._look_warned = self._error("open_errors", why, self._look_warned)
            return
        st = os.fstat(fd)
        ident = (st.st_dev, st.st_ino)
        if self._known(ident) or not stat.S_ISREG(st.st_mode) or made_as_read(fd, st):
            if not self._known(ident):
                why = f"export file {self.path} is {_kind(fd, st)}; still reading the last one"
                self._look_warned = self._error("open_errors", why, self._look_warned)
            os.close(fd)
            return
        if len(self._next) >= MAX_NEXT:  # never on Tetragon's rotation sizes: a drop and a gap
            old, _ = self._next.pop(0)
            old.close()
            self.queue.drop_oversize()
            log.warning("more than %d export files rotated in unread; the oldest is skipped", MAX_NEXT)
        self._next.append((os.fdopen(fd, "rb"), ident))

    def _known(self, ident: tuple[int, int]) -> bool:
        return ident == self._cur_id or any(i == ident for _, i in self._next)

    def _check_size(self, f: BinaryIO) -> None:
        try:
            size = os.fstat(f.fileno()).st_size
        except OSError:
            return
        if size < f.tell():
            self._truncated(f)

    def _truncated(self, f: BinaryIO) -> None:
        self.stats.truncations += 1
        log.info("export file %s was truncated; reading from its start", self.path)
        f.seek(0)
        self._buf.clear()
        self._skipping = False
        self._tail = b""
        self.positions.opened(f)

    async def _open(self, stop: asyncio.Event, *, at_end: bool) -> BinaryIO | None:
        warned = ""
        there = True  # the file was at the path when first looked at (else a later one: read whole)
        while not stop.is_set():
            if "\0" in self.path:  # open() would raise ValueError, not OSError: the task died unlogged
                why = f"cannot open export file {self.path!r}: the path holds a NUL byte"
                warned = self._error("open_errors", why, warned)
                await asyncio.sleep(self.poll_interval)
                continue
            try:
                if (taken := self.lock.take()) == "other":  # another agent follows the file
                    self.stats.other_agent = True
                    self.stats.last_error = f"another agent follows the export files in {self.lock.dir}"
                    await asyncio.sleep(self.poll_interval)
                    continue
                self.stats.unguarded = taken == "unguarded"  # no lock can be taken: said, not hidden
                if taken == "missing":
                    raise FileNotFoundError(self.path)
                # O_NONBLOCK: a FIFO at the path must not block the event loop in open().
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                if warned != "missing":
                    log.warning("export file %s does not exist yet; waiting for it", self.path)
                    warned = "missing"
                self.stats.missing_file_waits += 1
                self.stats.last_error = f"export file {self.path} does not exist"
                at_end = there = False  # everything in a file that appears later was written after we looked
                await asyncio.sleep(self.poll_interval)
                continue
            except OSError as e:
                reason = e.strerror or errno.errorcode.get(e.errno or 0, "error")
                why = f"cannot open export file {self.path}: {reason}"
                warned = self._error("open_errors", why, warned)
                await asyncio.sleep(self.poll_interval)
                continue
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or made_as_read(fd, st):
                kind = _kind(fd, st)
                os.close(fd)
                warned = self._error("open_errors", f"export file {self.path} is {kind}; waiting", warned)
                at_end = there = False  # it held no line: a regular file put there later is read whole
                await asyncio.sleep(self.poll_interval)
                continue
            f: BinaryIO = os.fdopen(fd, "rb")
            self._tail = b""
            self._cur_id = (st.st_dev, st.st_ino)
            resumed, moment = (False, None)
            if not self.stats.connects and self.lock.waited_since is not None:
                at_end = there = self._after_other_agent()
            waits = not self.stats.connects and self._resume is not None and self._position_wait
            if waits and await self._await_position(stop, f) is None:  # the store's position
                f.close()
                return None
            if not self.stats.connects:
                f, resumed, moment = self._resume_at(f)  # f: the rotated file it names, if so
            if not resumed and (at_end or there):
                moment = self._from_end(f)  # its end when opened, if it waited for the store
            first = not self.stats.connects
            if first:
                self._opened_at = moment or now_pair()  # lines written from here on are read
            self.stats.connected = True
            self.stats.connects += 1
            replays: bool | None = False
            if first and not resumed and not at_end and there:  # exportFromStart: a replay, unless ...
                replays = await self._replays(stop)  # may wait for the store (the file is open)
                if replays is None:
                    f.close()
                    self.stats.connected = False
                    return None
                if replays:
                    f.seek(0)
            if first and not resumed:  # nobody watched before it (sources/export_restart.py)
                self._first_unwatched(from_top=bool(replays) or not (at_end or there))
            self.positions.opened(f)
            self.stats.last_error = ""
            return f
        return None

    def _after_other_agent(self) -> bool:
        """This follower waited for another agent that followed the file: that agent read past any
        checkpoint of this agent's watch record, and nothing here says where its counted lines
        end, so the file is read from its end (never from its start or such a checkpoint), and
        the time since the wait began is a gap (it may not have counted every line of it)."""
        self.stats.other_agent = False
        wall, boot = self.lock.waited_since or now_pair()
        self._outage.resume(wall, boot)
        self._resume = None
        log.warning(
            "export file %s is read from its end: another agent followed it until now, and "
            "nothing says where its counted lines end; the time since this agent began waiting "
            "is a gap",
            self.path,
        )  # fmt: skip
        return True

    def _error(self, counter: str, why: str, warned: str = "") -> str:
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        self.stats.last_error = why
        if why != warned:
            log.warning("%s (retried every %gs)", why, self.poll_interval)
        return why


def _kind(fd: int, st: os.stat_result) -> str:
    """What a file at the export path that cannot be followed is, for the message."""
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    if stat.S_ISREG(st.st_mode) and made_as_read(fd, st):
        fs = fs_type(st.st_dev) or "unknown"  # a FUSE file system's size-0 file is refused too
        return f"a /proc or /sys file or like one (file system {fs}: made as it is read, no export file)"
    return "not a regular file"
