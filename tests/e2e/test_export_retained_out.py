"""A lost watch record after retention removed every window of the node (RAU's item 1, AU's item 4).

Defect, reproduced with real agents as subprocesses and a real PostgreSQL: agent A follows the
export file and stops; the node's watch record is lost; retention (``store.retentionDays``) then
removes every observation window of the node. Agent B, with ``exportFromStart``, asked the store
whether an agent ran on the node (agent/node_history.py), saw no window, took itself for the node's
first agent and read the file from its first line: every line A had stored was counted twice.
The node's ``export_positions`` row (migration 0011), which retention keeps, now says an agent ran:
B reads the file from its end, and the time since that row's moment is a gap.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _retain(url: str) -> int:
    """Real retention (31 days) run as if 60 days later: every window of the node goes; its rows left."""
    from stellaops_runtime.agent.node_history import last_window_ns
    from stellaops_runtime.store.engine import open_store

    store = open_store(url, retention_days=31)
    try:
        store.maintain(now=dt.datetime.now(dt.UTC) + dt.timedelta(days=60))
        assert last_window_ns(store.db, x.NODE) is None
        with store.db.connect() as conn:
            return len(conn.execute("SELECT 1 FROM signals.export_positions").rows)
    finally:
        store.close()


async def test_a_lost_record_after_retention_never_replays_what_the_store_holds(
    tmp_path: Path, pg_url: str
) -> None:
    spool, export = str(tmp_path / "spool.jsonl"), tmp_path / "tetragon.log"
    export.write_bytes(b"")
    first, last = x.OBJS[: x.THIRD], x.OBJS[2 * x.THIRD :]
    procs: list[Any] = []
    try:
        (tmp_path / "a").mkdir()
        cfg_a, port_a = h.write_config(tmp_path / "a", **x.conf(pg_url, spool, export))
        procs.append(h.start_agent(cfg_a))
        await asyncio.to_thread(x.append, export, x.lines(first))
        await h.wait_for(lambda: x.settled(port_a, len(first)), what="A stored the first third")
        code_a, out_a = await x.stop(procs[0])
        assert code_a == 0, out_a
        await asyncio.to_thread(Path(spool + ".alive").unlink)  # the hostPath wiped: no record
        assert await asyncio.to_thread(_retain, pg_url) == 1  # the node's export position is kept
        (tmp_path / "b").mkdir()
        cfg_b, port_b = h.write_config(tmp_path / "b", **x.conf(pg_url, spool, export))
        procs.append(h.start_agent(cfg_b))
        await h.wait_for(lambda: x.connected(port_b), what="B follows the file")
        await asyncio.to_thread(x.append, export, x.lines(last))
        await h.wait_for(lambda: x.settled(port_b, len(last)), what="B stored what it read")
        code_b, out_b = await x.stop(procs[1])
    finally:
        x.kill_all(procs)
    assert code_b == 0, out_b
    assert x.stored(pg_url) == x.truth(first, last)  # A's lines once, not twice
    assert "the first agent on this node" not in out_b, out_b
    assert "the time since is a gap" in out_b, out_b
