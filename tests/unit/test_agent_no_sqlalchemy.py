"""The agent writes its store without SQLAlchemy (issue 13: ~16 MB of RSS for a writer that needs none).

SQLAlchemy and Alembic stay with whoever reads the store (queries, CLI,
evidence, witness) or migrates it. A fresh interpreter that imports the
agent's runner, and a real agent idle on a migrated SQLite or PostgreSQL
store (its store open, the schema version checked), then writing a batch
through that store and running its maintenance, must have loaded neither; on PostgreSQL,
not SQLite's driver either. Nor an agent whose store needed migrating (a new SQLite file, a
PostgreSQL database one revision behind): a child process migrated it
(store/migration_process.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stellaops_runtime.store.engine import open_store

HEAVY = ("sqlalchemy", "alembic", "mako")


def _loaded(modules: list[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_importing_the_agents_runner_loads_no_sqlalchemy() -> None:
    code = "import json, sys; import stellaops_runtime.agent.runner; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    modules = json.loads(out.stdout)
    assert "stellaops_runtime.agent.flusher" in modules and "stellaops_runtime.store.writer" in modules
    assert _loaded(modules) == []


IDLE_AGENT = textwrap.dedent(
    """
    import asyncio, json, sys
    from stellaops_runtime.agent.runner import Agent
    from stellaops_runtime.contracts.config import parse_config
    from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
    from stellaops_runtime.store.batches import Batch

    async def main():
        cfg = parse_config({
            "tetragon": {"address": "127.0.0.1:1"},  # nobody there: the agent idles and retries
            "store": {"url": sys.argv[1]},
            "metrics": {"address": "127.0.0.1", "port": 0},
        })
        agent = Agent(cfg, node_name="n")
        task = asyncio.create_task(agent.run())
        for _ in range(2400):  # up to 120 s on a loaded machine
            if agent.store is not None and agent.http_port:
                break
            await asyncio.sleep(0.05)
        assert agent.store is not None, "the store never opened"
        await asyncio.sleep(1.0)  # idle, connected
        idle = sorted(sys.modules)
        t = 1_796_000_000_000_000_000
        key = HotSymbolKey("sha256:" + "c" * 64, "/lib/libz.so.1", "inflate", EvidenceKind.INVOKED)
        d = HotSymbolDelta(key, t, 3, t + 1, t + 2, sample={"binary": "/app"})
        result = await asyncio.to_thread(agent.store.write_batch, Batch("n/test", 1, [d]))
        await asyncio.to_thread(agent.store.maintain)
        agent.stop("done")
        await asyncio.wait_for(task, 60)
        print(json.dumps([idle, sorted(sys.modules), result.written]))

    asyncio.run(main())
    """
)


def _run_idle_agent(url: str, cwd: Path, *, migrated: bool = True) -> tuple[list[str], list[str], int]:
    if migrated:
        open_store(url).close()  # migrated beforehand, as a node's agent finds it
    done = subprocess.run(
        [sys.executable, "-c", IDLE_AGENT, url], capture_output=True, text=True, timeout=240, cwd=cwd
    )
    assert done.returncode == 0, done.stderr[-4000:]
    idle, after, written = json.loads(done.stdout.splitlines()[-1])
    return idle, after, written


def test_an_idle_agent_on_sqlite_writes_without_sqlalchemy(tmp_path: Path) -> None:
    idle, after, written = _run_idle_agent(f"sqlite:///{tmp_path}/hot.db", tmp_path)
    assert written == 1
    assert "stellaops_runtime.store.dbconn" in idle
    assert _loaded(idle) == [] and _loaded(after) == []
    assert "psycopg" not in after  # a SQLite store loads no PostgreSQL driver either


@pytest.mark.postgres
def test_an_idle_agent_on_postgres_writes_without_sqlalchemy(pg_url: str, tmp_path: Path) -> None:
    idle, after, written = _run_idle_agent(pg_url, tmp_path)
    assert written == 1
    # its driver, the agent's own (store/pg_connect.py), and nothing above it: not even psycopg
    assert "stellaops_runtime.pgwire" in idle and "psycopg" not in after
    assert _loaded(idle) == [] and _loaded(after) == []
    # Nor SQLite's driver and library (~0.9 MB of every node's agent, docs/benchmarks.md,
    # Eighteenth pass): its errors are classified only where sqlite3 is loaded (store/errors.py).
    assert sorted(m for m in after if m.split(".")[0] in ("sqlite3", "_sqlite3")) == []


def test_an_agent_on_a_new_sqlite_store_migrates_it_in_a_child_and_loads_no_alembic(tmp_path: Path) -> None:
    """Before: a node's first start (a new SQLite file) ran ``alembic upgrade head`` in the agent,
    which kept SQLAlchemy and Alembic loaded for its whole life (67.3 MB idle against 39.2)."""
    idle, after, written = _run_idle_agent(f"sqlite:///{tmp_path}/hot.db", tmp_path, migrated=False)
    assert written == 1
    assert _loaded(idle) == [] and _loaded(after) == []


@pytest.mark.postgres
def test_an_agent_on_a_postgres_store_one_revision_behind_loads_no_alembic(
    pg_empty_url: str, tmp_path: Path
) -> None:
    from stellaops_runtime.store.engine import create_store_engine, migrate
    from stellaops_runtime.store.revisions import _revision_parents, head_revision

    parents = _revision_parents()
    assert parents is not None
    engine = create_store_engine(pg_empty_url)
    try:  # an upgrade that adds a revision: the store is at the one before the head
        migrate(engine, revision=str(parents[str(head_revision())]))
    finally:
        engine.dispose()
    idle, after, written = _run_idle_agent(pg_empty_url, tmp_path, migrated=False)
    assert written == 1
    assert _loaded(idle) == [] and _loaded(after) == []
    with open_store(pg_empty_url, migrate=False) as store:  # at head now: no StoreNotInitialized
        assert store.db.dialect == "postgresql"
