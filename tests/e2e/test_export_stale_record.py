"""Two agents of one node, one with a stale watch record: the export file is never counted twice.

Probe (s36, left alone; s37/b): the export follower resumes at the checkpoint of its node's
watch record, which lies beside ``store.spoolPath``. Two agents of one node with different
spool paths (a second install, an agent run by hand beside the DaemonSet's pod) keep two
records, and the export lock keeps them from following the file at once, not one after the
other: agent X's record says its counts end after the first part; agent Y (another spool
path) followed the file through the second part, stored it and stopped; X, started again,
resumed at its own record's checkpoint and counted the second part a second time. Now every
transaction storing counts of the file writes the node's export position
(store/export_position.py, migration 0011) and a resuming agent never reads before it
(sources/export_store.py): X reads on after Y's lines.

X's earlier life is its watch record alone (written with the agent's own code at the end of
the first part, as a stopped X leaves it), so the test runs two agents. Real agents as
subprocesses, a real PostgreSQL, the synthetic stream (tests/fixtures/tetragon/synthetic,
copied from /work/shared/fixtures/tetragon).
"""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.agent.watch_record import record_path, write_record
from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources.export_checkpoint import ExportPositions
from stellaops_runtime.sources.queue import EventQueue
from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

RESUMED = re.compile(r"export file \S+ resumed at byte (\d+)")


def _stale_record(spool: str, export: Path) -> None:
    """X's record: every line up to the file's current end is counted (a committed checkpoint)."""
    positions = ExportPositions(str(export), EventQueue(10))
    with export.open("rb") as f:
        f.seek(0, 2)
        positions.opened(f)
    cp = positions.checkpoint(0)
    assert cp is not None
    wall, boot = now_pair()
    doc = {"committed": cp, "in_flight": None}
    write_record(record_path(spool), x.NODE, "e2e-node/x-before", wall, boot, doc)


def _start(tmp: Path, name: str, url: str, export: Path, procs: list[Any]) -> tuple[h.Output, int]:
    d = tmp / name
    d.mkdir(exist_ok=True)
    cfg, port = h.write_config(d, **x.conf(url, str(tmp / f"{name}.spool"), export, from_start=False))
    out = h.Output(h.start_agent(cfg))
    procs.append(out.proc)
    return out, port


async def _stop(out: h.Output) -> str:
    out.proc.send_signal(signal.SIGTERM)
    code, text = await asyncio.to_thread(out.finish, 60)
    assert code == 0, text
    return text


async def test_an_agent_with_a_stale_record_resumes_after_another_agents_stored_lines(
    tmp_path: Path, pg_url: str
) -> None:
    export = tmp_path / "tetragon.log"
    first, second = x.OBJS[:200], x.OBJS[200:400]  # each with uprobe events
    export.write_bytes(x.lines(first))  # counted by X in its earlier life (its record says so)
    _stale_record(str(tmp_path / "x.spool"), export)
    procs: list[Any] = []
    try:
        y, port_y = _start(tmp_path, "y", pg_url, export, procs)  # another spool path, no record
        await h.wait_for(lambda: x.connected(port_y), what="Y follows the file", timeout=60)
        x.append(export, x.lines(second))
        await h.wait_for(lambda: x.settled(port_y, len(second)), what="Y stored its lines", timeout=90)
        await _stop(y)
        assert x.stored(pg_url) == x.truth(second)
        end = export.stat().st_size
        xa, port_x = _start(tmp_path, "x", pg_url, export, procs)  # X again: its record is stale
        await h.wait_for(lambda: x.connected(port_x), what="X follows the file", timeout=60)
        await h.wait_for(lambda: RESUMED.search(xa.text()) is not None, what="X says where it resumed")
        text = await _stop(xa)  # a graceful stop stores what it read (nothing, resumed at the end)
    finally:
        x.kill_all(procs)
    resumed = RESUMED.search(text)
    assert resumed is not None, text
    assert int(resumed[1]) == end, f"X resumed at byte {resumed[1]}, Y's stored counts end at {end}"
    assert x.stored(pg_url) == x.truth(second), "a line counted twice"
    assert "past this agent's record (the store's export position)" in text
