"""A spool file set aside at start loses its counts: their windows become a gap (s38/x).

Defect (s38/x): the next agent moves a spool file it cannot read aside (damaged, truncated,
another format: a downgrade reading a newer agent's file) and counts it
(``store_spool_rows_total{event="corrupt"}``); its counts are lost. But the windows they
belong to may be in the store with the counts stored before them (the rows spooled at a
shutdown were frozen after the last rows the store took, often of the same window), and the
last agent's watch record says everything up to its stop was stored or spooled: those windows
read as watched without the lost counts, so "not observed" could rest on them, with no gap
anywhere. Now the store's latest window of the node starts the gap, as when the watch record is
lost (agent/watch_record.py ``spool_lost``). Real agents as subprocesses, a real PostgreSQL,
the synthetic stream (tests/fixtures/tetragon/synthetic).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _latest_window(url: str) -> dt.datetime:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        got = c.execute(
            sa.text("SELECT max(window_start) FROM signals.observation_windows WHERE node_name = :n"),
            {"n": x.NODE},
        ).scalar()
    eng.dispose()
    assert got is not None
    return got


async def test_a_spool_file_set_aside_makes_the_windows_it_held_a_gap(tmp_path: Path, pg_url: str) -> None:
    export, spool = tmp_path / "tetragon.log", str(tmp_path / "hot.spool")
    export.write_bytes(b"")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    procs: list[Any] = []
    try:
        cfg, port = h.write_config(tmp_path / "a", **x.conf(pg_url, spool, export, from_start=False))
        a = h.Output(h.start_agent(cfg))
        procs.append(a.proc)
        await h.wait_for(lambda: x.connected(port), what="A follows the file", timeout=60)
        x.append(export, x.lines(x.OBJS[:150]))
        await h.wait_for(lambda: x.settled(port, 150), what="A stored its counts", timeout=90)
        a.proc.send_signal(signal.SIGTERM)
        code, text_a = await asyncio.to_thread(a.finish, 60)
        assert code == 0, text_a
        latest = _latest_window(pg_url)
        assert x.none_gaps(pg_url) == []
        newer = b'{"format": "stellaops-runtime-spool", "version": 9}\n{"sha256": "00"}\n'
        await asyncio.to_thread(Path(spool).write_bytes, newer)  # another format: set aside
        b = h.Output(h.start_agent(h.write_config(tmp_path / "b", **x.conf(pg_url, spool, export))[0]))
        procs.append(b.proc)
        await h.wait_for(lambda: b.has("moved aside"), what="B set the spool file aside", timeout=60)
        await h.wait_for(lambda: b.has("resumed at byte"), what="B resumed", timeout=60)
        b.proc.send_signal(signal.SIGTERM)
        code, text_b = await asyncio.to_thread(b.finish, 60)
    finally:
        x.kill_all(procs)
    assert code == 0, text_b
    gaps = x.none_gaps(pg_url)
    assert any(start <= latest for start, _ in gaps), (latest, gaps, text_b)
