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

This module recognises a repeat by its key and replays it;
agent/fastpath_learn.py runs the ordinary path and remembers outcomes (and
follows loaders and exits); agent/fastpath_table.py holds the entries.
"""

from __future__ import annotations

from stellaops_runtime.adapter import from_proto, rawkey, validate
from stellaops_runtime.agent.fastpath_learn import _EXIT, _LOADER, OutcomeLearner
from stellaops_runtime.agent.fastpath_outcome import Outcome, add_enrich
from stellaops_runtime.agent.fastpath_table import MAX_SKIP as MAX_SKIP
from stellaops_runtime.agent.fastpath_table import SAMPLE as SAMPLE
from stellaops_runtime.agent.fastpath_table import SKIP as SKIP
from stellaops_runtime.agent.fastpath_table import Entries

_MIN_NS = validate.MIN_EVENT_NS  # a module global: read on every repeat


class FastPath(OutcomeLearner):
    """Recognises repeats of events the pipeline processed, and counts them (one per Pipeline); what
    it remembers, and how, is an OutcomeLearner's (agent/fastpath_learn.py)."""

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
            self._gaps.not_allowed(ev.image_key, ev.node_name, ts)
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
