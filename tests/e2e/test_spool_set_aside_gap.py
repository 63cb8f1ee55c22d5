"""A spool file set aside at start loses its counts: their windows become a gap (s38/x).

Defect (s38/x): the next agent moves a spool file it cannot read aside (damaged, truncated,
another format: a downgrade reading a newer agent's file) and counts it
(``store_spool_rows_total{event="corrupt"}``); its counts are lost. But the windows they
belong to may be in the store with the counts stored before them (the rows spooled at a
shutdown were frozen after the last rows the store took, often of the same window), and the
last agent's watch record says everything up to its stop was stored or spooled: those windows
read as watched without the lost counts, so "not observed" could rest on them, with no gap
anywhere. Now the store's latest window of the node starts the gap, as when the watch record is
lost (agent/watch_record.py ``spool_lost``). The last agent's life is its stored window and its
watch record (written with the agent's own code, as a stopped agent leaves it), so the test
runs one agent: the real CLI as a subprocess, a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from stellaops_runtime.agent.watch_record import record_path, write_record
from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources.export_checkpoint import ExportPositions
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.store.engine import open_store
from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _last_agent(url: str, spool: str, export: Path) -> int:
    """The last agent stored a window of the node 2 minutes ago and stopped with every line of
    the file counted (its record's committed checkpoint); returns that window's start."""
    start = (time.time_ns() // 10**9 - 120) * 10**9
    store = open_store(url)
    try:
        store.write([], [ObservationWindow(h.EXPECTED["images"][0]["digest"], x.NODE, start, 5)])
    finally:
        store.close()
    positions = ExportPositions(str(export), EventQueue(10))
    with export.open("rb") as f:
        f.seek(0, 2)
        positions.opened(f)
    wall, boot = now_pair()
    doc = {"committed": positions.checkpoint(0), "in_flight": None}
    write_record(record_path(spool), x.NODE, "e2e-node/before", wall, boot, doc)
    return start


async def test_a_spool_file_set_aside_makes_the_windows_it_held_a_gap(tmp_path: Path, pg_url: str) -> None:
    export, spool = tmp_path / "tetragon.log", str(tmp_path / "hot.spool")
    export.write_bytes(x.lines(x.OBJS[:10]))
    start = _last_agent(pg_url, spool, export)
    newer = b'{"format": "stellaops-runtime-spool", "version": 9}\n{"sha256": "00"}\n'
    await asyncio.to_thread(Path(spool).write_bytes, newer)  # another format: set aside
    cfg, _ = h.write_config(tmp_path, **x.conf(pg_url, spool, export))
    b = h.Output(h.start_agent(cfg))
    try:
        await h.wait_for(lambda: b.has("moved aside"), what="the spool file set aside", timeout=60)
        await h.wait_for(lambda: b.has("resumed at byte"), what="the agent resumed", timeout=60)
        b.proc.send_signal(signal.SIGTERM)
        code, text = await asyncio.to_thread(b.finish, 60)
    finally:
        x.kill_all([b.proc])
    assert code == 0, text
    gaps = x.none_gaps(pg_url)
    assert any(a.timestamp() * 10**9 <= start for a, _ in gaps), (start, gaps, text)
