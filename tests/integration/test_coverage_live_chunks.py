"""The proofs of life of a question's nodes are read in parts, as the other readers' keys are.

Defect (PL brief, session 46): store/coverage_live.py ``liveness`` put every node of a question in
one IN list, one bound parameter a node: a fleet past psycopg's 65,535 parameters (older SQLite
builds: 32,766) would fail every question about an image it runs. It now reads them in parts of
``queries.KEYS_PER_STATEMENT``, like node_facts and the history's readers. Real SQLite store, its
statements seen through SQLAlchemy's cursor event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.store.coverage_live import liveness
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.queries import KEYS_PER_STATEMENT
from stellaops_runtime.store.schema import node_liveness


def test_more_nodes_than_one_statement_holds_are_all_read_in_parts(
    sqlite_at_head: Callable[[Path], str], tmp_path: Path
) -> None:
    url = sqlite_at_head(tmp_path / "hot.db")
    now = dt.datetime(2026, 12, 6, 12, tzinfo=dt.UTC)
    names = [f"node-{i:05d}" for i in range(KEYS_PER_STATEMENT + 7)]
    rows = [
        {
            "node_name": n, "agent_id": f"{n}/a", "started_at": now, "started_node": now,
            "alive_through": now, "alive_node": now, "written_at": now, "flush_seconds": 10.0,
            "window_seconds": 60,
        }
        for n in names[1:]  # the first node has no proof of life
    ]  # fmt: skip
    bound: list[int] = []

    def seen(_conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if "node_liveness" in statement and "IN (" in statement:
            bound.append(len(params))

    with open_store(url) as s:
        with s.engine.begin() as c:
            c.execute(sa.insert(node_liveness), rows)
        sa.event.listen(s.engine, "before_cursor_execute", seen)
        with s.engine.connect() as c:
            lives = liveness(c, names + names[:3])  # a node named twice is read once
    assert sorted(lives) == names[1:]
    assert lives[names[-1]].agent_id == f"{names[-1]}/a"
    assert bound and max(bound) <= KEYS_PER_STATEMENT, bound  # before: one statement, 1,007 parameters
    assert sum(bound) == len(names)
