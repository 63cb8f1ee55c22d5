"""A row older than the retention's cutoff, written after the retention ran, is not stored in the history.

Retention removes the windows and gaps of old days together, so the store's first record (its
earliest observation window, store/coverage_first.py) moves up to the cutoff and a period reaching
before it is unknown. A row of a removed day written later (a spool replayed after weeks down, an
agent whose clock is behind) was stored as it came: it became the store's first record again, and
the days between it and the cutoff, whose windows and gaps are gone, read as recorded: ``query
observed --since`` over them said "not observed" (exit 1) for every image. On PostgreSQL the row
went to the DEFAULT partition, in a partial day nothing else of remains. It stayed until some
agent's next hourly retention, and a new agent (where late spools are replayed) applies none after
its first batch. Seen failing before the fix (exit 1, ``not_observed``; the window and the
history row stored). Now the writer keeps such a row out of the history and the observation
windows, in the write's transaction, and counts it (``BatchResult.expired``); a call's counts still
go to the cumulative row, which retention never touches. SQLite and PostgreSQL (``url``); the real
CLI's entry point (tests/cli_run.py).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stellaops_runtime.agent.metrics import AgentCollector
from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.queries import rfc3339
from stellaops_runtime.store.schema import datetime_to_ns
from tests.cli_run import cli_in_process
from tests.node_alive import alive_now

S = 1_000_000_000
IMG = "sha256:" + "d" * 64
LIB = "/usr/lib/libz.so.1"


def observed_json(url: str, image: str, function: str, *period: str) -> tuple[int, Any]:
    """``query observed --json`` through the CLI's own entry point, in this process."""
    r = cli_in_process("query", "observed", "--store", url, "--image", image, "--function", function,
                       "--json", *period)  # fmt: skip
    assert r.returncode in (0, 1, 3) and "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def midnight(days_ago: int) -> dt.datetime:
    today = dt.datetime.now(dt.UTC).date()
    return dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(), dt.UTC)


def window(node: str, days_ago: int) -> ObservationWindow:
    start = datetime_to_ns(midnight(days_ago) + dt.timedelta(hours=9))
    return ObservationWindow(IMG, node, start, 5, Posture.EBPF_DEEP, 60, "tetragon")


def test_a_late_row_of_a_day_the_retention_removed_is_not_stored_in_the_history(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with open_store(url) as s:  # watched on node-1 the 40 days up to yesterday; crc32 never called
        s.write([], [window("node-1", d) for d in range(1, 41)])
    with open_store(url, retention_days=31) as s:
        done = s.maintain()  # the database's clock, as the agents' hourly run
        assert done.ran and done.cutoff == midnight(32)
        s.write([], alive_now("node-1"))  # node-1's agent runs on: today is watched, not open
    since = ("--since", rfc3339(midnight(35)))
    code, doc = observed_json(url, IMG, "crc32", *since)
    assert (code, doc["answer"]) == (3, "unknown"), doc  # days 33..35 went with their windows and gaps

    # node-2's agent, down for seven weeks, replays its spool: a window of 50 days ago and a call in it
    late = window("node-2", 50)
    key = HotSymbolKey(IMG, LIB, "adler32", EvidenceKind.INVOKED)
    at = late.window_start_ns
    call = HotSymbolDelta(key, at, 7, at + S, at + 2 * S)
    with open_store(url, retention_days=31) as s:  # a new agent: its first batch applies no retention
        result = s.write_batch(Batch("node-2/old", 1, [call, late], from_spool=True))
        assert (result.written, result.expired, result.quarantined) == (1, 1, 0)
        said = (
            "flush node-2/old/1: 1 observation windows start on days the retention removed "
            "(store.retentionDays 31): neither they nor their calls' history rows are stored; "
            "the calls' counts are added to their cumulative rows (hot_symbols), where retention "
            "keeps them"
        )
        assert said in caplog.text, caplog.text  # a whole sentence (it ended "the calls' counts are")
        assert all(o["window_start"] >= midnight(32) for o in s.read_observation_windows())
        assert [w["function_name"] for w in s.read_windows()] == []  # no history row of the removed day
        [row] = s.read_hot_symbols()  # the call's counts are kept where retention keeps them
        assert (row["function_name"], row["invocation_count"]) == ("adler32", 7)

    code, doc = observed_json(url, IMG, "crc32", *since)
    assert (code, doc["answer"]) == (3, "unknown"), doc  # was (1, "not_observed")
    assert rfc3339(midnight(32) + dt.timedelta(hours=9)) in doc["reason"], doc["reason"]
    code, doc = observed_json(url, IMG, "adler32")  # no period: the cumulative row answers, as it says
    assert (code, doc["answer"], doc["records"][0]["invocation_count"]) == (0, "observed", 7), doc


def test_a_late_row_of_a_day_the_store_still_holds_is_stored(url: str) -> None:
    """Older than the cutoff but not before the store's first record (the retention has not run
    since that day aged past it), or written to a store that holds no record: stored as before, to go
    with its day at the next retention."""
    with open_store(url, retention_days=31) as s:  # an empty store: a spool of 50 days ago is its first
        first = s.write_batch(Batch("node-2/old", 1, [window("node-2", 50)], from_spool=True))
        s.write([], [window("node-1", d) for d in range(1, 41)])
        late = s.write_batch(Batch("node-3/old", 1, [window("node-3", 45)], from_spool=True))
        assert (first.written, first.expired, late.written, late.expired) == (1, 0, 1, 0)
        nodes = {o["node_name"] for o in s.read_observation_windows()}
        assert nodes == {"node-1", "node-2", "node-3"}
        done = s.maintain()  # the retention removes them with their days
        assert done.cutoff == midnight(32)
        assert {o["node_name"] for o in s.read_observation_windows()} == {"node-1"}


async def test_the_agent_counts_the_windows_it_kept_out_on_its_metrics(tmp_path: Path) -> None:
    """``store_rows_expired_total`` on the real agent's /metrics exposition (docs/operations.md)."""
    url = f"sqlite:///{tmp_path}/hs.db"
    with open_store(url, retention_days=31) as s:
        s.write([], [window("node-1", d) for d in range(1, 41)])
        s.maintain()
    agent = Agent(parse_config({"store": {"url": url, "retentionDays": 31}}), node_name="node-1")
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent))
    try:
        agent.pending.add([], [window("node-1", 50), window("node-1", 0)])
        with open_store(url, retention_days=31) as s:
            assert await agent.pending.flush(s)
        text = await agent.in_pipeline(lambda: generate_latest(registry).decode())
        [line] = [
            ln for ln in text.splitlines() if ln.startswith("stellaops_runtime_store_rows_expired_total ")
        ]
        assert float(line.split()[1]) == 1 and agent.pending.rows_flushed == 1
    finally:
        agent._worker.shutdown(wait=True)


@pytest.mark.postgres
def test_a_late_row_written_while_a_retention_runs_is_not_left_behind_it(pg_url: str) -> None:
    """The rule reads the store's first record in the write's transaction: while another agent's
    retention had deleted the old windows but not committed, the write still saw them, stored a
    window of a day the retention was removing (the retention's DELETE had passed it), and once
    both committed that window was the store's first record over days whose windows and gaps were
    gone: ``query observed --since`` said not_observed (exit 1) until the next retention. Seen
    failing before the fix (the window of 36 days ago stored, ``expired`` 0). Now a write of rows
    that old takes the maintenance's lock shared, and while a retention holds it keeps out every
    row before the cutoff, as that retention removes them."""
    from stellaops_runtime.store.late_rows import hold_off_retention
    from stellaops_runtime.store.partitions import _maintain_postgres

    with open_store(pg_url, retention_days=31) as s:  # node-1 watched the 40 days up to yesterday
        s.write([], [window("node-1", d) for d in range(1, 41)])
    with open_store(pg_url, retention_days=31) as retention, open_store(pg_url, retention_days=31) as late:
        with retention.db.begin() as conn:  # another agent's hourly retention, not committed yet
            done = _maintain_postgres(conn, 31, None, True, 5_000)
            assert done.ran and done.cutoff == midnight(32)
            # node-2's spool: a window of a day older than the cutoff that the store still held
            result = late.write_batch(Batch("node-2/old", 1, [window("node-2", 36)], from_spool=True))
            assert (result.written, result.expired) == (0, 1)
        late.write([], alive_now("node-1"))
        assert all(o["window_start"] >= midnight(32) for o in late.read_observation_windows())
    code, doc = observed_json(pg_url, IMG, "crc32", "--since", rfc3339(midnight(35)))
    assert (code, doc["answer"]) == (3, "unknown"), doc
    with open_store(pg_url, retention_days=31) as late, late.db.begin() as conn:
        assert hold_off_retention(conn)[1]  # a late write's transaction holds the lock shared:
        with open_store(pg_url, retention_days=31) as other:
            assert not other.maintain().ran  # a retention skips its turn, as when an agent holds it
