"""Wiring the node's watch record (agent/watch_record.py) into a running agent.

Split from :mod:`stellaops_runtime.agent.watch_record` (the record itself: what it claims and
when it writes): :func:`attach_watch_record` reads the last agent's record, hands its hole to
the source and connects the record to the flusher, the spool, the outage marker and the node
status (agent/runner.py calls it before the source runs); :func:`_cap` is the bound Tetragon's
losses and the policy loads put on the moment a flush may claim.
"""

from __future__ import annotations

from typing import Any

from stellaops_runtime.agent.watch_record import WatchRecord
from stellaops_runtime.agent.watch_record_file import record_path


def _cap(outages: Any) -> int | None:
    """The latest moment a record may claim as a flush starts: Tetragon's losses are in the
    pipeline up to it (sources/tetragon_metrics.py ``marked_through``), and no policy-load span
    not in it yet starts before it (agent/policy_load_gaps.py ``unstored_from``), nor a node file's
    (agent/node_file_gaps.py); None: no bound."""
    policies = getattr(outages, "policies", None)
    files = getattr(outages, "node_files", None)  # agent/node_file_gaps.py: a probed node file replaced
    caps = [getattr(outages.drops, "marked_through", None), policies.unstored_from() if policies else None]
    caps.append(files.unstored_from() if files is not None else None)
    known = [c for c in caps if c is not None]
    return min(known) if known else None


def attach_watch_record(agent: Any) -> WatchRecord:
    """The agent's record (agent/runner.py): resumes the last agent's hole, ticks with the outage marker."""
    rec = WatchRecord(
        record_path(agent.config.store.spool_path),
        node=agent.node_name,
        agent_id=agent.agent_id,
        queue=agent.queue,
    )
    rec.resume(agent.source)
    rec.source = agent.source
    rec.spool_window_ns = lambda: agent.flusher.spool.window_ns
    rec.spool_lost_since = lambda: agent.flusher.spool.lost_since_ns
    rec.drops_through = lambda: _cap(agent.outages)
    agent.flusher.on_open = rec.store_opened
    agent.flusher.spool.on_lost = rec.spool_lost
    agent.outages.record = rec
    agent.flusher.pending.position_of = lambda: rec.export.store_position(agent.node_name, agent.agent_id)
    lock = getattr(agent.source, "lock", None)  # sources/export_lock.py: an export source's
    if lock is not None:  # its spooled counts are checked against the others' (store/export_spans.py)
        agent.flusher.pending.spool_gate = lambda: bool(lock.held or lock.unguarded)
    # Without the lock (no export source, or unguarded: held yet a directory made again at the path
    # not locked, which another agent may follow) another agent's counts of a spooled batch's lines
    # may be in flight, with no trace yet, while it is checked: stored as gaps (store/export_spans.py).
    agent.flusher.pending.spool_unlocked = (
        (lambda: not lock.held or lock.unguarded) if lock is not None else (lambda: True)
    )
    if getattr(agent, "node_status", None) is not None:  # its ExportPositionRecorded condition
        agent.node_status.record = rec
    return rec
