"""The agent's fast path: an event that repeats one just processed is counted without processing it again.

Most events repeat what the agent has just seen: the same process, the same
probed function, the same stack; only the time differs. Decoding, adapting,
redacting and canonicalising such an event again costs ~16 µs and yields the
same result. So the first events of a kind are processed by the ordinary path
(agent/pipeline.py) and its outcome is remembered under a key made of the raw
message without its time (adapter/rawkey.py); a later message with the same
key only replays that outcome, with its own time:

- the adapter's counters (events by kind, repairs), the container lookup's
  (fields filled in), the opt-out counter, the privacy filter's counters
  (events seen and filtered, fields redacted, by pattern), the frame
  canonicalizer's counters, ``processed``;
- the gap tracker's and the attribution's notes of the event (time, node,
  container, pid), made on the remembered, already filtered event;
- the hot-symbol counts: the aggregator's slots that event counted in are
  kept, and a repeat in the same window adds one to each, with the time as
  first/last seen and the latency (HotSymbolAggregator.repeat). In a new
  window, or after a drain, the remembered event is observed in full once more.

Only what could not come out differently is remembered. An outcome is not kept when:

- the event is an exec, exit or loader (they change what later events resolve
  to), has no exec id, carried no usable time (stamped or clamped), or was
  dropped by the adapter;
- the canonicalizer left a frame ``parse_pending`` (it resolves later) or
  raised, or, for a process of this node, failed for a reason that can change
  while it lives (its files unreadable, the process exited, no file found).

And a remembered outcome is no longer used when what it was computed from changed:

- the process's loader build-ids: the fast path keeps, per exec id, the
  (path, build-id) pairs of the loader events that reached the aggregator
  since its last exit; an exit of a process of this node marks it for good;
  an outcome computed with other pairs (or after the canonicalizer or the
  aggregator forgot them at their bounds) is recomputed;
- the lifecycle observer's container snapshot (Pipeline.container_lookup), whose
  swap invalidates every outcome.

Bounded: ``max_entries`` outcomes and ``max_key_bytes`` of keys; the oldest
quarter is evicted when full (counted). gRPC payloads' and export lines' keys
are held apart (agent/fastpath_table.py), so equal key bytes in the two
encodings never replay each other's outcome. A key is kept only from its third
sight, once two full passes in a row gave the canonicalizer the same work, so
what a repeat replays is what the ordinary path counts with warm caches. When
nearly every keyed event is a first sight (stacks that never repeat), the
keys of the next ``SKIP`` events are not computed at all (counted as
``skipped``); loaders and exits are still followed meanwhile. Each further
sample that finds nothing repeating doubles the skip, up to ``MAX_SKIP``
events; a sample that finds repeats sets it back to ``SKIP``.

``Pipeline(fast_path=False)`` turns it off; tests/integration/test_fastpath.py runs
every fixture stream both ways and compares every stored column and counter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stellaops_runtime.adapter import from_proto, rawkey, validate
from stellaops_runtime.agent.fastpath_outcome import (
    REPEATABLE,
    UNSEEN,
    Counts,
    Facts,
    Outcome,
    add_enrich,
    delta,
    enrich_counts,
    unsettled,
)
from stellaops_runtime.agent.fastpath_table import MAX_SKIP as MAX_SKIP
from stellaops_runtime.agent.fastpath_table import SAMPLE as SAMPLE
from stellaops_runtime.agent.fastpath_table import SKIP as SKIP
from stellaops_runtime.agent.fastpath_table import Entries, OutcomeTable
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent

_MIN_NS = validate.MIN_EVENT_NS  # a module global: read on every repeat

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


class FastPath(OutcomeTable):
    """Recognises repeats of events the pipeline processed, and counts them (one per Pipeline); its
    entries are an OutcomeTable's (agent/fastpath_table.py)."""

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
        # exec id -> (path, build-id) pairs of its loader events since its exit (see the docstring)
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

    # -- the two encodings ----------------------------------------------------------

    def proto(self, payload: bytes, received: int, depth: int, lookup: object) -> int:
        """One serialized GetEventsResponse; returns 1 when it was counted here as a repeat, else 0
        (the ordinary path ran, counting it itself, and its outcome may have been kept)."""
        if self._skip:  # no key: _process(ev, None, ...) of an event that is no loader or exit, inlined
            self._skip -= 1
            stats = self.stats
            stats.skipped += 1
            ev = from_proto.adapt_payload(payload, received, self._stats, depth)
            if ev is not None and lookup is self._lookup and (k := ev.kind) is not _LOADER and k is not _EXIT:
                stats.misses += 1
                self._finish(ev)
                d = stats.not_kept
                d["no_key"] = d.get("no_key", 0) + 1
            else:
                self._process(ev, None, lookup, self._proto)
            return 0
        entries = self._proto
        split = rawkey.proto_key(payload, entries)
        if split is not None and (n := self._repeat(entries, split[0], split[1], received, lookup)) >= 0:
            return n
        self._process(from_proto.adapt_payload(payload, received, self._stats, depth), split, lookup, entries)
        return 0

    def json(self, line: bytes, received: int, depth: int, lookup: object) -> int:
        """One export line, as :meth:`proto` (raises from_json.MalformedEvent as the ordinary path does)."""
        split = None
        if self._skip:
            self._skip -= 1
            self.stats.skipped += 1
        else:
            split = rawkey.json_key(line)
            if (
                split is not None
                and (n := self._repeat(self._json, split[0], split[1], received, lookup)) >= 0
            ):
                return n
        from_json = self._from_json
        if from_json is None:  # export lines only: a gRPC node never imports it (issue 13)
            from stellaops_runtime.adapter import from_json

            self._from_json = from_json
        obj = from_json.decode_line(line)
        self._process(from_json.adapt(obj, received_ns=received, stats=self._stats, max_stack_depth=depth),
                      split, lookup, self._json)  # fmt: skip
        return 0

    # -- repeats --------------------------------------------------------------------

    def _repeat(self, entries: Entries, key: bytes, ts: int, received: int, lookup: object) -> int:
        """Count a repeat of the outcome remembered under ``key`` among ``entries`` (its encoding's):
        1 (processed), 0 (dropped as it was), -1 (no repeat)."""
        o = entries.get(key)
        if type(o) is not Outcome:  # unseen, or not settled
            return -1
        if o.generation != self._generation or lookup is not self._lookup or o.facts:
            if not self._valid(o, lookup):
                return -1
        elif self._facts.get(o.exec_id) is not None:  # loaders seen since: computed without their build-ids
            self._stale(o)
            return -1
        if ts > self._max_ns:
            self._max_ns = validate.max_event_ns()
            if ts > self._max_ns:
                return -1  # the ordinary path stamps it with the arrival time
        elif ts < _MIN_NS:
            return -1  # before validate.MIN_EVENT_NS: the ordinary path stamps and counts it
        self.stats.hits += 1
        stats = self._stats
        stats.events[o.kind] += 1
        for name, n in o.adapter:
            stats.repaired[name] += n
        if o.enrich:  # what the container lookup filled in (lookup is the one it was computed with)
            add_enrich(lookup, o.enrich)
        if o.opted_out:
            self._optout.dropped[o.opted_out] += 1
            self._gaps.opted_out(o.event.image_key, o.event.node_name, ts)
            return 0
        ev = o.event
        ev.timestamp_ns = ts
        ev.received_ns = received
        if ev.container is not None:
            self._gaps.note(ev)
        privacy = self._privacy
        privacy.events_seen += 1
        if o.privacy_dropped:
            privacy.events_filtered += 1
            return 0
        fields, truncated, patterns = o.privacy
        if fields or truncated:
            privacy.fields_redacted += fields
            privacy.arguments_truncated += truncated
            by_pattern = privacy.redactions_by_pattern
            for name, n in patterns:
                by_pattern[name] += n
        if o.canon:
            counters = self._fc.counters  # type: ignore[union-attr]  # canon is empty without one
            for name, n in o.canon:
                counters[name] += n
        agg = self._agg
        win = ts - ts % agg.window_ns
        if o.epoch == agg.epoch and o.win == win:
            agg.repeat(o.slots, o.window, ts, ev.latency_ns or 0, o.n, o.below)
        else:  # a new window, or the aggregator drained: observed in full once more
            below = agg.below_threshold
            o.n, o.slots, o.window = agg.observe_bound(ev)
            o.below = agg.below_threshold - below
            o.epoch = agg.epoch
            o.win = win
        if self._attribution is not None:
            self._attribution.note(ev)
        return 1

    def _valid(self, o: Outcome, lookup: object) -> bool:
        if lookup is not self._lookup:  # a new container snapshot: nothing remembered holds
            self._lookup = lookup
            self._generation += 1
        if o.generation == self._generation:
            facts = self._facts.get(o.exec_id)
            if facts == o.facts:
                if not facts or o.opted_out or o.privacy_dropped:
                    return True
                # The loader build-ids must still be held where the outcome took them from (the
                # canonicalizer's entry stays as recent as a full pass keeps it: LRU.get, inlined).
                fc = self._fc
                held = True
                if fc is not None:
                    ids = fc._ids.data
                    held = ids.get(o.exec_id) is not None
                    if held:
                        ids.move_to_end(o.exec_id)
                if held and self._agg.knows_build_ids(o.exec_id):
                    return True
        self._stale(o)
        return False

    def _stale(self, o: Outcome) -> None:
        if o.generation != -1:
            self.stats.stale += 1
            o.generation = -1  # stays invalid until the same key is stored again

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
        opted = dict(optout.dropped)
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
