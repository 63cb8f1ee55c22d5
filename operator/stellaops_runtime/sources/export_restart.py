"""The export follower's restart side: where a restarted agent reads on, and the hole before it.

Split from :mod:`stellaops_runtime.sources.tetragon_export` (the follower's loop, a mixin of
it: the attributes are the source's). The node's watch record (agent/watch_record.py) hands
the last agent's moment (``resume_outage``) and export checkpoint (``resume_checkpoint``,
agent/export_resume.py); when the first file is opened, :meth:`RestartResume._resume_at`
seeks to the checkpoint if the file is still the checkpoint's file, or reads first the
checkpoint's file rotated beside the path while no agent ran; the agent takes the hole
(``take_outage``) as an outage up to the moment the file was opened, or to the checkpoint's
moment when it was resumed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, BinaryIO

from stellaops_runtime.hotsymbols.clock_span import boot_of, now_pair
from stellaops_runtime.sources.event_hold import CACHE_HOLD_NS
from stellaops_runtime.sources.export_checkpoint import matches, path_hash
from stellaops_runtime.sources.export_files import TAIL, bytes_before, find_rotated, ident
from stellaops_runtime.sources.export_position_wait import PositionWait
from stellaops_runtime.sources.export_store import NONE, STORE
from stellaops_runtime.sources.open_outage import OpenOutage
from stellaops_runtime.sources.payload_times import event_time_span

log = logging.getLogger("stellaops_runtime.sources.tetragon_export")

# How long an ``exportFromStart`` replay waits for the store to say whether an agent ran on the
# node before (no usable watch record), unless ``tetragon.exportHistoryWaitSeconds`` says. Past
# it the file is read from where it ended when opened, never replayed: a gap is honest, a line
# counted twice is not.
HISTORY_WAIT_SECONDS = 10.0


class RestartResume(PositionWait):
    """The restart side of the export follower (a mixin of ``TetragonExportSource``); the wait
    for the store's export position is its base's (sources/export_position_wait.py)."""

    from_start: bool
    alive_ns: int
    _tail: bytes
    _cur_id: tuple[int, int]
    _next: list[tuple[BinaryIO, tuple[int, int]]]
    _outage: OpenOutage
    _opened_at: tuple[int, int]
    history_wait: float
    # No usable watch record: whether an earlier agent ran on the node is asked of the store
    # (agent/node_history.py); None until it answers.
    _history_asked: bool = False
    _history: bool | None = None
    _had_checkpoint = False  # the record held a checkpoint (used or not)
    _history_late = False  # the store did not answer in time: the file was replayed anyway
    _first_line = False  # the first file is read from its start: its first line is kept ...
    _first_payload: bytes | None = None  # ... here (sources/export_lines.py), for :meth:`take_outage`
    _replay_line: bytes | None = None  # ... and here, for :meth:`replay_floor`
    _floor: tuple[int, int] | None = None

    # The node's watch record and the hole since the last agent (agent/watch_record.py, outages.py).

    def watching_ns(self) -> int | None:
        """The last moment every complete line written before it was queued; None while no file is open."""
        return self.alive_ns if self.stats.connected and self.alive_ns else None

    def resume_outage(self, from_ns: int, from_boot: int | None = None) -> None:
        """Nobody watched since ``from_ns`` (boottime ``from_boot``; the last agent's record): a gap
        until the file is opened, unless it is resumed at the last agent's checkpoint."""
        self._outage.resume(from_ns, from_boot)

    def resume_checkpoint(self, cp: dict[str, Any], moment: tuple[int, int] | None) -> None:
        """The last agent stored the counts of every line before ``cp`` (sources/export_checkpoint.py)
        and none after it; the lines before it it may have stored were written before ``moment``
        (wall, boottime ns). If the file at the path is still that file, it is read from there and
        the gap since that agent ends at ``moment`` (none when nothing was in doubt). ``moment``
        None: the checkpoint is of an earlier boot; the file is read from there, the gap stays
        until the file is opened (its device number may differ after a reboot: its inode and
        first bytes must not)."""
        self._resume = (cp, moment)

    def _resume_at(self, f: BinaryIO) -> tuple[BinaryIO, bool, tuple[int, int] | None]:
        """Seek ``f`` to the checkpoint if it is its file: (the file to read first, resumed, the
        moment the gap then ends; None: when the file is opened). The checkpoint's file rotated
        beside the path while no agent ran is read first from there, then ``f`` from its start
        (sources/export_files.py ``find_rotated``)."""
        if self._resume is None:
            return f, False, None
        cp, moment = self._resume
        self._resume = None
        self._had_checkpoint = True
        stored = False  # resumed at the store's position: another agent's, of another path maybe
        if self._position_wait:
            how, found, why = self._weigh(f, cp, moment)
            if how == NONE:
                self._had_checkpoint = False  # exportFromStart too: from its end, never its start
                log.warning(
                    "export file %s is not resumed (%s): read from where it ended when this agent "
                    "opened it, the time since the last agent until then is a gap", self.path, why,
                )  # fmt: skip
                return f, False, None
            if how == STORE:
                (cp, moment), stored = found, True
                log.warning(
                    "another agent of this node stored counts of export file %s past this agent's "
                    "record (the store's export position) and stopped with every count stored: read "
                    "on from there, not from the record",
                    self.path,
                )  # fmt: skip
                if moment is not None:  # every line before it is stored: no gap (store_doc's module)
                    self._outage.forget()
                    moment = now_pair()
        other = not stored and cp["path_sha256"] != path_hash(self.path)
        why = "it was written for another path" if other else matches(f, cp, same_dev=moment is not None)
        if other and _same_inode(f, cp, same_dev=moment is not None):
            # The file that agent followed under another name (exportFile changed: /var/run for /run, a
            # hostPath mounted elsewhere): its lines up to the checkpoint are counted, and the store's
            # position was not weighed for this path, so it is never read from its start.
            self._had_checkpoint = False
            why = "it was written for another path naming this very file"
        rotated = (
            None
            if other or not why.startswith("another")
            else find_rotated(self.path, cp, f, same_dev=moment is not None, step_ns=_step_since(moment))
        )
        if rotated is not None:  # the path's file is read after it, from its start
            self._next.append((f, self._cur_id))
            f, self._cur_id = rotated, ident(rotated)
            log.warning(
                "export file %s was rotated since the last agent: reading the rotated file first", self.path
            )
            why = ""
        if why:
            log.warning(
                "export file %s is not resumed where the last agent's stored counts end (%s): "
                "read from its %s, the time since that agent is a gap",
                self.path, why, "start" if self.from_start and self._had_checkpoint else "end",
            )  # fmt: skip
            return f, False, None
        f.seek(cp["pos"])
        self._tail = bytes_before(f, cp["pos"], min(TAIL, cp["pos"])) or b""
        self.stats.resumed_at = cp["pos"]
        if moment is None:
            note = " (the node rebooted since: the time until now is a gap)"
        elif self._outage.start is None or moment[0] <= self._outage.start:
            note = ""
        else:
            note = " (the lines before it whose counts the last agent may not have stored are a gap)"
        log.warning(
            "export file %s resumed at byte %d, where the last agent's stored counts end: the lines "
            "written since are read, none counted twice%s", self.path, cp["pos"], note,
        )  # fmt: skip
        return f, True, moment

    def history_unknown(self) -> None:
        """The node's watch record is missing or was ignored: an ``exportFromStart`` replay waits
        for the store to say whether an earlier agent ran on the node (:meth:`history`)."""
        self._history_asked = True

    def history(self, known: bool) -> bool:
        """The store's answer: ``known``, it holds windows of the node (an earlier agent's). True if
        it opened a gap here: the store answered "a new node" after the wait for it ran out, so the
        lines written before the file was opened were not read (from the node's boot: every line
        of this boot, and no earlier window of the node to make an earlier day look watched)."""
        self._history = known
        if not self._history_late:
            return False
        if known:
            log.warning(
                "the store answered late: it holds windows of this node, so an earlier agent watched "
                "it; %s was read from where it ended when opened, none of its lines counted twice",
                self.path,
            )  # fmt: skip
            return False
        wall, boot = now_pair()
        self._outage.resume(wall - boot, 0)
        log.warning(
            "the store answered late: it holds no window of this node (its first agent), but "
            "exportFromStart was refused while it could not tell: the lines of %s written before it "
            "was opened were not read, and the time from the node's boot until then is a gap",
            self.path,
        )  # fmt: skip
        return True

    async def _replays(self, stop: asyncio.Event) -> bool | None:
        """``exportFromStart`` with no checkpoint used: read the file whole (True) only if no earlier
        agent of the node may have counted its lines, else from its end (False: no line counted
        twice; the time since that agent is a gap), and so when the store cannot tell in time
        (``history_wait``: :data:`HISTORY_WAIT_SECONDS` unless configured). None: stopped while
        waiting for the store."""
        if self._history_asked:
            until = time.monotonic() + self.history_wait
            while self._history is None:
                if stop.is_set():
                    return None
                if time.monotonic() > until:  # the store is down: nothing says the node is new
                    self._history_late = True
                    log.warning(
                        "exportFromStart: the store did not say within %gs whether an agent ran on "
                        "this node before (no usable watch record): %s is read from where it ended "
                        "when opened, not from its start, so no line an earlier agent counted is "
                        "counted again; the hole before is a gap, from a start the store tells once "
                        "it answers (node_history_unknown is 1 until then)",
                        self.history_wait, self.path,
                    )  # fmt: skip
                    return False
                self.stats.last_error = (
                    f"exportFromStart: waiting for the store to tell whether an agent ran on this "
                    f"node before reading {self.path} from its start"
                )
                await asyncio.sleep(self.poll_interval)
            earlier = self._history
        else:  # a watch record without a checkpoint: another source's, an older agent's (a checkpoint
            # of another file: this one was not read by that agent, and is read whole)
            earlier = self._outage.start is not None and not self._had_checkpoint
        if earlier:
            log.warning(
                "exportFromStart: an earlier agent watched this node, and nothing says where its "
                "counted lines of %s end: read from its end, not its start (none counted twice); "
                "the time since that agent is a gap", self.path,
            )  # fmt: skip
        return not earlier

    def _first_unwatched(self, *, from_top: bool) -> None:
        """The first file, not resumed at a checkpoint: nobody watched before it. Read from its end,
        the event cache's hold (sources/event_hold.py) before the opening is a gap (lines written
        after it are stamped up to that far back); read from its start, the hold on either side of
        its first line's stamp (:meth:`take_outage`), never the file's time up to the opening."""
        if from_top:
            self._first_line = True
            return
        wall, boot = self._opened_at
        self._outage.resume(wall - CACHE_HOLD_NS, max(0, boot - CACHE_HOLD_NS))

    @property
    def first_span_due(self) -> bool:
        """The span about the first line of a file read from its start is known and not taken yet: the
        next drain marks it before it takes that line's counts (agent/draining.py ``_mark_outages``)."""
        return self._first_payload is not None

    def take_outage(self) -> tuple[int, int] | None:
        """The hole since the last agent, as (start, end) wall ns, once; piecewise until the file
        opens. A wall-clock step inside it widens the span to hold both sides (hotsymbols/clock_span.py).
        The span about the first line of a file read from its start (:meth:`_first_unwatched`) joins it."""
        if self._deciding:  # resumed or not, the hole ends at a moment the store's answer tells
            return None
        span = self._outage.take(self._opened_at if self.stats.connects else None)
        line, self._first_payload = self._first_payload, None
        if line is not None:
            now = time.time_ns()  # a line with no time, or one ahead of the clock: its arrival
            at = min((event_time_span([line], json_lines=True, now_ns=now) or (now, now))[0], now)
            first = (at - CACHE_HOLD_NS, min(at + CACHE_HOLD_NS, now))
            span = first if span is None else (min(span[0], first[0]), max(span[1], first[1]))
        return span

    def replay_floor(self) -> tuple[int, int] | None:
        """The earliest moment (wall, boottime ns; the boottime 0 for a moment before the boot) a
        line of the first file read from its start may carry: its first line's time less the event
        cache's hold, as for the span about it (:meth:`take_outage`); the node's boot when that
        line holds no time, or one ahead of the clock (NUL bytes left by a copytruncate rotation, a
        line cut by a crash: its arrival, this agent's time, is after every line of the file; the
        boot is the earliest time the node's clock vouches for). None: no file read from its start,
        or no line of it read.

        A replay's lines were written before this agent started: while no flush has claimed them
        stored, the node's watch record keeps this moment, not the agent's start, so the next
        agent's gap holds every line whose counts may be lost (agent/watch_record.py ``_latest``)."""
        line = self._replay_line
        if self._floor is None and line is not None:
            wall_now, boot_now = now_pair()
            span = event_time_span([line], json_lines=True, now_ns=wall_now)
            if span is None or span[0] > wall_now:  # s47/rex: its arrival left the older lines out
                self._floor = (wall_now - boot_now, 0)
            else:
                wall = span[0] - CACHE_HOLD_NS
                self._floor = (wall, max(0, boot_of(wall)))
        return self._floor

    def forget_outage(self) -> None:
        self._outage.forget()


def _same_inode(f: BinaryIO, cp: dict[str, Any], *, same_dev: bool) -> bool:
    """Whether ``f`` is the file of checkpoint ``cp`` by its inode (and device, on the same boot)."""
    try:
        st = os.fstat(f.fileno())
    except OSError:
        return True  # not known: taken as that file (never read from its start)
    return st.st_ino == cp["ino"] and (not same_dev or st.st_dev == cp["dev"])


def _step_since(moment: tuple[int, int] | None) -> int | None:
    """How far the wall clock stepped (either way) since ``moment`` (wall, boottime ns) of this
    boot, measured against the boot clock; None: unknown (no moment: another boot's record)."""
    if moment is None:
        return None
    wall, boot = now_pair()
    return abs((wall - moment[0]) - (boot - moment[1]))
