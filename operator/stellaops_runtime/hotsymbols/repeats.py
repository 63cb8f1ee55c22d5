"""The hot-symbol aggregator's side of the agent's fast path: counting an event again on its slots.

Why this module exists: split from hotsymbols/aggregate.py (which observes
events and drains them), it holds what agent/fastpath.py asks of the
aggregator for a repeat of an event it processed: the slots and observation
window an observation counted in (:meth:`RepeatCounting.observe_bound`), and
one more count on them (:meth:`RepeatCounting.repeat`), the same outcome as
observing the event again in the same window and epoch. Pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stellaops_runtime.contracts.events import RuntimeCallEvent
from stellaops_runtime.hotsymbols.slots import Slot

if TYPE_CHECKING:
    from stellaops_runtime.hotsymbols.window_counts import WindowCounts


class RepeatCounting:
    """Mixed into HotSymbolAggregator, which sets these attributes and defines ``observe``."""

    _window_ns: int
    _windows: WindowCounts
    _build_ids: dict[str, dict[str, str]]
    touched: list[Slot] | None
    observations: int
    below_threshold: int

    def observe(self, ev: RuntimeCallEvent) -> int:  # pragma: no cover - HotSymbolAggregator's
        raise NotImplementedError

    @property
    def window_ns(self) -> int:
        return self._window_ns

    def observe_bound(self, ev: RuntimeCallEvent) -> tuple[int, list[Slot], list[Any]]:
        """:meth:`observe`, also returning the slots it counted in and its observation window's entry.

        An event exactly like ``ev`` later in the same window (and :attr:`epoch`) is
        then counted by :meth:`repeat` on those slots, with the same outcome.
        """
        touched: list[Slot] = []
        self.touched = touched
        try:
            n = self.observe(ev)
        finally:
            self.touched = None
        return n, touched, self.window_entry(ev)

    def window_entry(self, ev: RuntimeCallEvent) -> list[Any]:
        """The observation window ``ev`` was counted in ([events, posture rank, source])."""
        ts = ev.timestamp_ns
        return self._windows.entry(ev.image_key, ev.node_name, ts - ts % self._window_ns)

    def repeat(
        self, slots: list[Slot], window: list[Any], ts: int, lat: int, observations: int, below: int
    ) -> None:
        """Count one more event like the one :meth:`observe_bound` returned ``slots`` and ``window`` for.

        Only what differs between two such events changes: counts, first and last
        seen, latency. Build-ids, function IDs, callers and the window's posture and
        source were set by that first event and are never taken back in an epoch.
        """
        window[0] += 1
        for s in slots:
            s.count += 1
            if ts < s.first_ns:
                s.first_ns = ts
            elif ts > s.last_ns:
                s.last_ns = ts
            if lat:
                s.total_latency_ns += lat
                if lat > s.max_latency_ns:
                    s.max_latency_ns = lat
        self.observations += observations
        self.below_threshold += below

    def knows_build_ids(self, exec_id: str) -> bool:
        """Whether loader build-ids of this process are held (dropped at its exit or by the bound)."""
        return exec_id in self._build_ids
