"""The watch record's fallback when there is no usable record: the store says whether an agent ran before.

Why this module exists: split from agent/watch_record.py (which reads the
record at start and keeps it at the last moment the agent both watched and
stored), it holds what the agent does when no usable record is left (missing,
ignored, or the spool file beside it set aside): the store is asked, as it
opens, for the node's latest window (agent/node_history.py; once retention
removed them all, for the records of the node it keeps), and the time
since it is handed to the source as a gap (from the node's boot when that
window is ahead of the clock); an agent that stops before the store ever
answered marks the time from the node's boot. Logs under the watch record's
logger, as agent/export_resume.py does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from stellaops_runtime.agent.export_resume import ExportResume
from stellaops_runtime.agent.node_history import RAN_WHEN_UNKNOWN
from stellaops_runtime.agent.watch_record_file import FUTURE_SKEW_NS, _iso
from stellaops_runtime.hotsymbols.clock_span import now_pair

log = logging.getLogger("stellaops_runtime.agent.watch_record")


class StoreAnswer:
    """Mixed into WatchRecord, which sets these attributes in its ``__init__``."""

    path: str
    node: str
    export: ExportResume
    restart_gaps: int
    restart_gap_seconds: float
    _asked: bool
    _told: bool
    _store_knows: int | None
    _store_answered: bool
    spool_window_ns: Callable[[], Any]
    spool_lost_since: Callable[[], Any]

    @property
    def awaits_store(self) -> bool:
        """No usable record, and the store has not said yet whether an agent ran on the node."""
        return self._asked and not self._store_answered

    def spool_lost(self) -> None:
        """The spool file left was set aside (agent/spool_keeper.py): its counts, after the last the
        store took, are lost; the gap starts at the node's latest stored window (:meth:`store_opened`),
        or at the earliest window a batch line that did not decode names when that is earlier
        (another agent of the spool path may have stored windows after the lost ones)."""
        self._asked = self._asked or not self._store_answered

    def _ask_store(self, source: Any) -> None:
        """No usable record: whether an agent ran on the node before is asked of the store as it
        opens (:meth:`store_opened`); an export source waits for it before replaying its file."""
        self._asked = True
        waiting = getattr(source, "history_unknown", None)
        if waiting is not None:
            waiting()

    def store_opened(self, store: Any) -> None:
        """On the store's opening thread, before this agent writes to it: read the node's latest
        window (agent/node_history.py). Raises StoreUnavailable if it cannot be read (the store
        is opened again later), so the answer is never "none" for a store that could not tell."""
        from stellaops_runtime.agent.node_history import last_window_ns, survivor_ns
        from stellaops_runtime.store.errors import StoreUnavailable

        try:  # the node's export position, for a checkpoint about to be used (agent/export_resume.py)
            self.export.store_opened(store.db, self.node)
        except Exception as e:
            raise StoreUnavailable(f"cannot read this node's export position: {e!r}") from e
        if not self._asked or self._store_answered:
            return
        try:
            stored = last_window_ns(store.db, self.node)
            if stored is None:  # retention may have removed every window: what it leaves says
                stored = survivor_ns(store.db, self.node)
        except Exception as e:
            raise StoreUnavailable(f"cannot read this node's earlier windows: {e!r}") from e
        known = [t for t in (stored, self.spool_window_ns()) if t is not None]
        since = max(known) if known else None
        lost = self.spool_lost_since()
        if lost is not None and (since is None or lost < since):
            since = lost  # a lost batch's windows, before the latest stored: the gap covers them
        self._store_knows = since
        self._store_answered = True

    def _tell(self, source: Any) -> bool:
        """Hand the store's answer to the source once (on the event loop); True if handed now."""
        if not self._store_answered or self._told:
            return False
        self._told = True
        since = self._store_knows
        if since == RAN_WHEN_UNKNOWN or (since is not None and since > time.time_ns() + FUTURE_SKEW_NS):
            # An earlier agent ran, and where its hole began is not known on this clock: the store's
            # windows are gone (retention) and what it keeps of the node names no moment, or that
            # agent's clock was ahead (stepped back since), as for a record ahead of the clock
            # (agent/watch_record_file.py). The time from the node's boot is the gap.
            wall, boot = now_pair()
            source.resume_outage(wall - boot, 0)
            self.restart_gaps += 1
            self.restart_gap_seconds = boot / 1e9
            if since == RAN_WHEN_UNKNOWN:
                log.warning(
                    "no usable watch record, and the store holds no window of node %s but a record "
                    "that an earlier agent ran on it, with no moment: the time from the node's boot "
                    "at %s is a gap",
                    self.node, _iso(wall - boot),
                )  # fmt: skip
            else:
                log.warning(
                    "no usable watch record, and the store holds a window of node %s starting at %s, "
                    "ahead of the clock (it was stepped back since an earlier agent wrote it): the "
                    "windows cannot say where the hole since that agent began, so the time from the "
                    "node's boot at %s is a gap",
                    self.node, _iso(since), _iso(wall - boot),
                )  # fmt: skip
        elif since is not None:
            # A window up to FUTURE_SKEW_NS ahead (two clocks a little apart) is taken as now, as a
            # record's moment is (agent/watch_record_file.py): the gap never reaches the future.
            wall, boot = now_pair()
            if since <= wall:
                source.resume_outage(since, None)
            else:
                source.resume_outage(wall, boot)
            self.restart_gaps += 1
            self.restart_gap_seconds = max(0, time.time_ns() - since) / 1e9
            log.warning(
                "no usable watch record or spool file, but the store's records of node %s (its "
                "windows, or once retention removed them its export position or proof of life) "
                "reach %s: an earlier agent watched it, and the time since is a gap",
                self.node, _iso(since),
            )  # fmt: skip
        else:
            # Its first stream still gets events stamped before it opened (Tetragon's event cache),
            # whose rows would claim time nobody watched: the source marks that hold as a gap.
            first = getattr(source, "first_agent", None)
            if first is not None:
                first()
            log.info("the store holds no window of node %s: the first agent on this node", self.node)
        told = getattr(source, "history", None)
        if told is not None and told(since is not None):  # a gap of the lines it did not replay
            self.restart_gaps += 1
        return True

    @property
    def unclaimable(self) -> bool:
        """Asked, and the answer not handed to the source yet: the hole it opens starts before any
        watching moment, so no flush may claim one (agent/watch_record.py ``flush_starts``)."""
        return self._asked and not self._told

    def unanswered_at_stop(self, source: Any) -> None:
        """At shutdown, before the last outage is marked: the store never said whether an agent
        ran on the node before (down for this agent's whole life). The record this agent leaves
        starts the next agent's gap at this agent's own moment, and no later agent asks the store,
        so the hole before this agent would never be a gap: it is marked now, from the node's
        boot (the widest it can be on this boot), and stored or spooled with the last drain. An
        answer not handed to the source yet (it came after the last tick) is handed now."""
        if self._store_answered:
            self._tell(source)
        if not self._asked or self._store_answered or self._told or not self.path:
            return
        self._told = True
        wall, boot = now_pair()
        source.resume_outage(wall - boot, 0)
        self.restart_gaps += 1
        log.warning(
            "the store never said whether an agent ran on node %s before (no usable watch record): "
            "the time from the node's boot at %s until this agent watched is recorded as a gap",
            self.node, _iso(wall - boot),
        )  # fmt: skip
