"""Counts another agent could only spool are never counted again from the export file (s38/x).

Defect (s38/x, left as a limit by s37): every transaction storing counts of the export file
writes the node's export position (store/export_position.py), and an agent about to resume
at its own watch record's checkpoint reads on from a further position another agent of the
node wrote (sources/export_store.py). But counts that other agent could only SPOOL (its store
unreachable at its shutdown, ``store.spoolPath``) are not in the store, nor is the position
they reach: the next agent (another spool path: a second install, an agent run by hand)
resumed at the older stored position, read those lines again and stored their counts, and
when the spool was replayed they were in the store twice. Now an agent marks its row final
only once its shutdown stored every count (store/export_position.py ``mark_final``), and a
row of another agent that is further on but not final is not resumed at: that agent's last
counts may be in a spool file (or were lost), so the file is read from where it ended when
this agent opened it, and the time since its record is a gap, never a count doubled.

Y follows the file and stores part A; the store goes away; Y reads part B and spools it at
its stop. X (another spool path, its record from before Y) starts with the store back, then
part C is written. Y's successor replays the spool (its load and first write, in the test's
process). Every line is counted exactly once. Real agents as subprocesses, a real PostgreSQL
behind a black-holing proxy (tests/pgproxy.py), the synthetic stream
(tests/fixtures/tetragon/synthetic).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
from pgproxy import PgProxy

from stellaops_runtime.agent.watch_record import record_path, write_record
from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.sources.export_checkpoint import ExportPositions
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.pending import PendingWrites
from stellaops_runtime.store.spool import read_spool
from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PROCESSED = "stellaops_runtime_event_processing_latency_seconds_count"
# shutdown.graceSeconds: Y's stop into the black hole must end within it by its own clock
# (docs/operations.md; s44/SG: with 3 s it took 3.85-4.07 s, the hung write's abort waits past it).
GRACE = 3


def _stale_record(spool: str, export: Path) -> None:
    """X's record from its earlier life: every line up to the file's current end is counted."""
    positions = ExportPositions(str(export), EventQueue(10))
    with export.open("rb") as f:
        f.seek(0, 2)
        positions.opened(f)
    cp = positions.checkpoint(0)
    assert cp is not None
    wall, boot = now_pair()
    write_record(
        record_path(spool), x.NODE, "e2e-node/x-before", wall, boot, {"committed": cp, "in_flight": None}
    )


def _start(tmp: Path, name: str, url: str, export: Path, procs: list[Any]) -> tuple[h.Output, int]:
    d = tmp / name
    d.mkdir(exist_ok=True)
    c = x.conf(url, str(tmp / f"{name[0]}.spool"), export, from_start=False)
    c["store"].update(flushTimeout="2s", statementTimeout="2s", connectTimeout="2s", tcpKeepalive="2s")
    cfg, port = h.write_config(d, **c, shutdown={"graceSeconds": GRACE})
    out = h.Output(h.start_agent(cfg))
    procs.append(out.proc)
    return out, port


async def _stop(out: h.Output) -> str:
    out.proc.send_signal(signal.SIGTERM)
    code, text = await asyncio.to_thread(out.finish, 60)
    assert code == 0, text
    return text


def _replay(url: str, spool: Path) -> None:
    """Y's successor on Y's spool path loads the file and writes it first (agent/spool_keeper.py,
    through the flush ledger), as at its start; its resume is test_export_stale_record's."""
    store = open_store(url)
    try:
        pending = PendingWrites(agent_id=f"{x.NODE}/y-next")
        pending.load(read_spool(spool) or [])
        assert pending.pending_rows > 0
        assert asyncio.run(pending.flush(store)) and pending.duplicate_rows == 0
    finally:
        store.close()


def _processed(port: int) -> float:
    return h.metric_sum(h.scrape(port), PROCESSED)


async def test_lines_another_agent_spooled_are_not_counted_again(
    tmp_path: Path, pg_url: str, proxy: PgProxy
) -> None:
    export = tmp_path / "tetragon.log"
    before, a, b, c = x.OBJS[:100], x.OBJS[100:250], x.OBJS[250:400], x.OBJS[400:550]
    export.write_bytes(x.lines(before))  # counted by X in its earlier life (its record says so)
    _stale_record(str(tmp_path / "x.spool"), export)
    url = proxy.url(pg_url)
    procs: list[Any] = []
    try:
        y, port_y = _start(tmp_path, "y1", url, export, procs)
        await h.wait_for(lambda: x.connected(port_y), what="Y follows the file", timeout=60)
        x.append(export, x.lines(a))
        await h.wait_for(lambda: x.settled(port_y, len(a)), what="Y stored part A", timeout=90)
        proxy.blackhole()  # the store goes away: Y's counts of part B can only be spooled
        x.append(export, x.lines(b))
        await h.wait_for(lambda: _processed(port_y) >= len(a) + len(b), what="Y read part B", timeout=60)
        text_y = await _stop(y)
        assert (tmp_path / "y.spool").exists(), text_y
        took = h.log_seconds(text_y, "stop requested (SIGTERM)", "agent stopped:")
        assert took < GRACE, f"Y's stop took {took:.2f}s with graceSeconds {GRACE}:\n{text_y}"
        proxy.heal()
        xa, port_x = _start(tmp_path, "x", url, export, procs)  # another spool path, a stale record
        await h.wait_for(lambda: x.connected(port_x), what="X follows the file", timeout=60)
        x.append(export, x.lines(c))
        await h.wait_for(lambda: x.settled(port_x, len(c)), what="X stored part C", timeout=90)
        text_x = await _stop(xa)
        await asyncio.to_thread(_replay, pg_url, tmp_path / "y.spool")  # as Y's successor does
    finally:
        x.kill_all(procs)
    assert x.stored(pg_url) == x.truth(a, b, c), text_x  # each line once
    assert "is not resumed" in text_x, text_x  # X could not tell where Y's counted lines end
