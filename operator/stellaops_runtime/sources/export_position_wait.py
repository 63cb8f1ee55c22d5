"""The export follower's wait for the store's export position before it resumes at a checkpoint.

Split from :mod:`stellaops_runtime.sources.export_restart` (the restart side, whose base this
mixin is; the attributes are ``TetragonExportSource``'s). A restarted agent holding the last
agent's checkpoint (agent/export_resume.py) uses it only once the store has said where the
node's stored counts of the file end (store/export_position.py): :meth:`PositionWait._await_position`
waits for that answer for as long as waiting loses no line, and :meth:`PositionWait._weigh`
weighs the checkpoint against it (sources/export_store.py ``reconcile``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, BinaryIO

from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources.export_checkpoint import path_hash
from stellaops_runtime.sources.export_files import ident, line_end
from stellaops_runtime.sources.export_stats import ExportStats
from stellaops_runtime.sources.export_store import NONE, reconcile
from stellaops_runtime.store.threads import run_detached

log = logging.getLogger("stellaops_runtime.sources.tetragon_export")

# A resume waits for the store's export position of the node (sources/export_store.py) for as long
# as waiting loses nothing: the file at the path is the one opened (not rotated: the file opened
# is held, the lines of a file made after it would not be) and at most POSITION_WAIT_BYTES were
# written to it since (the lines the agent reads late). A store down while the agents restart (an
# upgrade rolling every node while PostgreSQL fails over) then costs a late start, not the
# resume. Past POSITION_WAIT_SECONDS the wait is said (logged once); when it ends unanswered, the
# file is read from where it ended when it was opened: every line written after this agent took
# the export lock is read (no other agent can have counted it), the hole before is a gap.
POSITION_WAIT_SECONDS = 60.0
POSITION_WAIT_BYTES = 64 << 20


class PositionWait:
    """The store-position side of the export follower's restart (a mixin of ``TetragonExportSource``)."""

    path: str
    stats: ExportStats
    poll_interval: float
    lock: Any  # sources/export_lock.py ExportLock
    _resume: tuple[dict[str, Any], tuple[int, int] | None] | None
    # The checkpoint is weighed against the node's export position in the store before it is
    # used (sources/export_store.py): asked (``_position_wait``), answered from the store's
    # opening thread (``_position_row``), by which agent the record was written.
    _position_wait = False
    _position_answered = False
    _position_row: Any = None
    _position_spans: Any = ()
    # Reads the row again from the event loop (a thread): the store opened before this follower
    # held the export lock (:meth:`position_reader`).
    _position_reader: Any = None
    _record_agent = ""
    _deciding = False  # waiting for that answer, the file open: the hole's end is not known yet
    # (file id, offset, moment): where the file opened ended before that wait (read from there
    # when it is not resumed); why the wait ended without an answer.
    _mark: tuple[tuple[int, int], int, tuple[int, int]] | None = None
    _gave_up = ""

    def store_position_unknown(self, record_agent: str) -> bool:
        """The checkpoint handed (:meth:`resume_checkpoint`) is used only once the store has said
        where the node's stored counts of the file end (:meth:`store_position`); False: not
        asked, the checkpoint is of another path (never resumed at: read as before)."""
        if self._resume is None or self._resume[0]["path_sha256"] != path_hash(self.path):
            return False
        self._position_wait, self._record_agent = True, record_agent
        return True

    def store_position(self, row: tuple[str, Any] | None, spans: Any = ()) -> None:
        """The store's answer (store/export_position.py ``read_position``; from another thread),
        with every agent's stored spans of the node (store/export_spans.py ``read_spans``)."""
        self._position_row, self._position_spans = row, spans
        self._position_answered = True

    def position_lock_held(self) -> bool:
        """This follower holds the export lock (asked from the store's opening thread)."""
        return bool(self.lock.held)

    def position_reader(self, read: Any) -> None:
        """The store opened before this follower held the export lock: a row read then may be older
        than the last flush of an agent that held it meanwhile (it keeps the lock until its last
        flush stored its counts and position), so ``read`` (a call reading the row, raising what
        the driver raises) is called once the lock is held, in :meth:`_await_position`."""
        self._position_reader = read

    async def _await_position(self, stop: asyncio.Event, f: BinaryIO) -> bool | None:
        """Wait for the store's export position while waiting loses nothing (:meth:`_waiting_loses`);
        False: it ended unanswered (nothing is resumed), None: stopped meanwhile."""
        self._mark = (ident(f), line_end(f), now_pair())  # later lines: written after the lock was taken
        f.seek(0)
        said: float | None = time.monotonic() + POSITION_WAIT_SECONDS
        reading: asyncio.Future[Any] | None = None  # the row read again, the lock held
        next_read = 0.0
        self._deciding = True  # the hole is not taken piecewise meanwhile: it may end at a moment past
        try:
            while not self._position_answered:
                if stop.is_set():
                    return None
                if reading is None and self._position_reader is not None and time.monotonic() >= next_read:
                    # a daemon thread: one hung in a black-holed store must not hold the exit
                    reading = run_detached(self._position_reader, name="store-position")
                if reading is not None and reading.done():
                    done: asyncio.Future[Any] = reading
                    reading = None
                    if done.exception() is None:
                        self.store_position(*done.result())
                        continue
                    next_read = time.monotonic() + 1.0  # the store is away again: read once a second
                self._gave_up = self._waiting_loses(f, self._mark[1])
                if self._gave_up:
                    return False
                if said is not None and time.monotonic() > said:
                    said = None
                    log.warning(
                        "the store has not said within %gs where this node's stored counts of export "
                        "file %s end: still waiting (the file keeps the lines) until it answers, the "
                        "file is rotated or %d MiB more are written to it",
                        POSITION_WAIT_SECONDS, self.path, POSITION_WAIT_BYTES >> 20,
                    )  # fmt: skip
                self.stats.last_error = (
                    f"waiting for the store to tell where this node's stored counts of {self.path} end"
                )
                await asyncio.sleep(self.poll_interval)
            return True
        finally:
            self._deciding = False
            if reading is not None:  # stopped or given up while reading: its outcome is not used
                reading.add_done_callback(lambda r: r.cancelled() or r.exception())

    def _waiting_loses(self, f: BinaryIO, at: int) -> str:
        """Why waiting longer for the store would lose lines or hold too many ("": it does not)."""
        try:
            st, size = os.stat(self.path), os.fstat(f.fileno()).st_size
        except OSError:
            return "the file was rotated away while this agent waited for the store"
        if (st.st_dev, st.st_ino) != ident(f):
            return "the file was rotated while this agent waited for the store"
        if size - at > POSITION_WAIT_BYTES:
            return f"more than {POSITION_WAIT_BYTES >> 20} MiB were written to it while this agent waited"
        return ""

    def _from_end(self, f: BinaryIO) -> tuple[int, int] | None:
        """Not resumed: read ``f`` from its end; from the end it had when opened if the follower
        waited for the store meanwhile (the lines written since were written after this agent took
        the export lock: no other agent counted them), then with that moment (the hole ends there)."""
        mark, self._mark = self._mark, None
        if mark is not None and mark[0] == ident(f):
            f.seek(mark[1])
            return mark[2]
        line_end(f)
        return None

    def _weigh(self, f: BinaryIO, cp: dict[str, Any], moment: tuple[int, int] | None) -> tuple[str, Any, Any]:
        """The record's checkpoint against the store's position (sources/export_store.py)."""
        if not self._position_answered:
            why = (
                f"the store did not say where this node's stored counts of it end before {self._gave_up} "
                "(another agent of the node may have counted past this record)"
            )
            return NONE, None, why
        row, spans = self._position_row, self._position_spans
        how, scp, smoment, why = reconcile(f, self.path, (cp, moment), row, self._record_agent, spans=spans)
        return how, (scp, smoment), why
