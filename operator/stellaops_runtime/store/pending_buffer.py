"""The outage buffer's rows before they are frozen: one row per key and window, merged as they come.

Split from :mod:`stellaops_runtime.store.pending`. A drained delta or observation window joins the
row of its (key, window) or (image, node, window), adding its counts; :func:`freeze` cuts the
buffer into batches of at most ``max_rows`` rows, oldest window first, that
:class:`~stellaops_runtime.store.pending.PendingWrites` then writes exactly once each. When the
bound is passed, the oldest droppable row goes first; a hot-symbol row, or a window row carrying the
unwatched-container mark, leaves a gap (:func:`dropped_gap`). An ``unprobed`` or ``listed`` fact
is never dropped, as a gap row (store/batches.py ``never_dropped``): it is held apart (``Window.facts``),
one row per build (two builds' facts of one tail in one window are two rows: the store keeps each).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, HotSymbolKey, ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import marks
from stellaops_runtime.store.batches import Unit, never_dropped


@dataclass(slots=True)
class Window:
    """Everything pending for one window_start."""

    deltas: dict[HotSymbolKey, HotSymbolDelta] = field(default_factory=dict)
    observations: dict[tuple[str, str], ObservationWindow] = field(default_factory=dict)  # (image, node)
    # (image, node) -> the window's restate row, written after its row (store/marks.py)
    restates: dict[tuple[str, str], ObservationWindow] = field(default_factory=dict)
    # never_dropped facts, one per (key, build-id): a node file upgraded in place while the agent runs
    # gives its tail's fact of each build (agent/unprobed.py), each stored (store/fact_builds.py)
    facts: dict[tuple[HotSymbolKey, str], HotSymbolDelta] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.deltas) + len(self.observations) + len(self.restates) + len(self.facts)


Buffer = dict[int, Window]  # window_start_ns -> rows


def add_delta(buf: Buffer, d: HotSymbolDelta, *, copy: bool) -> bool:
    """Merge one delta in; True when it made a new row."""
    w = buf.get(d.window_start_ns)
    if w is None:
        w = buf[d.window_start_ns] = Window()
    if never_dropped(d):  # by build too: one merged into another build's row kept that build-id only
        have = w.facts.get((d.key, d.build_id))
        if have is None:
            w.facts[(d.key, d.build_id)] = dataclasses.replace(d) if copy else d
            return True
    else:
        have = w.deltas.get(d.key)
        if have is None:
            w.deltas[d.key] = dataclasses.replace(d) if copy else d
            return True
    have.merge(d)
    return False


def add_observation(buf: Buffer, o: ObservationWindow) -> bool:
    w = buf.get(o.window_start_ns)
    if w is None:
        w = buf[o.window_start_ns] = Window()
    return marks.fold(w.observations, w.restates, (o.image_digest, o.node_name), o)


def freeze(buf: Buffer, max_rows: int) -> Iterator[list[Unit | None]]:
    """The buffer's rows, oldest window first (deltas, observations, restate rows), ``max_rows`` at a
    time."""
    units: list[Unit | None] = []
    for start in sorted(buf):
        w = buf[start]
        for part in (w.deltas.values(), w.facts.values(), w.observations.values(), w.restates.values()):
            for u in part:
                units.append(u)
                if len(units) == max_rows:
                    yield units
                    units = []
    if units:
        yield units


def gap_rows(buf: Buffer) -> int:
    """The buffer's gap rows and facts (never dropped, not counted against the bound)."""
    return sum(o.has_gap for w in buf.values() for o in w.observations.values()) + sum(
        len(w.facts) for w in buf.values()
    )


def oldest_droppable_window(buf: Buffer) -> int | None:
    """The oldest window_start holding a row that may be dropped (a delta, or a window without a gap)."""
    for start in sorted(buf):
        w = buf[start]
        if w.deltas or w.restates or any(not o.has_gap for o in w.observations.values()):
            return start
    return None


def pop_droppable(buf: Buffer, start: int) -> Unit:
    """Remove and return one droppable row of window ``start``: a delta first, else a gap-less window."""
    win = buf[start]
    if win.deltas:
        dropped: Unit = win.deltas.popitem()[1]
    elif win.restates:  # a restate row lost: a mark it carried leaves a gap, one it wrote away stays
        dropped = win.restates.popitem()[1]
    else:
        key = next(k for k, o in win.observations.items() if not o.has_gap)
        dropped = win.observations.pop(key)
    if not len(win):
        del buf[start]
    return dropped


def dropped_gap(u: Unit, window_seconds: int) -> ObservationWindow | None:
    """The gap a dropped row leaves: over its window for a hot-symbol row (its count is lost) and for
    a window carrying the unwatched-container mark (``evidenced`` None, hotsymbols/day_calls.py: lost,
    the node's day would read watched though a container of the image ran unwatched); None for
    another observation row (only evidence of watching is lost)."""
    if isinstance(u, HotSymbolDelta):
        return gap_of(u, window_seconds)
    if u.evidenced is not Posture.NONE:
        return None
    seconds = u.window_seconds or window_seconds
    start, first, end = _gap_span(u.window_start_ns, seconds)
    return ObservationWindow(u.image_digest, u.node_name, start, 0, None, seconds, "", first, end)


_MAX_NS = 2**63 - 1  # the largest time the store holds (a BIGINT of nanoseconds)


def _gap_span(start: int, window_seconds: int) -> tuple[int, int, int]:
    """(window start, gap start, gap end) of the gap over the window at ``start``, within what the
    store holds: a window a hostile spool line puts before 1970 (or past 2**63) is taken where the
    store's time begins (ends), so its gap is one (before, its end fell before its start: no gap,
    and a frozen batch's ``put_gap`` refused it; tests/integration/test_gap_hostile_window.py)."""
    window_ns = max(1, window_seconds) * 1_000_000_000
    at = min(max(start, 0), _MAX_NS - window_ns)
    return at, max(1, at), at + window_ns


def gap_of(d: HotSymbolDelta, window_seconds: int) -> ObservationWindow:
    """A dropped row's image, node and window lose evidence: a gap over the whole window."""
    start, first, end = _gap_span(d.window_start_ns, window_seconds)
    return ObservationWindow(
        d.key.image_digest, d.node_name, start, 0, None, window_seconds, "", first, end, 0, d.invocation_count
    )
