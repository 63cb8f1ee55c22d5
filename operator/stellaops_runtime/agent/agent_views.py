"""The node agent's views for metrics and health: what ``/metrics`` and ``/readyz`` read of it.

Split from :mod:`stellaops_runtime.agent.runner` (a mixin of its ``Agent``: the attributes are the
Agent's) so the agent's lifecycle stays readable on its own: these are read-only views of its
parts (the flusher, the source, the queue, Tetragon's drop counters, the node's lock) and the
readiness rule ``/readyz`` answers with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stellaops_runtime.agent.lifecycle_part import lifecycle_state
from stellaops_runtime.contracts.redact import redact

if TYPE_CHECKING:
    from stellaops_runtime.agent.flusher import Flusher
    from stellaops_runtime.agent.node_presence import NodePresence
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.agent.watch_record import WatchRecord
    from stellaops_runtime.sources.queue import EventQueue
    from stellaops_runtime.sources.tetragon_metrics import TetragonDropStats
    from stellaops_runtime.store.pending import PendingWrites
    from stellaops_runtime.store.writer import HotSymbolStore


class AgentViews:
    """Read-only views of the ``Agent`` for metrics and health (a mixin)."""

    flusher: Flusher
    source: Any
    queue: EventQueue
    witness: Any
    presence: NodePresence
    watch: WatchRecord
    lifecycle: Any
    pipeline: Pipeline
    config: Any
    _poller: Any
    pending: PendingWrites

    @property
    def witnesses_generated(self) -> int:
        return self.witness.generated if self.witness is not None else 0

    def _store_engine(self) -> Any:
        return self.store.engine if self.store is not None else None

    @property
    def store(self) -> HotSymbolStore | None:
        return self.flusher.store

    @property
    def config_error(self) -> str:
        return self.flusher.config_error

    @property
    def lost_rows(self) -> int:
        return self.flusher.spool.lost_rows

    @property
    def source_name(self) -> str:
        return self.source.name

    @property
    def source_stats(self) -> Any:
        return self.source.stats

    @property
    def received(self) -> int:
        return self.queue.enqueued + self.queue.dropped

    @property
    def tetragon_drops(self) -> TetragonDropStats | None:
        return self._poller.stats if self._poller else None

    @property
    def tetragon_unreadable(self) -> bool:
        """Tetragon's metrics have not been read for over an interval: its losses are unknown."""
        return self._poller.unreadable if self._poller else False

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        detail = {
            "source": self.source_name,
            "source_connected": bool(self.source_stats.connected),
            "store_open": self.store is not None,
            "store_pending_rows": self.pending.pending_rows,
            "store_last_error": redact(self.pending.last_error) if self.pending.last_error else None,
            "store_write_overdue_seconds": round(self.flusher.flush_stuck(), 1),
            "other_agent_on_node": (  # the node's lock, or its export file's (sources/export_lock.py)
                self.presence.other_agent or getattr(self.source_stats, "other_agent", False) is True
            ),
            "export_unguarded": getattr(self.source_stats, "unguarded", False) is True,  # ready still
            "export_position_unrecorded": self.watch.unrecorded,  # nothing stored (agent/watch_record.py)
            "lifecycle": lifecycle_state(self.lifecycle, self.pipeline),  # agent/lifecycle_part.py
        }
        ready = (
            not self.presence.other_agent
            and not self.watch.unrecorded
            and detail["source_connected"]
            and self.store is not None
            and not self.pending.last_error
            and not detail["store_write_overdue_seconds"]
        )
        return bool(ready), detail

    def unreachable_message(self) -> str:
        t = self.config.tetragon
        where = f"export file {t.export_file}" if t.export_file else f"Tetragon at {redact(t.address)}"
        why = redact(getattr(self.source_stats, "last_error", "") or "no connection was made")
        return f"{where} was never reachable ({why}); no event was received"
