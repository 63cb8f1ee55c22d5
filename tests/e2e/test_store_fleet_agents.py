"""Three real agents write the same keys to one PostgreSQL while it loses their acknowledgements.

Each agent is a ``stella-runtime agent`` subprocess reading its own copy of the
synthetic Tetragon stream (so every key and every observation window is
written by all three at once), through its own TCP proxy (tests/pgproxy.py)
that swallows the server's reply to two of its ledger COMMITs and cuts the
connection. Meanwhile the server ends (``pg_terminate_backend``) the first
backends it finds writing. Ground truth is three times the stream's expected
counts: every hot-symbol count, every observation window's events, nothing
quarantined, each lost acknowledgement found in the ledger ("already stored").
The in-process fleet of 20 writers is tests/integration/test_store_fleet.py.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
import yaml
from pg import libpq_dsn
from pgproxy import PgProxy

from tests.e2e import harness as h
from tests.e2e.test_store_failures import GOOD, config, expected, processed, readyz, stored

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

AGENTS = 3


def terminate_writers(dsn: str, stop: threading.Event, ended: list[int], most: int) -> None:
    """End the first ``most`` backends seen in a write of the hot-symbol tables (COPY or INSERT)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        while not stop.is_set() and len(ended) < most:
            rows = c.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state = 'active' "
                "AND (query LIKE 'COPY pg_temp.%%' OR query LIKE '%%INSERT INTO signals.hot_symbol%%')"
            ).fetchall()
            for (pid,) in rows[:1]:
                if c.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,):
                    ended.append(pid)
            stop.wait(0.005)


def pending(port: int) -> float:
    """Rows not yet stored (-1 until the store is open and confirmed, so 0 means every row is stored)."""
    if readyz(port)[0] != 200:
        return -1
    return h.metric(h.scrape(port), "stellaops_runtime_hot_symbols_pending")


def event_totals(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            q = c.execute(sa.text("SELECT count(*) FROM signals.quarantined_rows")).scalar_one()
            assert q == 0
            events = c.execute(sa.text("SELECT sum(event_count) FROM signals.observation_windows"))
            return int(events.scalar_one())
    finally:
        engine.dispose()


async def test_three_agents_with_lost_acknowledgements_and_ended_backends_store_exact_totals(
    tmp_path: Path, pg: Any, pg_url: str
) -> None:
    proxies = [PgProxy("127.0.0.1", pg.port) for _ in range(AGENTS)]
    stop, ended = threading.Event(), []
    killer = threading.Thread(target=terminate_writers, args=(libpq_dsn(pg_url), stop, ended, 2), daemon=True)
    procs: list[Any] = []
    ports: list[int] = []
    try:
        for i, proxy in enumerate(proxies):
            proxy.drop_commit_acks = 2
            d = tmp_path / f"agent{i}"
            d.mkdir()
            export = d / "tetragon.log"
            export.write_bytes(b"\n".join(GOOD) + b"\n")
            cfg, port = config(d, proxy.url(pg_url), export, flushTimeout="20s", statementTimeout="20s")
            doc = yaml.safe_load(cfg.read_text())
            doc["nodeName"] = f"fleet-node-{i}"
            cfg.write_text(yaml.safe_dump(doc))
            procs.append(h.start_agent(cfg))
            ports.append(port)
        killer.start()
        for port in ports:  # every event taken in and stored (not --exit-when-idle: a stall is no idle)
            await h.wait_for(lambda port=port: processed(port) == len(GOOD), what="every event processed")
            await h.wait_for(lambda port=port: pending(port) == 0, what="every row stored")
        for p in procs:
            p.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*(asyncio.to_thread(h.finish, p, 60) for p in procs))
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
        for proxy in proxies:
            proxy.close()
    for code, out in results:
        assert code == 0, out
        assert "Traceback" not in out, out
    assert [p.commit_acks_dropped for p in proxies] == [2] * AGENTS
    assert sum("already stored" in out for _, out in results) == AGENTS  # each agent's retry found its batch
    assert stored(pg_url) == {k: v * AGENTS for k, v in expected().items()}
    assert event_totals(pg_url) == len(GOOD) * AGENTS
    print(f"backends ended mid-write: {len(ended)}")  # 0..2: how many the killer caught is timing
