"""Counts of an agent whose store was down its whole life are stored once, never twice (s39/x).

Defect (s38/rx, documented as a limit in docs/operations.md): the node's export position row
is written only with stored counts, so an agent Y whose store was away for its whole life
left no trace in the store: it spooled every count at its stop. An agent X of another
``store.spoolPath`` (a second install, a pod replaced onto another hostPath) with an older
watch record resumed at that record, read Y's lines again and stored them; when Y's
successor replayed the spool, those lines were counted twice, every agent exiting 0.

Now every batch carries the spans of the export file its agent counted (file inode, first
and last byte), the spool keeps them, every transaction storing counts writes them
(store/export_spans.py), and a spooled batch whose span another agent's stored counts
overlap is not stored: its windows become gaps (unknown), never a count doubled.

Y follows the file with its store black-holed from its start (tests/pgproxy.py) and spools
part A at its stop. X (another spool path, its record from before Y) starts with the store
back, resumes at its record and counts A and then C. Y's successor replays the spool
(its load and first write, in the test's process). Real agents as subprocesses, a real
PostgreSQL behind the proxy, the synthetic stream (tests/fixtures/tetragon/synthetic).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pgproxy import PgProxy

from tests.e2e import export_agents as x
from tests.e2e import harness as h
from tests.e2e.test_export_spooled_position import _processed, _replay, _stale_record, _start, _stop

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _image_gaps(url: str) -> int:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        n = c.execute(
            sa.text(
                "SELECT count(*) FROM signals.observation_windows WHERE image_digest <> '' "
                "AND gap_end IS NOT NULL AND node_name = :n"
            ),
            {"n": x.NODE},
        ).scalar_one()
    eng.dispose()
    return int(n)


async def test_counts_spooled_by_an_agent_whose_store_never_answered_are_stored_once(
    tmp_path: Path, pg_url: str, proxy: PgProxy
) -> None:
    export = tmp_path / "tetragon.log"
    before, a, c = x.OBJS[:100], x.OBJS[100:300], x.OBJS[300:450]
    export.write_bytes(x.lines(before))  # counted by X in its earlier life (its record says so)
    _stale_record(str(tmp_path / "x.spool"), export)
    url = proxy.url(pg_url)
    procs: list[Any] = []
    try:
        proxy.blackhole()  # Y's store never answers: it stores nothing, writes no position
        y, port_y = _start(tmp_path, "y1", url, export, procs)
        await h.wait_for(lambda: x.connected(port_y), what="Y follows the file", timeout=60)
        x.append(export, x.lines(a))
        await h.wait_for(lambda: _processed(port_y) >= len(a), what="Y read part A", timeout=60)
        text_y = await _stop(y)
        assert (tmp_path / "y.spool").exists(), text_y
        proxy.heal()
        xa, port_x = _start(tmp_path, "x", url, export, procs)  # another spool path, a stale record
        await h.wait_for(lambda: x.connected(port_x), what="X follows the file", timeout=60)
        x.append(export, x.lines(c))
        await h.wait_for(lambda: x.settled(port_x, len(a) + len(c)), what="X stored A and C", timeout=90)
        text_x = await _stop(xa)
        await asyncio.to_thread(_replay, pg_url, tmp_path / "y.spool")  # Y's successor
    finally:
        x.kill_all(procs)
    assert x.stored(pg_url) == x.truth(a, c), text_x  # each line once: X's counts of A, not Y's too
    assert _image_gaps(pg_url) > 0  # Y's spooled windows are said to be in doubt, not dropped silently
