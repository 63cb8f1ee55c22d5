"""The export source's checkpoints in the node's watch record: a restart neither recounts nor skips.

Split from :mod:`stellaops_runtime.agent.watch_record` (the record's file and its times). The
JSON export file keeps the lines no agent has read, so the next agent reads them instead of
marking the hole as a gap, starting exactly after the last line whose counts are stored
(sources/export_checkpoint.py says what a checkpoint is). The record keeps two:

- ``in_flight``: written when a drain is handed to the pipeline thread (before its rows can reach
  the store), with that moment: the lines up to it may be stored from then on;
- ``committed``: written once the flush that started with that drain stored everything (or a
  graceful shutdown stored or spooled every count): the lines up to it are stored.

At start the next agent resumes at ``in_flight`` when there is one (the lines between the two
may or may not be counted: the time since the record's moment up to the in-flight moment is a
gap, never a doubled count), else at ``committed`` with no gap at all; either only if the
export file at the path is still that file. After a node reboot (a record of another boot,
its file kept on a persistent hostPath) the file is read on from there too, but the whole
hole stays a gap (nobody watched the node while it booted). A record whose checkpoints are
not well formed is not used for resuming (the hole is a gap, as without checkpoints); a
well-formed in-flight checkpoint whose moment precedes the record's or cannot be read is used,
the gap then starting at the node's boot (:func:`resume_export`).

``in_flight`` is written durably (fsync) before the drain's rows can reach the store, and a
drain whose entry cannot be written is held (agent/watch_record.py ``drain_starts``): the
record on disk never names a position before rows already stored.

The record is this agent's, beside its ``store.spoolPath``: another agent of the node with
another spool path may have counted lines past it since. So every batch frozen for the store
carries where the lines taken so far end (:meth:`ExportResume.store_position`), written with
its counts (store/export_position.py), and a checkpoint handed to the source is weighed
against the store's row before it is used (:meth:`ExportResume.store_opened`,
sources/export_store.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from stellaops_runtime.boot_id import this_boot
from stellaops_runtime.hotsymbols.clock_span import boot_ns, now_pair
from stellaops_runtime.sources.export_checkpoint import valid

log = logging.getLogger("stellaops_runtime.agent.watch_record")


class ExportResume:
    """The checkpoints of the export source this agent follows (nothing for other sources)."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue  # sources/queue.py EventQueue: ``enqueued`` and ``len()``
        self.positions: Any = None  # sources/export_checkpoint.py ExportPositions of the source
        self.committed: dict[str, Any] | None = None
        self.in_flight: dict[str, Any] | None = None  # {"checkpoint", "at_ns", "at_boot"}
        self._flush: tuple[int, dict[str, Any] | None] = (-1, None)  # (taken, checkpoint) at flush start
        self.held = 0  # drains held since the last one handed over (their checkpoint not recorded)
        self.holds = 0  # drains ever held (``export_drains_held_total``)
        self.holds_at_flush = 0
        self.source: Any = None
        # A checkpoint was handed to the source: the node's export position in the store is read
        # first (store/export_position.py), on the store's opening thread, before it is used.
        self.wants_store = False
        self.store_read = False

    def attach(self, source: Any) -> None:
        self.source = source
        self.positions = getattr(source, "positions", None)

    @property
    def awaits_position(self) -> bool:
        """The source waits for the store's export position of the node (the store is opened
        again until it answers, as for agent/node_history.py)."""
        return self.wants_store and not self.store_read

    def ask_store(self, record_agent: str) -> None:
        """The checkpoint handed to the source is weighed against the store's position
        (sources/export_store.py); ``record_agent``: the agent that wrote the record."""
        unknown = getattr(self.source, "store_position_unknown", None)
        self.wants_store = unknown is not None and bool(unknown(record_agent))

    def store_opened(self, db: Any, node: str) -> None:
        """On the store's opening thread: read the node's export position for the source
        (raises what the driver raises: the store is not usable yet). Only once the source holds
        the export lock: read before, it could miss the last flush of an agent holding it then
        (which keeps the lock until that flush stored its counts and position); the source is
        then given the call to read it itself (sources/export_position_wait.py ``position_reader``)."""
        if not self.awaits_position:
            return
        from stellaops_runtime.store.export_position import read_position
        from stellaops_runtime.store.export_spans import read_spans

        def read() -> Any:  # the row, and every agent's stored spans of the node (export_spans.py)
            try:
                return read_position(db, node), read_spans(db, node)
            except Exception:
                self.store_read = False  # a store opened again reads it here again
                raise

        held = getattr(self.source, "position_lock_held", None)
        if held is not None and not held():  # read by the source itself once it holds the lock
            self.store_read = True
            self.source.position_reader(read)
            return
        row, spans = read_position(db, node), read_spans(db, node)
        self.store_read = True
        self.source.store_position(row, spans)

    def store_position(self, node: str, agent_id: str) -> dict[str, Any] | None:
        """Where the lines taken from the queue so far end (so the counts of any batch frozen now
        end there at the latest), with this moment: written with each of that batch's
        transactions (store/pending.py ``position_of``, store/export_position.py). None: not
        an export source, or no file yet."""
        taken = self._taken()
        cp = self._checkpoint(taken)
        if cp is None or "\0" in node:
            return None
        wall, boot = now_pair()
        # The bytes of each file its counts may cover: written with them, kept in a spool file and
        # checked at its replay (store/export_spans.py); the row itself keeps none of them.
        spans = self.positions.spans(taken)
        return {"node": node, "agent_id": agent_id, "checkpoint": cp, "at_ns": wall, "at_boot": boot,
                "boot_id": this_boot(), "spans": spans}  # fmt: skip

    def doc(self) -> dict[str, Any] | None:
        if self.committed is None and self.in_flight is None:
            return None
        return {"committed": self.committed, "in_flight": self.in_flight}

    def _taken(self) -> int:
        return int(self.queue.enqueued - len(self.queue))

    def _checkpoint(self, taken: int) -> dict[str, Any] | None:
        return self.positions.checkpoint(taken) if self.positions is not None else None

    def drain_starts(self) -> dict[str, Any] | None:
        """A drain is to be handed to the pipeline thread now: the in-flight entry the record must
        hold first (None: nothing to record). The caller sets it with :meth:`recorded` once the
        record holds it, or holds the drain (:meth:`drain_held`)."""
        cp = self._checkpoint(self._taken())
        if cp is None or cp == self.committed:
            return None
        if self.in_flight is not None and self.in_flight["checkpoint"] == cp:
            return None
        wall, boot = now_pair()
        return {"checkpoint": cp, "at_ns": wall, "at_boot": boot}

    def recorded(self, in_flight: dict[str, Any] | None) -> None:
        """The drain goes ahead: its in-flight entry (if any) is in the record on disk."""
        if in_flight is not None:
            self.in_flight = in_flight
        self.held = 0

    def drain_held(self) -> None:
        """The record could not be written: the drain is held, its counts stay in the aggregator."""
        self.held += 1
        self.holds += 1

    def flush_starts(self, taken: int) -> None:
        self._flush = (taken, self._checkpoint(taken))
        self.holds_at_flush = self.holds

    def flushed(self, taken: int, ok: bool) -> bool:
        """The flush that started at ``taken`` ended; True if the committed checkpoint moved.
        A drain held meanwhile kept counts of lines before ``taken`` out of it: nothing moves."""
        at, cp = self._flush
        self._flush = (-1, None)
        if self.holds != self.holds_at_flush:
            return False
        if not ok or at != taken or cp is None or cp == self.committed:
            return False
        self.committed = cp
        if self.in_flight is not None and self.in_flight["checkpoint"] == cp:
            self.in_flight = None  # nothing after it was drained meanwhile
        return True

    def final(self) -> bool:
        """A shutdown stored or spooled every count: every line taken is committed."""
        cp = self._checkpoint(self._taken())
        if cp is None or self.held:
            return False
        self.committed, self.in_flight = cp, None
        return True


def resume_export(
    source: Any,
    export: Any,
    alive: tuple[int, int | None],
    *,
    timed: bool = True,
    widen: Callable[[int, int], None] | None = None,
) -> bool:
    """Hand the last agent's checkpoint (its record's ``export``) to an export source; True if one
    was handed. ``alive``: the record's (wall, boottime) moment, where the gap starts.

    ``timed`` False: the record's moments cannot be used: it is of an earlier boot (a node
    reboot, its file kept on a persistent hostPath) or its time is further ahead of the clock
    than any step (a clock set far back since). Its latest checkpoint still says where the
    counted lines end, so the file is read on from there (no line counted twice, with
    ``exportFromStart`` too), but the gap is not shortened (after a reboot: nobody watched the
    node from its boot until the file is opened).

    With an in-flight entry only its checkpoint says where the stored rows may end (none past it: the
    entry is on disk before its drain's rows move): the file is resumed there when it is well formed,
    whatever the committed one is. Its moment ends the gap when it is a moment of this boot no earlier
    than the record's on the boot clock. One that precedes the record's there (an agent before s46 kept
    "now" with its first drain's entry; a wall clock stepped back between the two is no sign: the boot
    clock went on), or cannot be read, says the record's moment was no stored claim: the lines in doubt
    may be older, so the gap starts at the node's boot, which holds them all, however wide (and ends at
    the in-flight moment, or now when it cannot be read). A record not resumed (its checkpoints not well
    formed: an older agent's format, a damaged file) is read as one without checkpoints, the gap from
    its moment (every line written before it is stored), or from the node's boot when its in-flight
    moment makes that moment no stored claim.
    ``widen``: called with that start (wall, boottime 0) instead of ``source.resume_outage``."""
    if export is None or getattr(source, "resume_checkpoint", None) is None:
        return False
    if timed and alive[1] is None:
        return False
    cp = moment = None
    doubtful = False  # the record's moment is no stored claim: the gap starts at the node's boot
    if isinstance(export, dict) and set(export) == {"committed", "in_flight"}:
        inf = export["in_flight"]
        if inf is None:
            cp = valid(export["committed"])
        else:
            ok = isinstance(inf, dict) and set(inf) == {"checkpoint", "at_ns", "at_boot"}
            cp = valid(inf["checkpoint"]) if ok else None
            wall, boot = (inf["at_ns"], inf["at_boot"]) if ok else (None, None)
            if type(wall) is int and type(boot) is int and (not timed or 0 <= boot <= boot_ns()):
                moment = (wall, boot)  # another boot's (not timed): not used as a time (the gap stays whole)
            # On the boot clock only: a wall clock stepped back between the two (NTP) leaves a sane
            # record whose entry reads earlier on the wall clock; the gap's span is built on both.
            doubtful = timed and (moment is None or moment[1] < (alive[1] or 0))
    if cp is not None and not timed:
        source.resume_checkpoint(cp, None)
        return True
    if cp is not None and moment is None and not doubtful:  # committed, nothing in flight
        source.resume_checkpoint(cp, (alive[0], alive[1] or 0))
        return True
    if cp is not None:
        if doubtful:
            log.warning(
                "the watch record's checkpoint in flight has %s: the export file is resumed there "
                "(none of its lines counted twice), and the gap starts at the node's boot (the lines "
                "before it that may not be stored were written since)",
                "no moment of this boot" if moment is None else "a moment before the record's",
            )
            _gap_from_boot(source, widen)
        source.resume_checkpoint(cp, moment or now_pair())
        return True
    log.warning(
        "the watch record's export checkpoints are not well formed: not used, the hole is a gap%s",
        " from the node's boot (its checkpoint in flight has no moment after the record's)" * doubtful,
    )
    if doubtful:
        _gap_from_boot(source, widen)
    return False


def _gap_from_boot(source: Any, widen: Callable[[int, int], None] | None) -> None:
    """The hole since the last agent starts at the node's boot (the widest it can be on this boot)."""
    wall, boot = now_pair()
    if widen is not None:
        widen(wall - boot, 0)
    elif (resume_outage := getattr(source, "resume_outage", None)) is not None:
        resume_outage(wall - boot, 0)
