"""A store down for an agent's whole life, its node's watch record lost: the hole before it is a gap.

Defect (s35/h2), reproduced with real agents as subprocesses, a real PostgreSQL and a TCP proxy
of our own that black-holes it (tests/pgproxy.py): A ran and stored; its record was lost; B ran
with the store silent from its start to its SIGTERM, so B never learnt where the hole since A
began (agent/node_history.py asks as the store opens); B spooled its rows and left its own
record. The next agent C found that record: its gap started at B's last moment, and nobody asked
the store again, so the hole between A and B was never a gap and ``query observed`` could answer
"not observed" over it. Now B, stopping without the store's answer, marks the time from the
node's boot until it watched as a gap in its last drain (spooled, stored by C).

The stream is the synthetic one (tests/fixtures/tetragon/synthetic, copied from
/work/shared/fixtures/tetragon).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from pathlib import Path
from typing import Any

import pytest
from pgproxy import PgProxy

from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


async def test_the_hole_before_an_agent_the_store_never_answered_is_a_gap(
    tmp_path: Path, pg_url: str, proxy: PgProxy
) -> None:
    spool, export = str(tmp_path / "spool.jsonl"), tmp_path / "tetragon.log"
    await asyncio.to_thread(export.write_bytes, b"")
    first, hole, last = x.OBJS[: x.THIRD], x.OBJS[x.THIRD : 2 * x.THIRD], x.OBJS[2 * x.THIRD :]
    procs: list[Any] = []
    try:
        await asyncio.to_thread((tmp_path / "a").mkdir)
        cfg_a, port_a = h.write_config(tmp_path / "a", **x.conf(pg_url, spool, export))
        procs.append(h.start_agent(cfg_a))
        await asyncio.to_thread(x.append, export, x.lines(first))
        await h.wait_for(lambda: x.settled(port_a, len(first)), what="A stored the first third", timeout=60)
        await h.wait_for(lambda: x.committed_on_disk(spool), what="A recorded the stored position")
        code_a, out_a = await x.stop(procs[0], signal.SIGKILL)
        assert code_a == -signal.SIGKILL, out_a
        await asyncio.to_thread(Path(spool + ".alive").unlink)  # the hostPath wiped: no record
        hole_from = dt.datetime.now(dt.UTC)
        await asyncio.to_thread(x.append, export, x.lines(hole))  # written while no agent runs
        hole_to = dt.datetime.now(dt.UTC)
        proxy.blackhole()  # B's store never answers
        await asyncio.to_thread((tmp_path / "b").mkdir)
        conf_b = x.conf(proxy.url(pg_url), spool, export, from_start=False)
        conf_b["store"].update(connectTimeout="2s", statementTimeout="2s")
        # B's stop tries the silent store until its deadline less the spool's reserve (2.25 s here)
        cfg_b, port_b = h.write_config(tmp_path / "b", **conf_b, shutdown={"graceSeconds": 3})
        procs.append(h.start_agent(cfg_b))
        await h.wait_for(lambda: x.connected(port_b), what="B follows the file", timeout=60)
        await asyncio.to_thread(x.append, export, x.lines(last))
        n = "stellaops_runtime_event_processing_latency_seconds_count"
        await h.wait_for(
            lambda: h.metric(h.scrape(port_b), n) >= len(last), what="B read the rest", timeout=60
        )
        code_b, out_b = await x.stop(procs[1])
        assert code_b == 0, out_b  # everything spooled
        proxy.heal()
        await asyncio.to_thread((tmp_path / "c").mkdir)
        cfg_c, _ = h.write_config(tmp_path / "c", **x.conf(pg_url, spool, export, from_start=False))
        procs.append(h.start_agent(cfg_c))  # B's record, B's spool
        await h.wait_for(
            lambda: x.stored(pg_url) == x.truth(first, last), what="B's spool stored", timeout=60
        )
        code_c, out_c = await x.stop(procs[2])
    finally:
        x.kill_all(procs)
    assert code_c == 0, out_c
    assert x.stored(pg_url) == x.truth(first, last)
    gaps = x.none_gaps(pg_url)
    assert any(a <= hole_from and hole_to <= b for a, b in gaps), (gaps, hole_from, hole_to)
    x.unknown_answer(pg_url)
    assert "the store never said whether an agent ran on node" in out_b, out_b
