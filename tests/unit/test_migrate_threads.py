"""Stores migrated by several threads of one process at once each reach head.

Alembic's ``op`` and ``context`` are proxies in module globals, set for the duration of one
``command.upgrade``: two threads migrating at once (an agent's store-open thread left running
on its daemon thread and a later one, or tests' stores beside such a thread) ran one store's
DDL on the other's connection ("table hot_symbols already exists", KeyError 'config') and left
a store unmigrated; two threads using one sqlite3 connection at once can crash the process.
store/engine.py's ``migrate`` takes one process-wide lock.
"""

from __future__ import annotations

import threading
from pathlib import Path

from stellaops_runtime.store.engine import at_head, create_store_engine, migrate


def test_three_threads_migrating_three_stores_at_once_each_reach_head(tmp_path: Path) -> None:
    """Seen failing before the fix: errors such as "table hot_symbols already exists", or the
    process killed by a segmentation fault in sqlite3 (exit 139)."""
    errors: list[BaseException] = []
    urls = [f"sqlite:///{tmp_path / f'hot{i}.db'}" for i in range(3)]
    go = threading.Barrier(3)

    def run(mine: list[str]) -> None:
        go.wait()
        for url in mine:
            engine = create_store_engine(url)
            try:
                migrate(engine)
            except BaseException as e:  # reported by the assertion below
                errors.append(e)
            finally:
                engine.dispose()

    threads = [threading.Thread(target=run, args=(urls[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for url in urls:
        engine = create_store_engine(url)
        try:
            assert at_head(engine), url
        finally:
            engine.dispose()
