"""The fast path's ordinary side: process an event in full, and remember its outcome when it is safe to.

Split from agent/fastpath.py, which recognises a repeat by its key and replays
what is remembered. This module holds what the fast path knows: the
collaborators whose counters a repeat replays, the (path, build-id) pairs of
each process's loader events since its exit, the generation and container
snapshot outcomes were computed with. Its ``_process`` runs the ordinary path
(agent/pipeline.py) on an event, measures what it changed (the counters'
deltas, the aggregator's slots), and keeps the outcome only when it could not
come out differently (agent/fastpath.py's docstring lists when it is not);
``_follow`` records what a loader or exit event changed for its process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stellaops_runtime.adapter import validate
from stellaops_runtime.agent.fastpath_outcome import (
    REPEATABLE,
    UNSEEN,
    Counts,
    Facts,
    Outcome,
    delta,
    enrich_counts,
    unsettled,
)
from stellaops_runtime.agent.fastpath_table import Entries, OutcomeTable
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent

if TYPE_CHECKING:
    from stellaops_runtime.adapter.common import AdapterStats
    from stellaops_runtime.agent.purls import HotSymbolAttribution
    from stellaops_runtime.canonical.frames import FrameCanonicalizer
    from stellaops_runtime.hotsymbols.aggregate import HotSymbolAggregator
    from stellaops_runtime.hotsymbols.gaps import GapTracker
    from stellaops_runtime.privacy.filter import PrivacyFilter
    from stellaops_runtime.privacy.optout import OptOut

DEFAULT_MAX_ENTRIES = 4096
DEFAULT_MAX_KEY_BYTES = 4 << 20  # ~1.6 KB a kprobe key with a stack: ~2,600 of them
# Processes whose loader build-ids are followed before the table starts over (as the canonicalizer's).
_MAX_PROCESSES = 65_536
_NO_SLOTS: list[Any] = []  # what a drained outcome holds instead of its slots (never mutated)
# EventKind members as module globals: on Python 3.11 reading a member through its class costs ~90 ns
# (the enum's class attribute lookup), a global ~7 ns, and _process compares kinds on every event.
_LOADER, _EXIT = EventKind.LOADER, EventKind.EXIT


class OutcomeLearner(OutcomeTable):
    """The fast path's state and its ordinary path, remembered (see the module docstring); FastPath
    (agent/fastpath.py) adds the recognition of repeats."""

    def __init__(
        self,
        *,
        finish: Callable[[RuntimeCallEvent | None], None],
        stats: AdapterStats,
        optout: OptOut,
        privacy: PrivacyFilter,
        canonicalizer: FrameCanonicalizer | None,
        aggregator: HotSymbolAggregator,
        gaps: GapTracker,
        attribution: HotSymbolAttribution | None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_key_bytes: int = DEFAULT_MAX_KEY_BYTES,
    ) -> None:
        super().__init__(max_entries, max_key_bytes)
        self._finish = finish
        self._stats = stats
        self._optout = optout
        self._privacy = privacy
        self._fc = canonicalizer
        self._agg = aggregator
        self._gaps = gaps
        self._attribution = attribution
        # exec id -> (path, build-id) pairs of its loader events since its exit (agent/fastpath.py)
        self._facts: dict[str, Facts] = {}
        self._exits = 0
        self._generation = 0
        self._lookup: object = None  # the container snapshot outcomes were computed with
        self._max_ns = validate.max_event_ns()  # a time up to this is never clamped (the limit only grows)
        self._from_json: Any = None  # adapter/from_json, imported with the first export line (issue 13)
        aggregator.on_drain.append(self._release_slots)

    def invalidate(self) -> None:
        """Something every outcome may depend on changed (the opt-out list): recompute each before use.

        What the fast path follows of each process (its loader build-ids) is kept: a new
        FastPath would not know them, and would keep outcomes its process's exit invalidates.
        """
        self._generation += 1

    def _release_slots(self) -> None:
        """After a drain, drop the drained slots outcomes hold: their keys' counts and samples would
        stay alive until the key came back (a repeat in a new epoch observes in full again)."""
        for o in self._values():
            if type(o) is Outcome:
                o.slots = o.window = _NO_SLOTS

    # -- the ordinary path, remembered ------------------------------------------------

    def _process(
        self, ev: RuntimeCallEvent | None, split: tuple[bytes, int] | None, lookup: object, entries: Entries
    ) -> None:
        self.stats.misses += 1
        if ev is None:
            self._finish(ev)
            return
        if lookup is not self._lookup:
            self._lookup = lookup
            self._generation += 1
        kind = ev.kind
        if split is None and kind is not _LOADER and kind is not _EXIT:
            # No key (skipped while nothing repeats, or none to compute), nothing to follow: the
            # ordinary path alone (the common case of a stream whose stacks never repeat).
            self._finish(ev)
            d = self.stats.not_kept  # _not_kept("no_key"), inlined: once per such event
            d["no_key"] = d.get("no_key", 0) + 1
            return
        privacy = self._privacy
        seen, filtered = privacy.events_seen, privacy.events_filtered
        why = ""
        if split is None:
            why = "no_key"
        elif kind not in REPEATABLE:
            why = "kind"
        elif not ev.process.exec_id:
            why = "no_exec_id"
        elif ev.timestamp_ns != split[1]:
            why = "time"
        if why:
            self._finish(ev)
            reached = privacy.events_seen != seen and privacy.events_filtered == filtered
            if reached and (kind is _LOADER or kind is _EXIT):
                self._follow(ev)  # it reached the canonicalizer and the aggregator
            self._not_kept(why)
            return
        assert split is not None
        key = split[0]
        prev = entries.get(key, UNSEEN)
        self._sample(prev is UNSEEN)
        if prev is UNSEEN:  # first sight: only marked (a key that never repeats costs nothing more)
            self._finish(ev)
            self._store(entries, key, None)
            return
        o = Outcome(ev, self._generation, self._facts.get(ev.process.exec_id))
        stats, fc, agg, optout = self._stats, self._fc, self._agg, self._optout
        repaired = dict(stats.repaired)
        opted, early = dict(optout.dropped), optout.before_opted_in
        fields, truncated = privacy.fields_redacted, privacy.arguments_truncated
        patterns = list(privacy.redactions_by_pattern.items())
        canon = dict(fc.counters) if fc is not None else {}
        enrich = enrich_counts(lookup)
        observations, below = agg.observations, agg.below_threshold
        touched: list[Any] = []
        agg.touched = touched
        try:
            self._finish(ev)
        finally:
            agg.touched = None
        o.adapter = tuple(kv for kv in delta(repaired, stats.repaired) if kv[0] != "time_clamped")
        o.enrich = delta(enrich, enrich_counts(lookup))
        o.opted_out = next((k for k, _ in delta(opted, optout.dropped)), "")
        if optout.before_opted_in != early:  # dropped for its time alone: a later repeat may count
            self._not_kept("before_opted_in")
            return
        o.privacy_dropped = privacy.events_filtered != filtered
        if not o.opted_out and not o.privacy_dropped:
            d_fields, d_truncated = privacy.fields_redacted - fields, privacy.arguments_truncated - truncated
            pats: Counts = ()
            if d_fields or d_truncated:
                pats = delta(dict(patterns), privacy.redactions_by_pattern)
            o.privacy = (d_fields, d_truncated, pats)
            if fc is not None:
                o.canon = delta(canon, fc.counters)
                why = unsettled(o.canon, lambda: fc.locator.local(ev))
                if why:
                    self._not_kept(why)
                    return
            o.n = agg.observations - observations
            o.below = agg.below_threshold - below
            o.slots = touched
            o.window = agg.window_entry(ev)
            o.epoch = agg.epoch
            ts = ev.timestamp_ns
            o.win = ts - ts % agg.window_ns
        # Kept once two passes in a row gave the canonicalizer the same work (its caches are warm:
        # what a repeat replays is what the ordinary path would count from now on).
        if (prev.canon if type(prev) is Outcome else prev) != o.canon:
            self._store(entries, key, o.canon)
            self._not_kept("settling")
            return
        self._store(entries, key, o)

    def _follow(self, ev: RuntimeCallEvent) -> None:
        """What a loader or exit event changed for its process (see the module docstring)."""
        exec_id = ev.process.exec_id
        if not exec_id:
            return
        facts = self._facts
        if ev.kind is _LOADER:
            if ev.build_id:  # the aggregator keeps it even without a path
                pairs = dict(facts.get(exec_id, ()))
                pairs[ev.module] = ev.build_id
                if len(facts) >= _MAX_PROCESSES and exec_id not in facts:
                    facts.clear()
                    self._generation += 1  # outcomes computed with the forgotten facts
                facts[exec_id] = tuple(sorted(pairs.items()))
        elif self._fc is not None and self._fc.locator.local(ev):
            self._exits += 1
            facts[exec_id] = (("", f"exited {self._exits}"),)  # a process of this node: its files are gone
        else:
            facts.pop(exec_id, None)
