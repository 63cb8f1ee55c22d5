"""The store's own server killed or frozen under the real agent: kill -9 of the cluster, SIGSTOP.

tests/e2e/test_store_failures.py cuts the network between the agent and PostgreSQL (a proxy of
our own). Here the server itself fails, as on a database host that crashes (OOM killer, kill -9
of the postmaster and its backends, then crash recovery at the next start) or freezes (a VM paused,
every server process SIGSTOPped: sockets open, nothing answers). The agent, a CLI subprocess on its
own PostgreSQL client (store/pg_connect.py: pgwire), keeps counting meanwhile; once the server is
back, the totals must equal the stream's ground truth: nothing lost, nothing counted twice.

Each test has a cluster of its own (the session's is shared by other tests and must not die).
Commits are synchronous on it: an acknowledged commit survives the crash, as on a production
server; the shared test cluster runs with ``synchronous_commit=off``, which may lose acknowledged
commits at a crash by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.e2e import harness as h
from tests.e2e.test_store_failures import GOOD, config, expected, processed, readyz, stored
from tests.pg import PG_URL_ENV, PgServer, libpq_dsn, make_server, migrate_to_head

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def own_pg() -> Iterator[PgServer]:
    if os.environ.get(PG_URL_ENV):
        pytest.skip(f"{PG_URL_ENV} names an external server: these tests kill their own cluster")
    server = make_server()
    server.setup()
    try:
        with psycopg.connect(libpq_dsn(server.url), autocommit=True) as c:
            c.execute("ALTER DATABASE stella SET synchronous_commit = on")
        migrate_to_head(server.url)
        yield server
    finally:
        server.teardown()


def server_pids(server: PgServer) -> list[int]:
    """The postmaster and every process it started (backends, WAL writer, checkpointer...)."""
    assert server._tmp is not None
    postmaster = int((server._tmp / "data" / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                pids.append(int(entry))
    return pids


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


async def gone(pids: list[int]) -> None:
    """Wait until every process of ``pids`` has been reaped: a new postmaster refuses to start
    while the pid in its lock file still names a process (a zombie too)."""
    await h.wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), what="killed", timeout=20)


HALF = len(GOOD) // 2


def start_on_half(tmp: Path, url: str) -> tuple[subprocess.Popen[str], int, Path]:
    """The agent CLI reading an export file that holds the stream's first half."""
    export = tmp / "tetragon.log"
    export.write_bytes(b"\n".join(GOOD[:HALF]) + b"\n")
    cfg, port = config(tmp, url, export)
    return h.start_agent(cfg), port, export


def append_second_half(export: Path) -> None:
    with export.open("ab") as f:
        f.write(b"\n".join(GOOD[HALF:]) + b"\n")


async def first_half_stored(port: int) -> None:
    await h.wait_for(lambda: processed(port) == HALF, what="first half processed", timeout=60)
    await h.wait_for(
        lambda: (
            h.metric(m := h.scrape(port), "stellaops_runtime_hot_symbols_pending") == 0
            and h.metric(m, "stellaops_runtime_hot_symbols_in_memory") == 0
            and h.metric(m, "stellaops_runtime_hot_symbols_flushed_total") > 0
        ),
        what="first half stored",
    )


async def all_stored_then_stop(proc: subprocess.Popen[str], port: int) -> tuple[int, str]:
    await h.wait_for(lambda: processed(port) == len(GOOD), what="second half processed", timeout=60)
    await h.wait_for(
        lambda: (
            h.metric(m := h.scrape(port), "stellaops_runtime_hot_symbols_pending") == 0
            and h.metric(m, "stellaops_runtime_hot_symbols_in_memory") == 0
            and readyz(port)[0] == 200
        ),
        what="everything stored after the server came back",
        timeout=90,
    )
    proc.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(h.finish, proc, 30)


def exact_after_a_clean_stop(code: int, out: str, url: str) -> None:
    assert code == 0, out
    assert "Traceback" not in out
    assert "hot-symbol store ready" in out  # info lines are logged, and among them
    assert "opened with psycopg" not in out  # no switch: its own client all along (store/pg_connect.py)
    assert stored(url) == expected()


async def test_kill_9_of_the_whole_cluster_loses_and_doubles_nothing(tmp_path, own_pg) -> None:
    proc, port, export = start_on_half(tmp_path, own_pg.url)
    try:
        await first_half_stored(port)
        pids = server_pids(own_pg)
        signal_all(pids, signal.SIGKILL)
        own_pg.running = False
        await gone(pids)
        append_second_half(export)
        await h.wait_for(
            lambda: h.metric(h.scrape(port), "stellaops_runtime_store_flush_failures_total") >= 1,
            what="a flush failed while the server was dead",
            timeout=30,
        )
        assert h.metric(h.scrape(port), "stellaops_runtime_hot_symbols_pending") > 0
        await asyncio.to_thread(own_pg.start)  # crash recovery
        code, out = await all_stored_then_stop(proc, port)
    finally:
        if proc.poll() is None:
            proc.kill()
    exact_after_a_clean_stop(code, out, own_pg.url)


async def test_a_frozen_cluster_is_abandoned_and_every_count_lands_after_it_thaws(tmp_path, own_pg) -> None:
    proc, port, export = start_on_half(tmp_path, own_pg.url)
    pids: list[int] = []
    try:
        await first_half_stored(port)
        pids = server_pids(own_pg)
        signal_all(pids, signal.SIGSTOP)
        append_second_half(export)
        # Nothing answers, nothing is refused: each attempt must end at the configured deadlines
        # (connectTimeout, flushTimeout: 2 s), counted, with /readyz saying so.
        await h.wait_for(
            lambda: h.metric(h.scrape(port), "stellaops_runtime_store_flush_failures_total") >= 2,
            what="flushes into the frozen server failed, each in bounded time",
            timeout=30,
        )
        assert readyz(port)[0] == 503
        assert processed(port) == len(GOOD)  # intake went on meanwhile
        signal_all(pids, signal.SIGCONT)
        pids = []
        code, out = await all_stored_then_stop(proc, port)
    finally:
        signal_all(pids, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    exact_after_a_clean_stop(code, out, own_pg.url)
