"""A real ``stella-runtime agent`` on PostgreSQL writes through its own client (pgwire), exactly.

The agent subprocess follows an export file the test writes (the synthetic stream,
tests/fixtures/tetragon/synthetic) and flushes into the test's database. Its store connections
are pgwire's (store/pg_connect.py): neither psycopg's extension nor libpq is mapped in the
process. The server is stopped while the agent holds counts and started again (the agent's
retry path: connections lost, new ones opened): the stored totals are still exactly the
stream's, nothing lost, nothing counted twice.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = pytest.mark.postgres


def mapped(pid: int, *names: str) -> list[str]:
    """The files among the process's mappings whose path holds one of ``names``."""
    with open(f"/proc/{pid}/maps") as f:
        paths = {line.split()[-1] for line in f if "/" in line}
    return sorted(p for p in paths if any(n in p for n in names))


async def test_an_agent_flushes_through_pgwire_exactly_across_a_server_restart(
    tmp_path: Path, pg: Any, pg_url: str
) -> None:
    export = tmp_path / "export" / "tetragon.log"
    export.parent.mkdir()
    export.write_bytes(b"")
    first, second = x.OBJS[: x.THIRD], x.OBJS[x.THIRD : 2 * x.THIRD]
    cfg, port = h.write_config(tmp_path, **x.conf(pg_url, str(tmp_path / "a.spool"), export))
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(lambda: x.connected(port), what="the agent follows the file", timeout=60)
        await asyncio.to_thread(x.append, export, x.lines(first))
        await h.wait_for(lambda: x.settled(port, len(first)), what="the first third stored", timeout=60)
        assert x.stored(pg_url) == x.truth(first)
        # pgwire's connections: no psycopg extension, no libpq nor the OpenSSL it bundles
        # (psycopg_binary.libs/); the system's libssl is asyncio's, in every agent.
        assert mapped(proc.pid, "libpq", "psycopg") == []

        pg.stop()
        try:
            await asyncio.to_thread(x.append, export, x.lines(second))
            await h.wait_for(
                lambda: h.metric(h.scrape(port), "stellaops_runtime_store_flush_failures_total") > 0,
                what="a flush failed with the server down",
                timeout=60,
            )
        finally:
            pg.start()
        n = len(first) + len(second)
        await h.wait_for(lambda: x.settled(port, n), what="the second third stored", timeout=90)
        assert mapped(proc.pid, "libpq", "psycopg") == []
        exit_code, out = await x.stop(proc, signal.SIGTERM)
    finally:
        x.kill_all([proc])
    assert exit_code == 0, out
    assert "opened with psycopg" not in out, out
    assert x.stored(pg_url) == x.truth(first, second)  # every line once, none lost in the outage
