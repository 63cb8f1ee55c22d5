"""The seed design's example SQL ("Hot Symbol Index Schema", QUERY EXAMPLES) against the real store.

docs/architecture.md ("The seed's table, column by column") says which of the
seed's three queries run on ``signals.hot_symbols`` as written and what the
others need: the seed's ``last_observed`` and ``sample_stack`` are
``last_seen`` and ``sample`` here, and a key carries its module and evidence
kind, so the seed's hot-path SUM adds a function's evidence kinds. Each
sentence of that section is pinned here, on SQLite (the file attached as
``signals``, so the seed's qualified name resolves) and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import queries
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns, hot_symbols

S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "d" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"

# The seed's text, verbatim (runtime-agents-architecture.md, QUERY EXAMPLES).
SEED_OBSERVED = """SELECT EXISTS (
  SELECT 1 FROM signals.hot_symbols
  WHERE image_digest = $1
    AND purl = $2
    AND function_name = $3
    AND invocation_count > 0
)"""
SEED_PACKAGE_FUNCTIONS = """SELECT function_name, invocation_count, last_observed, sample_stack
FROM signals.hot_symbols
WHERE image_digest = $1 AND purl = $2
ORDER BY invocation_count DESC"""
SEED_HOT_PATH = """SELECT purl, function_name, SUM(invocation_count) as total_calls
FROM signals.hot_symbols
WHERE image_digest = $1
GROUP BY purl, function_name
ORDER BY total_calls DESC
LIMIT 100"""


def delta(fn: str, count: int, kind: EvidenceKind, stack: list[Any] | None = None) -> HotSymbolDelta:
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, ZLIB, fn, kind), window_start_ns=T0, invocation_count=count,
        first_seen_ns=T0 + S, last_seen_ns=T0 + 2 * S, purl=PURL, node_name="node-1",
        sample={"stack": stack} if stack else {},
    )  # fmt: skip


@pytest.fixture
def url(url: str) -> str:  # tests/integration/conftest.py's store (SQLite, PostgreSQL), seeded here
    u = url
    with open_store(u) as s:
        s.write(
            [
                delta("crc32", 7, EvidenceKind.INVOKED),  # 7 calls seen by a uprobe ...
                delta(
                    "crc32", 5, EvidenceKind.ON_STACK, [{"module": ZLIB, "symbol": "crc32"}]
                ),  # ... 5 on stacks
                delta("", 1, EvidenceKind.LOADED),  # the file mapped: no function
            ],
            [ObservationWindow(IMG, "node-1", T0, 13, Posture.EBPF_DEEP, 60, "tetragon")],
        )
    return u


Run = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


@contextmanager
def seed_sql(url: str) -> Iterator[Run]:
    """Run the seed's SQL as written: ``signals.hot_symbols`` and ``$n`` parameters."""
    if url.startswith("sqlite"):
        db = sqlite3.connect(":memory:")
        db.execute("ATTACH DATABASE ? AS signals", (url.removeprefix("sqlite:///"),))
        try:
            yield lambda sql, args: db.execute(sql, {str(i + 1): a for i, a in enumerate(args)}).fetchall()
        finally:
            db.close()
        return
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as pg:

        def run(sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            text = re.sub(r"\$(\d+)", r"%(p\1)s", sql)
            with pg.cursor() as cur:
                cur.execute(text, {f"p{i + 1}": a for i, a in enumerate(args)})  # type: ignore[arg-type]
                return list(cur.fetchall())

        yield run


def test_the_seed_s_observed_query_runs_as_written(url: str) -> None:
    with seed_sql(url) as run:
        assert [bool(v) for (v,) in run(SEED_OBSERVED, (IMG, PURL, "crc32"))] == [True]
        assert [bool(v) for (v,) in run(SEED_OBSERVED, (IMG, PURL, "adler32"))] == [False]
        # the purl is stored as attribution wrote it, qualifiers included: a shorter spelling finds nothing
        assert [bool(v) for (v,) in run(SEED_OBSERVED, (IMG, "pkg:deb/debian/zlib1g", "crc32"))] == [False]


def test_the_seed_s_package_query_needs_our_column_names(url: str) -> None:
    with seed_sql(url) as run, pytest.raises(Exception, match="last_observed"):
        run(SEED_PACKAGE_FUNCTIONS, (IMG, PURL))
    ours = SEED_PACKAGE_FUNCTIONS.replace("last_observed", "last_seen").replace("sample_stack", "sample")
    with seed_sql(url) as run:
        rows = run(ours, (IMG, PURL))
    assert [(r[0], r[1]) for r in rows] == [("crc32", 7), ("crc32", 5), ("", 1)]  # one row per evidence kind
    assert [r[2] is not None for r in rows] == [True, True, True]


def test_the_seed_s_hot_path_query_adds_evidence_kinds(url: str) -> None:
    with seed_sql(url) as run:
        rows = run(SEED_HOT_PATH, (IMG,))
    assert [(p, f, int(n)) for p, f, n in rows] == [(PURL, "crc32", 12), (PURL, "", 1)]  # 7 + 5; the file row
    with open_store(url) as s, s.engine.connect() as conn:
        hot = queries.hot(conn, image=IMG)
    assert sorted((r.function_name, r.evidence_kind, r.invocation_count) for r in hot) == [
        ("crc32", "invoked", 7),
        ("crc32", "on_stack", 5),
    ]


def test_the_seed_s_columns_and_ours() -> None:
    cols = {c.name for c in hot_symbols.columns}
    seed = {
        "image_digest", "function_name", "module", "purl", "invocation_count", "unique_callers",
        "total_latency_ns", "max_latency_ns",
    }  # fmt: skip
    assert seed <= cols
    assert {"first_observed", "last_observed", "sample_stack", "sample_args", "id"}.isdisjoint(cols)
    assert {"first_seen", "last_seen", "sample", "evidence_kind"} <= cols
