"""A flush slower than ``store.statementTimeout`` is written in halves, each count once.

The store is migrated, then a trigger on ``signals.hot_symbols`` makes every
row of a large statement slow: while the session's staging table holds more
than :data:`FAST_ROWS` rows (a range of the batch larger than that), each row
sleeps, so the roll-up of such a range always passes the 1 s statement
timeout; a smaller range is fast. The real agent writes through a proxy
(tests/pgproxy.py) that loses the acknowledgement of its first committed part.

Before the fix the batch was retried whole for ever ("canceling statement due
to statement timeout" on every attempt): nothing was stored and every later
window queued behind it. Now a range that times out is split in halves (the
ledger's bisection, so a retry after the lost acknowledgement finds the parts
already stored), ranges at least as large are not tried again, and the totals
are exact.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg import libpq_dsn
from pgproxy import PgProxy

from stellaops_runtime.store.engine import open_store
from tests.e2e import harness as h
from tests.e2e.test_store_failures import GOOD, config, expected, processed, readyz, stored
from tests.e2e.test_store_fleet_agents import event_totals

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

FAST_ROWS = 100  # the agent flushes ~190 and ~310 rows: split to 95 and 155 -> 78; each level costs a timeout

SLOW_TRIGGER = f"""
CREATE FUNCTION public.slow_large_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT count(*) FROM pg_temp._stage_hot) > {FAST_ROWS} THEN
        PERFORM pg_sleep(0.05);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER slow_large_statement BEFORE INSERT ON signals.hot_symbols
    FOR EACH ROW EXECUTE FUNCTION public.slow_large_statement();
"""


def all_stored(port: int) -> bool:
    """Ready, something flushed, nothing held in memory or pending (so every drained row is stored)."""
    if readyz(port)[0] != 200:
        return False
    m = h.scrape(port)
    return (
        h.metric(m, "stellaops_runtime_hot_symbols_flushed_total") > 0
        and h.metric(m, "stellaops_runtime_hot_symbols_in_memory") == 0
        and h.metric(m, "stellaops_runtime_hot_symbols_pending") == 0
    )


# (statementTimeout, flushTimeout, the log line): the server cancels the slow statement, or the
# agent abandons the slow write at its own flush deadline first (the defaults are 30 s for both).
CASES = {
    "statement_timeout": ("1s", "30s", "took longer than the statement timeout"),
    "flush_timeout": ("30s", "2s", "were still being written after 2s"),
}


@pytest.mark.parametrize("case", CASES)
async def test_a_batch_slower_than_the_statement_timeout_is_split_and_stored_exactly_once(
    tmp_path: Path, pg: Any, pg_url: str, case: str
) -> None:
    statement, flush, said = CASES[case]
    open_store(pg_url, migrate=True).close()
    with psycopg.connect(libpq_dsn(pg_url), autocommit=True) as c:
        c.execute(SLOW_TRIGGER)
    proxy = PgProxy("127.0.0.1", pg.port)
    proxy.drop_commit_acks = 1
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"\n".join(GOOD) + b"\n")
    cfg, port = config(tmp_path, proxy.url(pg_url), export, statementTimeout=statement, flushTimeout=flush)
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(lambda: processed(port) == len(GOOD), what="every event processed")
        try:
            await h.wait_for(lambda: all_stored(port), what="every row stored", timeout=90)
        except AssertionError:
            with psycopg.connect(libpq_dsn(pg_url), autocommit=True) as c:
                act = c.execute(
                    "SELECT pid, state, wait_event_type, wait_event, now() - query_start, left(query, 60) "
                    "FROM pg_stat_activity WHERE datname = current_database()"
                ).fetchall()
            proc.kill()
            raise AssertionError(f"{act}\n{proc.communicate()[0]}") from None
        samples = h.scrape(port)
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.close()
    assert code == 0, out
    assert "Traceback" not in out, out
    assert h.metric(samples, "stellaops_runtime_store_statement_timeout_splits_total") >= 1, out
    assert said in out, out
    assert proxy.commit_acks_dropped == 1
    assert "already stored" in out, out  # the retry after the lost acknowledgement found its part
    assert stored(pg_url) == expected()
    assert event_totals(pg_url) == len(GOOD)
