"""A node file Tetragon probes, replaced while the agent runs: the node is unwatched from then on.

Tetragon sets a ``binaryPath`` function's uprobe on the file its TracingPolicy's path named when
the policy was loaded (its inode, at the symbol's offset then), not on the path. A package upgrade
(a new file renamed over the path) leaves the probe on the old file: the processes started from
the new one are never seen; a rewrite in place (``cp`` over it) leaves it at an offset of the old
build in the new one. Either way the calls into the new file go uncounted, while the windows of
the node read watched: a "not observed" about the function itself rests on calls nobody saw.

The agent's look at those files (agent/tetragon_facts.py, once a second) notices the change: a
file at the path that is another file (device, inode) or the same with other contents (size,
modification time; a ``chmod`` moves only the change time and is no change, nor is a ``touch``
that moves the modification time alone over the same bytes: agent/node_file_digest.py). From the look before
(the last that saw the old file) the node is unwatched: a node-wide gap (source ``none``,
hotsymbols/gaps.py ``source_gap``), as the agent's own probes mark a probed file they could not
follow (native/follow.py). The calls are anyone's on the node: the host's processes and any
container running the file through a hostPath mount (docs/evidence.md), so no narrower scope can be
told. The gap is handed to the pipeline piece by piece as an outage is (agent/outages.py), only
while Tetragon is the source (a source switch's own probes follow the file themselves: that time
is theirs).

A load of the policy resolves the path anew. So the gap ends once every Tetragon object of ours
whose uprobes are on each replaced file (agent/node_file_policies.py, from the probe ConfigMap;
every object of ours when that cannot be told) has been seen loaded after the replacement was seen
and listed tracing since (agent/policy_reloads.py, fed by the ObservationNode writer's
ListTracingPolicies polls; a ``touch`` of the new file meanwhile, same bytes as seen replaced, does
not move when it was seen: a load since still counts): at the poll that saw the last of them tracing
(the load's own time is agent/policy_load_gaps.py's gap). The baseline (agent/node_file_baseline.py)
then moves to the file Tetragon now probes: the next agent of the boot does not open the gap again,
and still opens one for a file replaced while it was down. An agent without
``observationNode.enabled`` reads no policy states: its gap stays open for its life.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stellaops_runtime.agent import node_file_digest
from stellaops_runtime.agent.node_file_baseline import Baseline, Stat
from stellaops_runtime.agent.node_file_digest import digest, touch_only

if TYPE_CHECKING:
    from stellaops_runtime.agent.node_file_policies import Probing
    from stellaops_runtime.agent.policy_reloads import PolicyReloads

log = logging.getLogger(__name__)

Span = tuple[int, int]  # wall ns
Ident = tuple[int, ...] | None  # agent/tetragon_facts.py: (dev, ino, size, mtime, ctime)


def replaced(before: Ident, after: Ident) -> bool:
    """Whether the file at a path is another file, or other contents, than the one looked at before:
    a file that appeared where none was, or a different (device, inode, size, mtime). A file gone
    is none (no process starts it any more); a change of its change time alone is none either."""
    if after is None:
        return False
    return before is None or before[:4] != after[:4]


def digests(wanted: Sequence[tuple[str, Stat]], budget: int) -> dict[str, tuple[Stat, str | None]]:
    """The digest of each of ``wanted`` (file, identity) tried (agent/node_file_digest.py; None: it
    failed, e.g. the file changed while read; blocking: on a worker thread). At most ``budget`` bytes
    are read: a file that does not fit is not tried, and not in the answer (one no larger than
    ``node_file_digest.MAX_BYTES`` fits a poll's whole budget: agent/tetragon_facts.py)."""
    out: dict[str, tuple[Stat, str | None]] = {}
    for f, stat in wanted:
        size = stat[2] if stat[2] <= node_file_digest.MAX_BYTES else 0  # over the bound: nothing read
        if size > budget:
            continue
        budget -= size
        out[f] = (stat, digest(f, stat))
    return out


class NodeFileGaps:
    """The open gap since a probed node file was replaced (see the module docstring)."""

    def __init__(self, baseline_path: str = "") -> None:
        self.started = time.time_ns()  # this agent's: a file found replaced at its first read, from here
        self.baseline = Baseline(baseline_path)  # agent/node_file_baseline.py: kept for the next agent
        self._reported: dict[str, tuple[int, ...]] = {}  # file -> the identity last counted replaced
        self._open_from: int | None = None  # wall ns: unwatched since
        self._handed_to: int | None = None  # handed to the marker up to here
        self._spans: list[Span] = []  # given back by the marker: handed over next time
        self._in_flight: list[Span] = []  # taken by the marker, not in the pipeline yet
        self.replaced = 0  # node files seen replaced (each logged)
        self.reloads: PolicyReloads | None = None  # agent/policy_reloads.py: what ends the gap
        self.probing: Probing = {}  # agent/node_file_policies.py: the objects probing each file
        self._pending: dict[str, int] = {}  # replaced file -> when seen (monotonic ns, after the look)
        self._pending_digests: dict[str, tuple[Stat, str]] = {}  # its identity seen and that one's digest
        self._digest_failed: dict[str, Stat] = {}  # its identity seen whose digest failed: not read again
        self.ended = 0  # gaps ended by the policies' reload

    @property
    def open(self) -> bool:
        return self._open_from is not None

    def compare(
        self, files: Sequence[str], before: Sequence[Ident], after: Sequence[Ident], since_ns: int
    ) -> None:
        """The identities of ``files`` looked at ``since_ns`` (``before``) and now (``after``): a
        file replaced in between opens the gap from ``since_ns``."""
        changed = [
            f
            for f, b, a in zip(files, before, after, strict=False)
            if replaced(b, a) and a is not None and self._reported.get(f) != a[:4]
        ]  # fmt: skip (one replacement is counted once: by the look, then by the read's baseline check)
        self._reported.update(
            (f, a[:4]) for f, b, a in zip(files, before, after, strict=False) if f in changed and a
        )
        if not changed:
            return
        seen = time.monotonic_ns()  # the look is done: the replacement came before (agent/policy_reloads.py)
        self._pending.update((f, seen) for f in changed)
        self.replaced += len(changed)
        if self._open_from is None or since_ns < self._open_from:
            self._open_from, self._handed_to = since_ns, None
        log.warning(
            "node file %s was replaced while Tetragon probes it: Tetragon's uprobe stays on the file "
            "its policy was loaded with, so calls into the new file are not seen; the node is recorded "
            "unwatched (a node-wide gap) from the look before (%d ns) until Tetragon is seen "
            "loading anew the policies that probe it (kept for the next agents of this boot in %s)",
            ", ".join(changed[:4]), since_ns, self.baseline.path or "no file kept",
        )  # fmt: skip

    def reloaded(self) -> dict[str, Stat]:
        """The replaced files whose probing objects Tetragon was seen loading anew since (see the
        module docstring), with the identity now probed; the gap ends when none is left."""
        if not self._pending or self.reloads is None:
            return {}
        ended: dict[str, int] = {}
        for f, seen in self._pending.items():
            at = self.reloads.settled_after(self.probing.get(f), seen)
            if at is not None:
                ended[f] = at
        for f in ended:
            del self._pending[f]
            self._pending_digests.pop(f, None)
            self._digest_failed.pop(f, None)
        if ended and not self._pending and self._open_from is not None:
            end = max(ended.values())
            start = self._open_from if self._handed_to is None else self._handed_to
            if end > start:
                self._spans.append((start, end))
            self._open_from = self._handed_to = None
            self.ended += 1
        if ended:
            log.warning(
                "node file %s: Tetragon was seen loading anew the policies that probe it; %s",
                ", ".join(sorted(ended)[:4]),
                "still unwatched for another replaced file" if self._pending else "the node is watched again",
            )
        out: dict[str, Stat] = {}
        for f in ended:
            ident = self._reported.get(f)
            if ident is not None and len(ident) >= 4:
                out[f] = (ident[0], ident[1], ident[2], ident[3])
        return out

    def undigested(self) -> list[tuple[str, Stat]]:
        """The replaced files waiting for their reload whose identity seen has no digest yet, and
        none that failed (a file whose change time moves while it is read is read once per identity,
        not at every poll: s48 RNF2)."""
        out: list[tuple[str, Stat]] = []
        for f in self._pending:
            ident = self._reported.get(f)
            if ident is not None and len(ident) >= 4:
                stat = (ident[0], ident[1], ident[2], ident[3])
                if self._pending_digests.get(f, (None,))[0] != stat and self._digest_failed.get(f) != stat:
                    out.append((f, stat))
        return out

    def digested(self, found: dict[str, tuple[Stat, str | None]]) -> None:
        """Digests of :meth:`undigested` files (taken on a worker thread: agent/node_file_digest.py);
        None: it failed for that identity, not tried again until the file's identity changes."""
        for f, (stat, d) in found.items():
            ident = self._reported.get(f)
            if f in self._pending and ident is not None and tuple(ident[:4]) == stat:
                if d is None:
                    self._digest_failed[f] = stat
                else:
                    self._pending_digests[f] = (stat, d)

    def pending_touched(
        self, files: Sequence[str], before: Sequence[Ident], after: Sequence[Ident]
    ) -> dict[str, tuple[Stat, str]]:
        """Of ``files`` looked at as ``before`` then ``after``, the ones waiting for their reload that
        were touched only since they were seen replaced: the modification time alone moved over the
        bytes of the identity seen (its digest). Blocking (reads them): on a worker thread."""
        out: dict[str, tuple[Stat, str]] = {}
        for f, b, a in zip(files, before, after, strict=False):
            have = self._pending_digests.get(f)
            if have is None or b is None or a is None or tuple(b[:4]) != have[0]:
                continue
            now = (a[0], a[1], a[2], a[3])
            if touch_only(have[0], now) and (d := digest(f, now)) == have[1] and d is not None:
                out[f] = (now, d)
        return out

    def keep_touched(self, found: dict[str, tuple[Stat, str]]) -> None:
        """:meth:`pending_touched` files: the touched identity is the one replaced (no new replacement,
        and the moment it was seen stays: a reload since then counts), and the one the baseline moves
        to at the reload."""
        for f, (stat, d) in found.items():
            if f in self._pending:
                self._reported[f] = stat
                self._pending_digests[f] = (stat, d)

    def kept_differ(self, found: Sequence[tuple[str, Ident, Ident]], since_ns: int) -> None:
        """A read's files that are not the file this boot's first read found at their path
        (``self.baseline.check``, agent/node_file_baseline.py: by this agent, or one before it),
        as (file, kept, found): the gap opens from ``since_ns`` (the look before; the agent's start
        at its first read)."""
        self.compare([f for f, _, _ in found], [k for _, k, _ in found], [n for _, _, n in found], since_ns)

    def take(self, now_ns: int | None = None, *, counts: bool = True) -> list[Span]:
        """The spans not handed over yet and the open gap up to now (it stays open). ``counts``
        False: the source switch's own probes watch now: that piece is theirs, not handed over."""
        out, self._spans = self._spans, []
        if self._open_from is not None:
            now = time.time_ns() if now_ns is None else now_ns
            start = self._open_from if self._handed_to is None else self._handed_to
            if counts:
                out.append((min(start, now), max(start, now)))
            self._handed_to = max(start, now)
        self._in_flight.extend(out)
        return out

    def give_back(self, spans: list[Span]) -> None:
        """Spans the marker could not hand to the pipeline: kept for its next call."""
        self._spans[:0] = spans
        self._in_flight = []

    def marked(self) -> None:
        """Every span taken is in the pipeline: a flush starting now drains them."""
        self._in_flight = []

    def unstored_from(self) -> int | None:
        """The earliest moment of a span not in the pipeline yet (None: none): the watch record
        claims no later (agent/watch_record_attach.py ``_cap``)."""
        starts = [a for a, _ in self._spans] + [a for a, _ in self._in_flight]
        if self._open_from is not None:
            starts.append(self._open_from if self._handed_to is None else self._handed_to)
        return min(starts) if starts else None
