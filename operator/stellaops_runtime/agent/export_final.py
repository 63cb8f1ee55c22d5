"""At a shutdown that stored every count: the node's export position says so (``final``).

A row of ``export_positions`` (store/export_position.py) is written with every batch of counts
of the export file, so it says where the stored counts may reach; it cannot say whether its
agent counted lines after it that only reached the spool file (the store down at its shutdown)
or were lost (killed). An agent of another spool path that resumed there read those lines
again, and once the spool was replayed they were in the store twice. So a shutdown that
stored every count (nothing spooled, nothing dropped, no drain held or cut short) marks the
row final while it still holds the export lock (agent/runner.py releases it after), and only a
final row of another agent is resumed at (sources/export_store.py). It uses the store the agent
opened (one never opened in its life is not waited for at its stop). Any failure here leaves
the row not final: the next agent of another spool path then reads from the file's end with
a gap, never a line twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from stellaops_runtime.store.threads import run_detached

log = logging.getLogger("stellaops_runtime.agent.runner")


def all_stored(agent: Any, ok: bool) -> bool:
    """The shutdown (``ok``: stored or spooled everything) stored every count, spooling none."""
    return (
        ok
        and not agent.dropped_at_shutdown
        and not agent.flusher.spool.spooled_rows
        and not agent.flusher.pending.pending_rows
        and not agent.watch.unrecorded
    )


async def mark_final(agent: Any, deadline: float) -> bool:
    """Mark the node's export position final (see the module docstring), before ``deadline``
    (monotonic); True if it was written. Nothing for a source other than the export file."""
    position = agent.watch.export.store_position(agent.node_name, agent.agent_id)
    store = agent.flusher.store
    if position is None or store is None:  # no store opened in this agent's life: none is waited for
        return False
    from stellaops_runtime.store.export_position import mark_final as write_final

    try:
        if deadline - time.monotonic() <= 0:
            raise TimeoutError("no time left before the shutdown deadline")
        fut = run_detached(write_final, store.db, position, name="export-final")
        await asyncio.wait_for(asyncio.shield(fut), timeout=max(0.0, deadline - time.monotonic()))
    except Exception as e:  # not final: the safe side (a gap for the next agent of another path)
        log.warning("the export position was not marked final (%r): an agent of this node with another "
                    "store.spoolPath will not resume where this one stopped", e)  # fmt: skip
        return False
    return True
