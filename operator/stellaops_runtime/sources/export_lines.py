"""The export file's bytes as lines for the queue: split, held while the queue is full, cut when too long.

Split from :mod:`stellaops_runtime.sources.tetragon_export` (which follows the file across
rotations and truncations): this is what happens to the bytes read. Each complete line goes to
the EventQueue undecoded, with the file offset just after it (the export checkpoint,
sources/export_checkpoint.py); a full queue makes the reader wait, never drop a line; a line
longer than :data:`~stellaops_runtime.sources.export_files.MAX_LINE` is read through and dropped
(a drop in the metrics and a gap), never held whole.
"""

from __future__ import annotations

import asyncio
import logging

from stellaops_runtime.sources.export_checkpoint import ExportPositions
from stellaops_runtime.sources.export_files import MAX_LINE, TAIL
from stellaops_runtime.sources.export_stats import ExportStats
from stellaops_runtime.sources.queue import EventQueue

log = logging.getLogger("stellaops_runtime.sources.tetragon_export")


class ExportLines:
    """Lines of the export file on their way to the queue (mixed into the export source)."""

    path: str
    queue: EventQueue
    stats: ExportStats
    positions: ExportPositions
    poll_interval: float
    _buf: bytearray
    _skipping: bool
    _tail: bytes
    _pending: list[bytes]
    _ends: list[int]
    _first_line: bool  # the first file is read from its start: its first line is kept (export_restart.py)
    _first_payload: bytes | None
    _replay_line: bytes | None  # ... and kept for the watch record's moment (export_restart.py replay_floor)

    def _look(self) -> None:
        raise NotImplementedError

    def _feed(self, data: bytes, at: int) -> None:
        """Split what was read at file offset ``at`` into lines (each with the offset after it).

        Inside a line over :data:`MAX_LINE` nothing is kept until its newline: at most
        ``MAX_LINE`` plus one read of a line is ever held."""
        self._tail = (self._tail + data)[-TAIL:] if len(data) < TAIL else data[-TAIL:]
        if self._skipping:
            nl = data.find(b"\n")
            if nl < 0:
                return
            self._skipping = False
            data, at = data[nl + 1 :], at + nl + 1
        buf = self._buf
        base = at - len(buf)  # the file offset of buf[0]
        buf += data
        start = 0
        out, ends = self._pending, self._ends
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if nl > start:
                out.append(bytes(buf[start:nl]))
                ends.append(base + nl + 1)
            start = nl + 1
        del buf[:start]
        self.stats.longest_held = max(self.stats.longest_held, len(buf))
        if len(buf) > MAX_LINE:  # once per line: the rest of it is read through, never held
            self.stats.oversized_lines += 1
            # An event nobody counts: a drop in the metrics and a gap, never a silent loss.
            self.queue.drop_oversize()
            log.warning(
                "dropping a line longer than %d bytes in %s (read through to its end, not held)",
                MAX_LINE, self.path,
            )  # fmt: skip
            buf.clear()
            self._skipping = True

    async def _queue_lines(self, stop: asyncio.Event) -> bool:
        """Queue the lines read, waiting while the queue has no room; False if stopped meanwhile."""
        lines, q = self._pending, self.queue
        i = 0
        try:
            while i < len(lines):
                if not q.has_room(len(lines[i])):
                    self.stats.queue_waits += 1
                    while not q.has_room(len(lines[i])):
                        if stop.is_set():
                            return False
                        self._look()  # a rotation meanwhile: its file is held open
                        await q.wait_room(self.poll_interval)
                q.put(lines[i])
                if self._first_line:
                    self._first_line, self._first_payload = False, lines[i]
                    self._replay_line = lines[i]
                self.positions.queued(self._ends[i])
                self.stats.lines += 1
                i += 1
        finally:
            del lines[:i]
            del self._ends[:i]
        return True

    def _flush_partial(self, end: int) -> None:
        if self._buf and not self._skipping:
            self._pending.append(bytes(self._buf))
            self._ends.append(end)
        self._buf.clear()
        self._skipping = False
