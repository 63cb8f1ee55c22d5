"""A store away while the export agent restarts: the next agent still resumes exactly (s37/r5).

Defect (s37/r5): a restarting agent waits for the store's export position of its node before it
resumes at its watch record's checkpoint (sources/export_store.py). The wait ended after 60 s,
and then the file was read from its end: a store down longer while the agents restart (an
upgrade rolling every node while PostgreSQL fails over) made every node lose the lines written
meanwhile as a gap, where it resumed exactly before. The file keeps those lines, so the agent now
waits for the store as long as waiting loses nothing (sources/export_restart.py), then resumes
at its checkpoint: each line once, none lost, no gap. The 60 s themselves are not waited here
(tests/integration/test_export_position_wait.py shortens them): the store is black-holed
(tests/pgproxy.py) from before the agent starts until it has failed to open it and lines were
written to the file meanwhile. The last agent's life is its watch record alone (written with the
agent's own code, as a stopped agent leaves it), so the test runs one agent.

Real agents as subprocesses, a real PostgreSQL, the synthetic stream
(tests/fixtures/tetragon/synthetic, copied from /work/shared/fixtures/tetragon).
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
from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _conf(url: str, spool: str, export: Path) -> dict[str, Any]:
    c = x.conf(url, spool, export)
    c["store"].update(connectTimeout="2s", statementTimeout="2s")
    return c


def _record(spool: str, export: Path) -> None:
    """The last agent's record: every line up to the file's current end is counted (a committed
    checkpoint, as a stopped agent leaves it; written with the agent's own code)."""
    positions = ExportPositions(str(export), EventQueue(10))
    with export.open("rb") as f:
        f.seek(0, 2)
        positions.opened(f)
    cp = positions.checkpoint(0)
    assert cp is not None
    wall, boot = now_pair()
    doc = {"committed": cp, "in_flight": None}
    write_record(record_path(spool), x.NODE, "e2e-node/a-before", wall, boot, doc)


async def test_a_store_away_at_restart_still_resumes_exactly(
    tmp_path: Path, pg_url: str, proxy: PgProxy
) -> None:
    spool, export = str(tmp_path / "spool.jsonl"), tmp_path / "tetragon.log"
    first, hole, last = x.OBJS[: x.THIRD], x.OBJS[x.THIRD : 2 * x.THIRD], x.OBJS[2 * x.THIRD :]
    export.write_bytes(x.lines(first))  # counted by the last agent (its record says so)
    _record(spool, export)
    x.append(export, x.lines(hole))  # written while no agent runs
    proxy.blackhole()  # PostgreSQL fails over while the agent restarts
    procs: list[Any] = []
    try:
        cfg, port = h.write_config(tmp_path, **_conf(proxy.url(pg_url), spool, export))
        b = h.Output(h.start_agent(cfg))
        procs.append(b.proc)
        await h.wait_for(lambda: b.has("not usable (will retry)"), what="the store is away", timeout=60)
        assert not x.connected(port), b.text()  # the agent waits for the store's export position
        await asyncio.to_thread(x.append, export, x.lines(last))  # written while it waits
        proxy.heal()
        await h.wait_for(lambda: x.settled(port, len(hole) + len(last)), what="the rest stored", timeout=90)
        b.proc.send_signal(signal.SIGTERM)
        code_b, out_b = await asyncio.to_thread(b.finish, 60)
    finally:
        x.kill_all(procs)
    assert code_b == 0, out_b
    assert "resumed at byte" in out_b and "is not resumed" not in out_b, out_b
    assert "are a gap" not in out_b, out_b  # nothing was in doubt
    assert x.stored(pg_url) == x.truth(hole, last)  # each line once: none twice, none lost
    assert x.none_gaps(pg_url) == []  # the hole's lines were read: it was watched
