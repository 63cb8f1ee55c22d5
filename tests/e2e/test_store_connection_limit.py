"""More agents than the database takes connections: every agent writes, in turns, and the totals are exact.

Four real agents write as a role limited to two connections (``CONNECTION
LIMIT 2``: the server refuses a third with "too many connections", as it does
past ``max_connections``). Before, each agent kept its pooled connection for
life: the first two held both for good and the other two never wrote
(``/readyz`` 503 and their rows pending for ever, then lost or spooled at
shutdown). Now an agent gives its connection back after each flush, so the
others get their turn; ``/readyz`` and ``store_flush_failures_total`` tell the
truth while an agent waits. Ground truth: four times the stream's counts.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from pg import libpq_dsn
from sqlalchemy.engine import make_url

from stellaops_runtime.store.engine import open_store
from tests.e2e import harness as h
from tests.e2e.test_store_failures import GOOD, config, expected, processed, readyz, stored
from tests.e2e.test_store_fleet_agents import event_totals

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

AGENTS = 4
LIMIT = 2


def all_stored(port: int) -> bool:
    if readyz(port)[0] != 200:
        return False
    m = h.scrape(port)
    return (
        h.metric(m, "stellaops_runtime_hot_symbols_flushed_total") > 0
        and h.metric(m, "stellaops_runtime_hot_symbols_in_memory") == 0
        and h.metric(m, "stellaops_runtime_hot_symbols_pending") == 0
    )


async def test_more_agents_than_connections_all_write_exact_totals(
    tmp_path: Path, pg: Any, pg_url: str
) -> None:
    open_store(pg_url, migrate=True).close()
    url = make_url(pg_url)
    role = f"fleet_{url.database}"
    with psycopg.connect(libpq_dsn(pg_url), autocommit=True) as c:
        c.execute(f"DROP ROLE IF EXISTS {role}")
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'fleet' CONNECTION LIMIT {LIMIT}")
        c.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {url.database} TO {role}")
        c.execute(f"GRANT USAGE ON SCHEMA signals TO {role}")
        c.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA signals TO {role}")
        c.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA signals TO {role}")
    agent_url = url.set(username=role, password="fleet").render_as_string(hide_password=False)
    procs: list[Any] = []
    ports: list[int] = []
    try:
        for i in range(AGENTS):
            d = tmp_path / f"agent{i}"
            d.mkdir()
            export = d / "tetragon.log"
            export.write_bytes(b"\n".join(GOOD) + b"\n")
            cfg, port = config(
                d, agent_url, export, migrate=False, flushTimeout="20s", statementTimeout="20s"
            )
            doc = yaml.safe_load(cfg.read_text())
            doc["nodeName"] = f"limited-node-{i}"
            cfg.write_text(yaml.safe_dump(doc))
            procs.append(h.start_agent(cfg))
            ports.append(port)
        for port in ports:
            await h.wait_for(lambda port=port: processed(port) == len(GOOD), what="every event processed")
        for port in ports:
            await h.wait_for(lambda port=port: all_stored(port), what="every row stored", timeout=120)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*(asyncio.to_thread(h.finish, p, 60) for p in procs))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for code, out in results:
        assert code == 0, out
        assert "Traceback" not in out, out
    assert stored(pg_url) == {k: v * AGENTS for k, v in expected().items()}
    assert event_totals(pg_url) == len(GOOD) * AGENTS
