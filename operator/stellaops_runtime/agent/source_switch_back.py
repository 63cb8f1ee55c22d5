"""What the switch back from the native probes to Tetragon must not count again: the Overlap's inputs.

Split from :mod:`stellaops_runtime.agent.source_switch` (a mixin of ``SourceSwitch``: the
attributes are the switch's). Tetragon's event cache sends the first stream after the probes
events stamped while they ran (agent/source_switch_overlap.py). This part gathers what the probes
counted for that stream's Overlap:

- each load of the BCC period, from its attach (nothing is counted while BCC compiles): the one
  running at the switch back, and the earlier ones a reload or a failed run ended (``_note_load``;
  a reload, or the native source's own retry after an error, may change the attach list);
- the spans they did not read (``_bcc_unread`` and what is still pending);
- the loads of the previous BCC period (or of the last agent's) whose calls Tetragon's cache may
  still send when the next period starts: they are carried into it (``_carry_loads``), so the
  stream after it, and the loads file it writes, still skip them;
- for an agent restarted while the probes ran, or while Tetragon's cache may still send their
  calls after the switch back, the same kept on disk beside the watch record (``_persist_loads``
  on each tick while they run, ``_keep_loads`` at the switch back, ``_resume_loads`` at the next
  start: agent/source_switch_loads.py).

The overlap and loads modules are imported only when used: an agent that never runs the probes
imports neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from stellaops_runtime.agent.source_switch_stats import BCC, TETRAGON

if TYPE_CHECKING:
    from stellaops_runtime.agent.source_switch_overlap import Load, Overlap
    from stellaops_runtime.native.config import NativeConfig
    from stellaops_runtime.native.source import NativeProbeSource
    from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource

log = logging.getLogger("stellaops_runtime.agent.source_switch")


class SwitchBack:
    """The Overlap part of ``SourceSwitch`` (its attributes are the switch's)."""

    bcc: NativeProbeSource | None
    mode: str
    _segments: list[Any]
    _lock: threading.Lock
    _bcc_since_ns: int  # wall clock of the switch to BCC
    _load_since_ns: int  # ... of the latest reload, or failed run's detach, since then (0: none)
    _bcc_loads: list[Load]  # the loads a reload ended since the switch to BCC
    _carried: Overlap | None  # the latest Tetragon segment's: its loads may still be in Tetragon's cache
    tetragon: TetragonGrpcSource
    _bcc_unread: list[tuple[int, int]]  # spans taken since the switch to BCC: the probes counted nothing
    _loads_file: str  # agent/source_switch_loads.py ('' without a spool path)
    _loads_written: object  # what was last written there (None: nothing)
    # (load, its cgroups' containers, some cgroup not seen in the node's tree): looked up on a thread
    _cgroup_ids: tuple[object, frozenset[str], bool] | None = None
    _undecided: tuple[tuple[int, int], ...] = ()  # load spans to mark as gaps (Load.cgroups_unseen)
    pipeline: Any
    in_pipeline: Any

    if TYPE_CHECKING:  # agent/source_switch_gaps.py

        def _note_unread(self, start_ns: int, end_ns: int) -> None: ...

    def _probes_config(self) -> NativeConfig | None:
        with self._lock:
            return next((s.native for s in reversed(self._segments) if s.kind == BCC), None)

    def _latest_load(self, *, running: bool = False) -> Load | None:
        """The latest load of the probes (ended as their last read began, or ``RUNNING``)."""
        from stellaops_runtime.agent.source_switch_overlap import RUNNING, Load

        native, b = self._probes_config(), self.bcc
        if b is None or native is None:
            return None
        # they count from their attach (a load compiles for seconds), not from the switch or reload;
        # a load that never attached counted nothing (its attach list is still the last run's)
        since = max(self._bcc_since_ns, self._load_since_ns)
        if b.stats.attached_ns < since:
            return None
        since = b.stats.attached_ns
        # ended where their last read began: a call stamped later may be in no record (its uprobe
        # detached, or written after the last poll), and Tetragon's copy is then its only count
        end = RUNNING if running else (min(b.stats.detached_ns, b.stats.last_read_ns or RUNNING))
        ids, unseen = self._cgroup_containers(native, since)
        return Load.of(
            native, b.stats.attached, since_ns=since, detached_ns=end, cgroup_containers=ids,
            cgroups_unseen=unseen,
        )  # fmt: skip

    def _cgroup_containers(self, native: NativeConfig, attached_ns: int) -> tuple[frozenset[str], bool]:
        """The containers the load's cgroups (``cgroupAllow``) are, and whether some cgroup was not
        seen in the node's tree, as :meth:`_look_up_cgroups` found them; a load not looked up yet
        is undecided (its cached calls skipped, its span a gap: never counted twice)."""
        if not native.cgroup_allow:
            return frozenset(), False
        c = self._cgroup_ids
        if c is None or c[0] != (native.cgroup_allow, attached_ns):
            return frozenset(), True
        return c[1], c[2]

    async def _look_up_cgroups(self) -> None:
        """Look up the running load's ``cgroupAllow`` cgroups once per load (while it runs: a cgroup's
        directory goes with its container), on a thread: the walk reads up to 50,000 directories
        (native/cgroup_ids.py), and the event loop keeps serving meanwhile."""
        native, b = self._probes_config(), self.bcc
        if native is None or b is None or not native.cgroup_allow:
            return
        if not b.stats.attached_ns or b.stats.attached_ns < max(self._bcc_since_ns, self._load_since_ns):
            return  # this load has not attached yet
        key = (native.cgroup_allow, b.stats.attached_ns)
        if self._cgroup_ids is not None and self._cgroup_ids[0] == key:
            return
        from stellaops_runtime.native.cgroup_ids import look_up

        try:
            ids, unseen = await asyncio.to_thread(look_up, native.cgroup_allow)
        except Exception as e:  # never the switch stuck over it: undecided, its span a gap
            log.warning("the node's cgroup tree could not be read for native.cgroupAllow: %r", e)
            ids, unseen = {}, frozenset(native.cgroup_allow)
        if unseen:
            log.warning(
                "%d of the %d cgroups of native.cgroupAllow were not found in the node's cgroup tree: "
                "Tetragon's cached calls of the probed functions in this load's time cannot be told "
                "apart, so they are skipped and that time is recorded as an observation gap",
                len(unseen), len(native.cgroup_allow),
            )  # fmt: skip
        named = frozenset(ids.values())
        if set(native.cgroup_allow) - ids.keys() - unseen:  # found naming no container, or gone
            from stellaops_runtime.agent.source_switch_overlap import HOST

            named |= {HOST}  # a host process's cached call may be the probes': skipped
        self._cgroup_ids = (key, named, bool(unseen))

    def _undecided_gaps(self, overlap: Overlap | None) -> None:
        """The spans of ``overlap``'s undecided loads are marked as gaps by :meth:`_mark_undecided`."""
        if overlap is not None and overlap.undecided:
            self._undecided = (*self._undecided, *overlap.undecided)

    async def _mark_undecided(self) -> None:
        """Mark the undecided loads' spans as node-wide gaps (one not marked is marked next time)."""
        while self._undecided:
            a, b = self._undecided[0]
            await self.in_pipeline(self.pipeline.gaps.source_gap, self.pipeline.node_name, a, b)
            self._undecided = self._undecided[1:]

    def _note_load(self) -> None:
        """The stopped probes' load, before a reload: an earlier load counted its functions too."""
        from stellaops_runtime.agent.source_switch_overlap import MAX_LOADS

        if (load := self._latest_load()) is not None:
            self._bcc_loads = [*self._bcc_loads, load][-MAX_LOADS:]
        if self._loads_file:  # on disk at once, ended at its detach: not running into the next load
            from stellaops_runtime.agent import source_switch_loads

            source_switch_loads.write(self._loads_file, self._bcc_loads, self._bcc_unread)
            self._loads_written = ()  # the next load's first tick writes again

    def _overlap(self) -> Overlap | None:
        """What the stopped probes counted, for the first Tetragon segment not to count it again."""
        from stellaops_runtime.agent.source_switch_overlap import Overlap

        b, last = self.bcc, self._latest_load()
        loads = (*self._bcc_loads, *([last] if last is not None else []))
        if b is None or not loads:
            return None
        # taken by earlier ticks, and not yet taken: drops and unread spans (calls the probes lost)
        unread = self._bcc_unread + [(d.start_ns, d.end_ns) for d in b.stats.drops] + b.stats.unwatched
        return Overlap(loads, tuple(sorted(unread)))

    def _carry_loads(self) -> None:
        """At the switch to BCC: the loads of the last Tetragon segment's Overlap (the previous period's,
        or the last agent's) whose calls Tetragon's cache may still send (detached within the event
        hold, the filter still live) start the new period's list, with their unread spans: the next
        stream, and an agent restarted meanwhile, skip them too."""
        from stellaops_runtime.agent.source_switch_overlap import MAX_LOADS

        o, self._carried = self._carried, None
        self._bcc_loads, self._bcc_unread = [], []
        if o is None or not o.live:  # the cache has sent what it held from their time (or the clock stepped)
            return
        sent_by = time.time_ns() - self.tetragon.hold.ns()
        loads = [ld for ld in o.loads if ld.detached_ns > sent_by][-MAX_LOADS:]
        if loads:
            self._bcc_loads = loads
            for a, b in o.unwatched:  # in order; past MAX_UNREAD the oldest merge (source_switch_gaps.py)
                self._note_unread(a, b)

    def _keep_loads(self, overlap: Overlap | None) -> None:
        """At the switch back: the loads, ended at their detach, stay on disk while Tetragon's cache
        may still send their calls (an agent restarted meanwhile skips them too); the next start
        takes the file, and a later BCC period replaces it."""
        if not self._loads_file:
            return
        self._loads_written = None
        if overlap is None:
            with contextlib.suppress(OSError):
                os.unlink(self._loads_file)
            return
        from stellaops_runtime.agent import source_switch_loads

        source_switch_loads.write(self._loads_file, overlap.loads, overlap.unwatched)

    def stored_all(self) -> None:
        """The agent stopped, and stored or spooled every count (agent/runner.py): the probes' loads
        stay on disk ended at their real end (their last read's start) and marked stored, not cut at
        the watch record's moment (when stop was asked: the probes counted on until then, all stored).
        The loads of the last switch back, or the last agent's, while the filter is live, too."""
        if not self._loads_file:
            return
        o = self._overlap() if self.mode == BCC else self._carried
        if o is None or not o.live:
            return
        from stellaops_runtime.agent import source_switch_loads

        source_switch_loads.write(self._loads_file, o.loads, o.unwatched, stored=True)

    def _persist_loads(self, b: NativeProbeSource) -> None:
        """While the probes run (each tick): their loads and unread spans on disk, for a restarted
        agent. A run that ended on its own (the reader failed: native/source.py loads the probes
        again after ``retrySeconds``, maybe with another attach list) is a load of its own, and
        nothing was counted until the next run attached."""
        st = b.stats
        if (
            not st.connected
            and st.detached_ns
            and st.attached_ns >= max(self._bcc_since_ns, self._load_since_ns)
        ):
            self._note_load()
            self._load_since_ns = st.detached_ns  # the next run counts from its own attach
        if not self._loads_file or not st.connected or st.attached_ns < self._load_since_ns:
            return  # the latest load has not attached yet
        at = (len(self._bcc_loads), b.stats.attached_ns, len(self._bcc_unread), self._bcc_unread[-1:])
        if at == self._loads_written:
            return
        from stellaops_runtime.agent import source_switch_loads

        now = self._latest_load(running=True)
        loads = [*self._bcc_loads, *([now] if now is not None else [])]
        if source_switch_loads.write(self._loads_file, loads, self._bcc_unread):
            self._loads_written = at

    def _resume_loads(self, cut_ns: int) -> None:
        """The last agent's probe loads (restarted while they ran), ended at ``cut_ns``: the first
        Tetragon segment does not count their calls again. Only while this agent has not run the
        probes (a store answer handed over later, agent/watch_record_store.py, finds its own file)."""
        path = self._loads_file
        if not path or self._bcc_since_ns or self.mode != TETRAGON or not os.path.exists(path):
            return  # this agent ran the probes: the file and the first stream's Overlap are its own
        from stellaops_runtime.agent.source_switch_loads import resumed

        overlap = self._carried = resumed(path, cut_ns)
        self._undecided_gaps(overlap)  # marked on the first tick
        if overlap is not None:
            log.info("the last agent ran the native probes: Tetragon's cached calls they counted are skipped")
            with self._lock:
                self._segments[0] = dataclasses.replace(self._segments[0], overlap=overlap)
