"""What the agent's fast path remembers, by key: one key space per encoding, bounded together.

Split from agent/fastpath.py, which decides when an event is a repeat and
what a repeat replays; this module holds the entries, keeps them within
their bounds, and says when keys are not worth computing.

Two key spaces. A gRPC payload's key is the serialized message without its
time field and an export line's key is the line without its time's value
(adapter/rawkey.py): both are bytes, and nothing in the bytes says which
encoding they came from. In one table, a payload whose key bytes equal an
export line's key would replay that line's outcome, and the other way round:
an event counted as one it is not. Tetragon never sends such a pair (it
writes the node name after the event, and an export line starts with ``{``,
which starts no well-formed protobuf field), but whoever can write to the
pipeline's input could. So each encoding has its own dict (``_proto``,
``_json``), and a key is only ever looked up among its own encoding's keys
(tests/integration/test_fastpath_key_spaces.py).

It also decides when keys are worth computing at all: when nearly every
keyed event is a first sight (stacks that never repeat), the keys of the
next ``SKIP`` events are skipped, doubling while nothing repeats, up to
``MAX_SKIP`` (agent/fastpath.py counts the events that go by).

Bounded together: at most ``max_entries`` entries and ``max_key_bytes`` bytes
of keys in the two dicts; when full, the oldest quarter of each is evicted
at once (counted), then the oldest keys one by one while the new key's bytes
do not fit. The key bytes are counted exactly, whatever the value a key held
(a key seen once holds None). Pure: no I/O, no clock.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from stellaops_runtime.agent.fastpath_outcome import UNSEEN, Counts, FastPathStats, Outcome

# A key's entry: its outcome; None: seen once; the canonicalizer's counts of the last pass: not settled.
Entry = Outcome | Counts | None
Entries = dict[bytes, Entry]
# A stream in which nothing repeats pays for its keys only on SAMPLE keyed misses in SAMPLE + SKIP
# events: the others take the ordinary path at once (their loaders and exits are still followed).
SAMPLE = 512
SKIP = 8 * SAMPLE
# Consecutive samples in which nothing repeats double the skip up to this: keys are then computed for
# ~0.8 % of such a stream's events instead of 11 %, and repeats are noticed again within 65,536 events.
MAX_SKIP = 16 * SKIP


class OutcomeTable:
    """The fast path's entries, one dict per encoding (see the module docstring); FastPath is one."""

    def __init__(self, max_entries: int, max_key_bytes: int) -> None:
        self._proto: Entries = {}  # gRPC payloads' keys
        self._json: Entries = {}  # export lines' keys
        self._max_entries = max_entries
        self._max_key_bytes = max_key_bytes
        self._key_bytes = 0  # the bytes of every key in both dicts
        self.stats = FastPathStats()
        # Sampling (see _sample): keyed misses and first sights since the last decision, events to skip.
        self._misses = self._firsts = self._hits_at = self._skip = 0
        self._next_skip = SKIP  # what the next skip will be (doubles while nothing repeats)

    def __len__(self) -> int:
        return len(self._proto) + len(self._json)

    def _values(self) -> list[Any]:
        """Every value held, both encodings (outcomes among them)."""
        return [*self._proto.values(), *self._json.values()]

    def _store(self, entries: Entries, key: bytes, value: Entry) -> None:
        """Hold ``value`` under ``key`` in ``entries`` (``_proto`` or ``_json``), evicting the oldest
        entries while the bounds are exceeded; a key alone over the byte bound is not kept (counted)."""
        if len(key) > self._max_key_bytes:
            self._not_kept("too_large")
            return
        if entries.pop(key, UNSEEN) is not UNSEEN:  # a key seen before (its value may be None)
            self._key_bytes -= len(key)
        if len(self) >= self._max_entries or self._key_bytes + len(key) > self._max_key_bytes:
            # The oldest quarter of each at once: deleting from the front one by one would make every
            # eviction scan the slots freed before it.
            for d in (self._proto, self._json):
                if d:
                    self._evict(d, max(1, len(d) // 4))
            other = self._json if entries is self._proto else self._proto
            for d in (entries, other):
                while d and self._key_bytes + len(key) > self._max_key_bytes:
                    self._evict(d, 1)
        entries[key] = value
        self._key_bytes += len(key)
        if type(value) is Outcome:
            self.stats.stored += 1

    def _evict(self, d: Entries, n: int) -> None:
        old = list(islice(d, n))
        for k in old:
            del d[k]
            self._key_bytes -= len(k)
        self.stats.evictions += len(old)

    def _not_kept(self, reason: str) -> None:
        d = self.stats.not_kept
        d[reason] = d.get(reason, 0) + 1

    def _sample(self, first: bool) -> None:
        """Count a keyed miss; after SAMPLE of them, skip the keys of the next SKIP events when
        nearly every miss was a first sight and hardly anything repeated (stacks that never repeat)."""
        self._misses += 1
        self._firsts += first
        if self._misses < SAMPLE:
            return
        hits = self.stats.hits - self._hits_at
        if self._firsts * 16 >= self._misses * 15 and hits * 16 < self._misses + hits:
            self._skip = self._next_skip
            self._next_skip = min(2 * self._next_skip, MAX_SKIP)
        else:
            self._next_skip = SKIP
        self._misses = self._firsts = 0
        self._hits_at = self.stats.hits
