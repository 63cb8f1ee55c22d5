"""The split tails the PURL probes leave unprobed, told to the store: "this function was probed in part".

gcc -O2 splits a function by partial inlining: ``crc32`` keeps the head and jumps to
``crc32.part.0``, while a caller that inlined the head calls ``crc32.part.0`` directly (or returns
in the inlined head). The probes by PURL attach at ``crc32`` only (probing the tail too would count
a call through ``crc32`` twice: native/purl_targets.py), so those calls are never counted, and an
answer resting on "no rows" would say "not observed" about calls nobody watched.

The resolution (``PurlWiring.unprobed``) knows which tails a probed file defines; this module turns
each (image, file, tail) into one ``hot_symbols`` row of evidence kind ``unprobed``: 0 calls, the
tail's canonical name (``_Z5crc32i.part.0`` demangled to ``crc32(int) (.part.0)``, the spelling the
calls' function IDs give a clone and the questions match), the file's path in the image, build-id
and package. Such a row is no observation (every reader counts only rows with calls);
evidence/probed_in_part.py reads it and answers ``unknown`` naming the tail. It rides the same
flush as the counts (ledger, outage buffer, spool, export), so it is kept exactly as they are, and
the outage bound never drops it (store/batches.py ``never_dropped``). Each fact is handed over
once per agent and build (the store keeps it: an image's file never changes, but a node's file
upgraded in place while the agent runs gives its tail's fact again under the new build-id,
store/fact_builds.py), a node's own facts again once a day (:data:`RESEND_NS`: a build the store
pruned comes back); the set of those sent is bounded. Pure (no I/O but the demangler's own,
shared with the pipeline).
"""

from __future__ import annotations

from collections.abc import Mapping

from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey

# (image digest, path in the image, tail symbol) -> (build-id, installed PURL or "")
Facts = Mapping[tuple[str, str, str], tuple[str, str]]
MAX_SENT = 100_000  # facts remembered as sent; past it the set starts over (a fact sent again costs a row)
# The node's own facts (``host:<node>``, at most MAX_UPROBE_TARGETS files' tails) are sent again once a
# day: the store prunes a node's builds when retention left it no window (store/fact_builds.py: its
# agent alive but its store out of reach, or nothing to watch, for longer), and a build marked sent for
# the agent's whole life never came back. A row a fact a day; an image's facts are never pruned, and a
# month-long outage holds a day's rows of the node's facts only (never dropped: store/batches.py).
RESEND_NS = 86_400 * 1_000_000_000
HOST_PREFIX = "host:"  # contracts/events.py image_key: a host process's image


class UnprobedTails:
    """The facts of the current probes (``current``, swapped whole by the source switch) and those
    already handed to the store."""

    def __init__(self) -> None:
        self.current: Facts = {}
        self._sent: set[tuple[tuple[str, str, str], str]] = set()  # (fact's key, build-id)
        # facts of the old set not handed over yet whose key the new set gives another build
        self._earlier: dict[tuple[tuple[str, str, str], str], str] = {}  # (key, build-id) -> PURL
        self._since: int | None = None  # when ``_sent`` last started over (wall clock, ns)

    def replace(self, facts: Facts) -> Facts:
        """Make ``facts`` the current set (swapped whole), keeping those of the old set not handed
        over yet: the switch replaces the set at each configure of the probes and while Tetragon
        runs, maybe before a drain took the old one. A fact kept that a drain on the pipeline
        thread sends meanwhile is sent twice (a row again, nothing more); none is lost, not even
        one of a build the new set replaced (a file upgraded before the drain). Returns the set now
        current."""
        old, sent = self.current, self._sent
        unsent = {k: v for k, v in old.items() if (k, v[0]) not in sent}
        earlier = {**self._earlier, **{(k, v[0]): v[1] for k, v in unsent.items() if k in facts}}
        # swapped whole, never changed in place: only this (the event loop) writes it; a drain reads it
        self._earlier = {
            e: purl
            for e, purl in earlier.items()
            if e not in sent and (e[0] not in facts or facts[e[0]][0] != e[1])
        }
        kept = {k: v for k, v in unsent.items() if k not in facts}
        self.current = {**kept, **facts} if kept else facts
        return self.current

    def deltas(self, *, node_name: str, now_ns: int, window_seconds: int) -> list[HotSymbolDelta]:
        """One 0-call ``unprobed`` row per fact (and build) not handed over yet (called at each drain)."""
        if self._since is None or now_ns < self._since:  # the first drain, or the clock stepped back
            self._since = now_ns
        elif now_ns - self._since >= RESEND_NS:  # once a day: the node's own facts again (RESEND_NS)
            self._sent = {e for e in self._sent if not e[0][0].startswith(HOST_PREFIX)}
            self._since = now_ns
        facts = self.current  # read once: the switch replaces the mapping, never changes it
        new = [(k, *facts[k]) for k in facts if (k, facts[k][0]) not in self._sent]
        new += [(k, bid, purl) for (k, bid), purl in self._earlier.items() if (k, bid) not in self._sent]
        if not new:
            return []
        if len(self._sent) + len(new) > MAX_SENT:
            self._sent.clear()
        win = now_ns - now_ns % (window_seconds * 1_000_000_000)
        out = []
        for key, build_id, purl in new:
            image, path, tail = key
            k = HotSymbolKey(image, path, demangle(tail), EvidenceKind.UNPROBED)
            out.append(
                HotSymbolDelta(
                    k,
                    win,
                    0,
                    now_ns,
                    now_ns,
                    confidence=0.0,
                    build_id=build_id,
                    purl=purl,
                    node_name=node_name,
                )
            )
            self._sent.add((key, build_id))
        return out
