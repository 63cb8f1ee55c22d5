"""Tetragon JSON export source: follow the export file, across rotations.

For nodes where the gRPC port is not reachable, Tetragon's JSON exporter
still writes one event per line to a file (default
``/var/run/cilium/tetragon/tetragon.log``) and rotates it by renaming the
file and starting a new one at the same path. This source follows that path
like ``tail -F``: it reads to the end of the current file, notices when the
path names a new file (rotation) or the file shrank (truncation), finishes
the old one and continues with the new one from its first byte.

Lines go to the EventQueue undecoded; the pipeline decodes them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import BinaryIO

from stellaops_runtime.sources.queue import EventQueue

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_LINE = 64 << 20  # a longer line is dropped and counted


@dataclass(slots=True)
class ExportStats:
    lines: int = 0
    rotations: int = 0
    truncations: int = 0
    oversized_lines: int = 0
    missing_file_waits: int = 0
    connected: bool = False  # the file is open and being followed
    connects: int = 0  # times the file was opened (0: it never existed while we looked)
    last_error: str = ""
    reconnects: int = 0  # gRPC-source counters, always 0 here (same metrics for every source)
    stream_errors: int = 0


class TetragonExportSource:
    """Follows a Tetragon JSON export file and queues each line."""

    name = "tetragon-export"

    def __init__(
        self, path: str, *, queue: EventQueue, from_start: bool = False, poll_interval: float = 0.1
    ) -> None:
        self.path = path
        self.queue = queue
        self.from_start = from_start
        self.poll_interval = poll_interval
        self.stats = ExportStats()
        self._buf = bytearray()
        self._skipping = False  # inside an oversized line

    async def run(self, stop: asyncio.Event) -> None:
        f = await self._open(stop, at_end=not self.from_start)
        if f is None:
            return
        try:
            while not stop.is_set():
                data = f.read(CHUNK)
                if data:
                    self._feed(data)
                    if len(data) == CHUNK:
                        await asyncio.sleep(0)  # let the consumer run between big reads
                        continue
                switched = self._switched(f)
                if switched:
                    rest = f.read()  # whatever was written before the rename
                    if rest:
                        self._feed(rest)
                    self._flush_partial()
                    f.close()
                    if switched == "rotated":
                        self.stats.rotations += 1
                        log.info("export file %s rotated; following the new file", self.path)
                    new = await self._open(stop, at_end=False)
                    if new is None:
                        return
                    f = new
                    continue
                await asyncio.sleep(self.poll_interval)
        finally:
            f.close()
            self.stats.connected = False

    def _switched(self, f: BinaryIO) -> str:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return ""  # renamed away and not recreated yet: keep the old handle
        cur = os.fstat(f.fileno())
        if (st.st_ino, st.st_dev) != (cur.st_ino, cur.st_dev):
            return "rotated"
        if st.st_size < f.tell():
            self.stats.truncations += 1
            log.info("export file %s was truncated; reading from its start", self.path)
            f.seek(0)
            self._buf.clear()
        return ""

    async def _open(self, stop: asyncio.Event, *, at_end: bool) -> BinaryIO | None:
        warned = False
        while not stop.is_set():
            try:
                f = open(self.path, "rb")  # noqa: SIM115, ASYNC230 - closed by run(); a local open does not block
            except FileNotFoundError:
                if not warned:
                    log.warning("export file %s does not exist yet; waiting for it", self.path)
                    warned = True
                self.stats.missing_file_waits += 1
                self.stats.last_error = f"export file {self.path} does not exist"
                await asyncio.sleep(self.poll_interval)
                continue
            if at_end:
                f.seek(0, os.SEEK_END)
            self.stats.connected = True
            self.stats.connects += 1
            return f
        return None

    def _feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        start = 0
        put = self.queue.put
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if self._skipping:
                self._skipping = False
            elif nl > start:
                put(bytes(buf[start:nl]))
                self.stats.lines += 1
            start = nl + 1
        del buf[:start]
        if len(buf) > MAX_LINE:
            if not self._skipping:  # once per line, however many reads it spans
                self.stats.oversized_lines += 1
                # An event nobody counts: a drop in the metrics and a gap, never a silent loss.
                self.queue.drop_oversize()
                log.warning("dropping a line longer than %d bytes in %s", MAX_LINE, self.path)
            buf.clear()
            self._skipping = True

    def _flush_partial(self) -> None:
        if self._buf and not self._skipping:
            self.queue.put(bytes(self._buf))
            self.stats.lines += 1
        self._buf.clear()
        self._skipping = False
