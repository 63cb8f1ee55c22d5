"""The agent migrates its store in a child process (store/migration_process.py), never in its own.

(The child driven directly, without the agent: tests/integration/test_migration_child_process.py.)

Real parts throughout: the real Flusher and its child process on real SQLite files and the tests'
PostgreSQL (a database one revision behind: migrated to the head's parent), a real agent
subprocess for its logs and for its stop and SIGKILL. The migration is held where it runs by the
lock store/migrations/env.py takes (a PostgreSQL advisory lock the test holds), so that the child
can be looked at, killed or cut off while it runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from pgproxy import PgProxy

from stellaops_runtime.agent.flusher import Flusher
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.dbconn import Database
from stellaops_runtime.store.engine import (
    StoreError,
    StoreUnavailable,
    create_store_engine,
    migrate,
    open_store,
    parse_store_url,
)
from stellaops_runtime.store.migration_process import ChildMigrator
from stellaops_runtime.store.revisions import _revision_parents, head_revision, store_revisions
from tests.e2e import export_agents as x
from tests.e2e import harness as h

MIGRATION_LOCK = 0x5354454C4C41  # store/migrations/env.py's advisory lock
PASSWORD = "s3cret-Migr8"  # the test cluster trusts loopback: any password is accepted and ignored
NODE = "node-mig"


def behind(url: str) -> str:
    """``url``'s database migrated to the revision before the head: one revision behind."""
    head = head_revision()
    assert head is not None
    parent = _revision_parents()[head]  # type: ignore[index]
    engine = create_store_engine(url)
    try:
        migrate(engine, revision=str(parent))
    finally:
        engine.dispose()
    return url


def with_password(url: str) -> str:
    return url.replace("://postgres@", f"://postgres:{PASSWORD}@", 1)


def revisions(url: str) -> list[str] | None:
    db = Database(parse_store_url(url))
    try:
        return store_revisions(db)
    finally:
        db.dispose()


def flusher(url: str, **store: Any) -> Flusher:
    async def no_drain() -> None:
        return None

    cfg = AgentConfig(store={"url": url, "connectTimeout": "2s", **store})
    return Flusher(cfg, agent_id=f"{NODE}/a1", drain=no_drain, stop=lambda _r: None, node=NODE)


def delta(count: int) -> HotSymbolDelta:
    t = time.time_ns() // 60_000_000_000 * 60_000_000_000
    key = HotSymbolKey("sha256:" + "e" * 64, "/lib/libz.so.1", "inflate", EvidenceKind.INVOKED)
    return HotSymbolDelta(key=key, window_start_ns=t, invocation_count=count, first_seen_ns=t, last_seen_ns=t)


def stored_count(url: str) -> int:
    with open_store(url, migrate=False) as store, store.db.connect() as conn:
        table = "signals.hot_symbols" if store.db.dialect == "postgresql" else "hot_symbols"
        rows = conn.execute(f"SELECT coalesce(sum(invocation_count), 0) FROM {table}", ()).rows
    return int(rows[0][0])


def summed(path: Path, evidence: str) -> dict[str, int]:
    """export_agents.summed's totals, of a SQLite file (no schema ``signals`` there)."""
    sql = (
        "SELECT image_digest, module, function_name, SUM(invocation_count) FROM hot_symbols "
        "WHERE evidence_kind = ? GROUP BY 1, 2, 3"
    )
    with sqlite3.connect(path) as c:
        return {f"{d}|{m}|{f}": int(n) for d, m, f, n in c.execute(sql, (evidence,))}


def pg_conn(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True)


def waiting_on_the_lock(conn: psycopg.Connection[Any]) -> bool:
    sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    row = conn.execute(sql).fetchone()
    return bool(row and row[0])


async def until(pred: Any, what: str, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def gone(pid: int) -> bool:
    """The process has ended: no /proc entry, or a zombie waiting for its (new) parent's reaping."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def proc_file(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_a_store_at_a_revision_this_code_does_not_know_is_refused_without_a_child(
    tmp_path: Path,
) -> None:
    """Before: Alembic's "Can't locate revision identified by '0999'", after a migration child's start
    (~0.5 s of CPU) at every retry: every flush of an older agent on a store a newer one migrated."""
    url = f"sqlite:///{tmp_path}/hot.db"
    open_store(url).close()
    with sqlite3.connect(tmp_path / "hot.db") as c:
        c.execute("UPDATE alembic_version SET version_num = '0999'")
    with pytest.raises(StoreError) as in_process:
        open_store(url, migrator=ChildMigrator(command=(sys.executable, "-c", "raise SystemExit(9)")))
    msg = str(in_process.value)
    assert "revision 0999, which this agent does not know" in msg and "store.migrate: false" in msg, msg
    assert "status 9" not in msg and "\n" not in msg  # no child was started
    f = flusher(url)
    assert asyncio.run(f.open()) is False and f.store is None
    assert f.pending.last_error == msg  # the agent's open says the same, and keeps counting
    with open_store(url, migrate=False) as store:  # which an agent without migrations writes to
        assert store_revisions(store.db) == ["0999"]


pg = pytest.mark.postgres


@pg
async def test_a_store_one_revision_behind_is_migrated_by_the_child_and_the_counts_land(
    pg_empty_url: str,
) -> None:
    url = behind(pg_empty_url)
    assert revisions(url) != [head_revision()]
    f = flusher(url)
    f.pending.add([delta(5)], [])
    try:
        assert await f.flush() is True, f.pending.last_error
    finally:
        await f.close()
    assert revisions(url) == [head_revision()] and stored_count(url) == 5


@pg
async def test_the_child_killed_mid_way_fails_the_flush_keeps_the_counts_and_the_next_one_stores(
    pg_empty_url: str,
) -> None:
    url = with_password(behind(pg_empty_url))
    f = flusher(url)
    f.pending.add([delta(7)], [])
    with pg_conn(pg_empty_url) as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        flush = asyncio.create_task(f.flush())
        await until(lambda: f.opener.migrator.running_pids and waiting_on_the_lock(lock), "the child waits")
        (pid,) = f.opener.migrator.running_pids
        # The URL, its password with it, went on the child's stdin: not its argv, not its environment.
        cmdline = proc_file(pid, "cmdline")
        assert b"migration_child" in cmdline and PASSWORD.encode() not in cmdline, cmdline
        assert PASSWORD.encode() not in proc_file(pid, "environ")
        os.kill(pid, signal.SIGKILL)
        assert await flush is False
        assert "was killed by signal SIGKILL" in f.pending.last_error, f.pending.last_error
        assert PASSWORD not in f.pending.last_error and f.pending.pending_rows == 1
        lock.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    try:
        assert await f.flush() is True, f.pending.last_error  # the next flush: a new child
    finally:
        await f.close()
    assert revisions(url) == [head_revision()] and stored_count(url) == 7


@pg
async def test_postgresql_lost_under_the_child_is_unavailable_and_the_counts_are_written_later(
    pg_empty_url: str,
) -> None:
    target = urlsplit(pg_empty_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    url = proxy.url(behind(pg_empty_url))
    f = flusher(url)
    f.pending.add([delta(4)], [])
    failures: list[BaseException] = []
    migrator = f.opener.migrator
    try:
        with pg_conn(pg_empty_url) as lock:
            lock.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))

            def direct() -> None:  # the child's own classification, beside the flush's
                try:
                    migrator(url, f.timeouts)
                except BaseException as e:
                    failures.append(e)

            t = threading.Thread(target=direct)
            t.start()
            flush = asyncio.create_task(f.flush())
            await until(lambda: len(migrator.running_pids) == 2 and waiting_on_the_lock(lock), "both wait")
            proxy.reset()  # the server is gone under both
            assert await flush is False
            await asyncio.to_thread(t.join, 60)
            lock.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        assert [type(e) for e in failures] == [StoreUnavailable], failures
        assert f.pending.last_error.startswith("cannot migrate store"), f.pending.last_error
        assert f.pending.pending_rows == 1 and f.store is None
        proxy.heal()
        assert await f.flush() is True, f.pending.last_error
        await f.close()
    finally:
        proxy.close()
    assert revisions(pg_empty_url) == [head_revision()] and stored_count(pg_empty_url) == 4


@pg
async def test_the_flushers_close_kills_a_running_child_and_starts_no_other(pg_empty_url: str) -> None:
    url = behind(pg_empty_url)
    f = flusher(url)
    with pg_conn(pg_empty_url) as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        opening = asyncio.create_task(f.open())
        await until(lambda: f.opener.migrator.running_pids != [], "the child runs")
        (pid,) = f.opener.migrator.running_pids
        await f.close()
        await until(lambda: gone(pid), "the child ends")
        assert await opening is False and "SIGKILL" in f.pending.last_error, f.pending.last_error
        assert await f.open() is False and "the agent is stopping" in f.pending.last_error
        assert f.opener.migrator.running_pids == []
        assert revisions(url) != [head_revision()]  # killed while it waited: nothing ran


@pg
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_no_migration_child_outlives_the_agent(tmp_path: Path, pg_empty_url: str, sig: int) -> None:
    url = with_password(behind(pg_empty_url))
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"")
    # a short grace: the stop waits for the held migration until then (as for any store it cannot
    # reach), spools, and only then kills the child
    conf = x.conf(url, str(tmp_path / "a.spool"), export)
    cfg, _port = h.write_config(tmp_path, **conf, shutdown={"graceSeconds": 3})
    with pg_conn(pg_empty_url) as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        proc = h.start_agent(cfg)
        try:
            await until(lambda: children(proc.pid) and waiting_on_the_lock(lock), "the agent's child waits")
            (child,) = children(proc.pid)
            assert PASSWORD.encode() not in proc_file(child, "cmdline")
            proc.send_signal(sig)
            code, out = await asyncio.to_thread(h.finish, proc, 60)
            await until(lambda: gone(child), "the child ends with the agent", seconds=10)
        finally:
            x.kill_all([proc])
        assert PASSWORD not in out
        if sig == signal.SIGTERM:  # a clean stop: nothing was counted, nothing is lost
            assert code == 0 and "migrating it in a child process" in out, out
        assert revisions(url) != [head_revision()]  # cut while it waited: nothing ran


async def test_a_real_agent_on_a_new_sqlite_store_logs_the_childs_migration_and_stores_exactly(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/hot.db"
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"")
    part = x.OBJS[: x.THIRD]
    cfg, port = h.write_config(tmp_path, **x.conf(url, str(tmp_path / "a.spool"), export))
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(lambda: x.connected(port), what="the agent follows the file", timeout=60)
        await asyncio.to_thread(x.append, export, x.lines(part))
        await h.wait_for(lambda: x.settled(port, len(part)), what="the counts stored", timeout=60)
        code, out = await x.stop(proc, signal.SIGTERM)
    finally:
        x.kill_all([proc])
    assert code == 0, out
    assert (summed(tmp_path / "hot.db", "invoked"), summed(tmp_path / "hot.db", "on_stack")) == x.truth(part)
    # the parent's line, then the child's own (Alembic's), on the agent's stderr
    assert "migrating it in a child process" in out and f"-> {head_revision()}" in out, out
