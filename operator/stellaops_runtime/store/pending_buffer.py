"""The outage buffer's rows before they are frozen: one row per key and window, merged as they come.

Split from :mod:`stellaops_runtime.store.pending`. A drained delta or observation window joins the
row of its (key, window) or (image, node, window), adding its counts; :func:`freeze` cuts the
buffer into batches of at most ``max_rows`` rows, oldest window first, that
:class:`~stellaops_runtime.store.pending.PendingWrites` then writes exactly once each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

from stellaops_runtime.contracts.hotsymbols import HotSymbolDelta, HotSymbolKey, ObservationWindow
from stellaops_runtime.store.batches import Unit


@dataclass(slots=True)
class Window:
    """Everything pending for one window_start."""

    deltas: dict[HotSymbolKey, HotSymbolDelta] = field(default_factory=dict)
    observations: dict[tuple[str, str], ObservationWindow] = field(default_factory=dict)  # (image, node)

    def __len__(self) -> int:
        return len(self.deltas) + len(self.observations)


Buffer = dict[int, Window]  # window_start_ns -> rows


def add_delta(buf: Buffer, d: HotSymbolDelta, *, copy: bool) -> bool:
    """Merge one delta in; True when it made a new row."""
    w = buf.get(d.window_start_ns)
    if w is None:
        w = buf[d.window_start_ns] = Window()
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
    k = (o.image_digest, o.node_name)
    have = w.observations.get(k)
    w.observations[k] = o if have is None else have.merged(o)
    return have is None


def freeze(buf: Buffer, max_rows: int) -> Iterator[list[Unit | None]]:
    """The buffer's rows, oldest window first (deltas, then observations), ``max_rows`` at a time."""
    units: list[Unit | None] = []
    for start in sorted(buf):
        w = buf[start]
        for part in (w.deltas.values(), w.observations.values()):
            for u in part:
                units.append(u)
                if len(units) == max_rows:
                    yield units
                    units = []
    if units:
        yield units
