"""The hot-symbol store on a real PostgreSQL server and on SQLite: same behaviour, same answers.

Covers the writer's additive upserts (GREATEST/LEAST/keep-first semantics),
the per-window history and observation windows, migrations, and the query
functions ("more than 1000 calls a day", "observed 30 days, never called").
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store import coverage, day_counts, queries
from stellaops_runtime.store.engine import (
    StoreError,
    StoreUnavailable,
    create_store_engine,
    has_schema,
    migrate,
    normalize_url,
    open_store,
)
from stellaops_runtime.store.schema import datetime_to_ns, observation_windows
from stellaops_runtime.store.writer import HotSymbolStore
from tests.node_alive import alive_after

S = 1_000_000_000
DAY = 86_400 * S
W = 60 * S
T0 = datetime_to_ns(dt.datetime(2025, 3, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "a" * 64
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
PURL_LIBC = "pkg:deb/debian/libc6@2.36-9?arch=amd64"
PURL_SSL = "pkg:deb/debian/openssl@3.0.15-1?arch=amd64"


def at(ns: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)


def delta(
    fn: str = "malloc",
    *,
    module: str = LIBC,
    evidence: EvidenceKind = EvidenceKind.INVOKED,
    window: int = T0,
    count: int = 1,
    image: str = IMG,
    **kw: object,
) -> HotSymbolDelta:
    return HotSymbolDelta(
        key=HotSymbolKey(image, module, fn, evidence),
        window_start_ns=window,
        invocation_count=count,
        first_seen_ns=window + S,
        last_seen_ns=window + 2 * S,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(url: str) -> Iterator[HotSymbolStore]:
    s = open_store(url)
    yield s
    s.close()


def test_write_and_read_back_exact_counts(store: HotSymbolStore) -> None:
    written = store.write(
        [
            delta(count=5, unique_callers=2, total_latency_ns=50, max_latency_ns=20, confidence=1.0),
            delta("free", count=3, purl=PURL_LIBC, build_id="ab12", node_name="node-1"),
        ],
        [ObservationWindow(IMG, "node-1", T0, 8)],
    )
    assert written == 3
    rows = {r["function_name"]: r for r in store.read_hot_symbols()}
    m = rows["malloc"]
    assert (m["invocation_count"], m["unique_callers"], m["total_latency_ns"], m["max_latency_ns"]) == (
        5,
        2,
        50,
        20,
    )
    assert m["confidence"] == pytest.approx(1.0)
    assert m["first_seen"] == at(T0 + S) and m["last_seen"] == at(T0 + 2 * S)
    assert m["first_seen"].tzinfo is not None and m["updated_at"].tzinfo is not None
    assert m["evidence_kind"] == "invoked" and m["purl"] == "" and m["sample"] is None
    f = rows["free"]
    assert (f["purl"], f["build_id"], f["node_name"]) == (PURL_LIBC, "ab12", "node-1")
    assert [(o["node_name"], o["event_count"]) for o in store.read_observation_windows()] == [("node-1", 8)]


def test_upserts_add_up_across_writes_and_windows(store: HotSymbolStore) -> None:
    for i in range(3):
        store.write(
            [delta(count=10, window=T0 + i * W), delta(count=1, window=T0 + (i + 1) * W)],
            [ObservationWindow(IMG, "n", T0, 5)],
        )
    [row] = store.read_hot_symbols()
    assert row["invocation_count"] == 33
    assert row["first_seen"] == at(T0 + S) and row["last_seen"] == at(T0 + 3 * W + 2 * S)
    windows = [(r["window_start"], r["invocation_count"]) for r in store.read_windows()]
    assert windows == [(at(T0), 10), (at(T0 + W), 11), (at(T0 + 2 * W), 11), (at(T0 + 3 * W), 1)]
    assert [o["event_count"] for o in store.read_observation_windows()] == [15]


def test_same_function_in_two_modules_and_kinds_stays_apart(store: HotSymbolStore) -> None:
    store.write(
        [
            delta("init", module=LIBC, count=1),
            delta("init", module=LIBSSL, count=2),
            delta("init", module=LIBSSL, evidence=EvidenceKind.ON_STACK, count=4),
            delta("init", module=LIBC, count=8, image="sha256:" + "b" * 64),
        ],
        [],
    )
    rows = store.read_hot_symbols()
    assert sorted(
        (r["image_digest"][7], r["module"], r["evidence_kind"], r["invocation_count"]) for r in rows
    ) == [
        ("a", LIBC, "invoked", 1),
        ("a", LIBSSL, "invoked", 2),
        ("a", LIBSSL, "on_stack", 4),
        ("b", LIBC, "invoked", 8),
    ]


def test_greatest_least_and_keep_first_semantics(store: HotSymbolStore) -> None:
    store.write(
        [
            delta(
                window=T0 + W,
                unique_callers=7,
                max_latency_ns=100,
                confidence=0.8,
                purl=PURL_LIBC,
                node_name="node-a",
                sample={"binary": "/app", "stack": ["a", "b"]},
            )
        ],
        [],
    )
    store.write(
        [
            delta(
                window=T0,  # an older window arriving late: first_seen moves back, last_seen stays
                unique_callers=3,
                max_latency_ns=500,
                confidence=0.5,
                purl="pkg:other/x@1",
                build_id="beef",
                node_name="node-b",
                sample={"binary": "/other"},
            )
        ],
        [],
    )
    store.write([delta(window=T0 + 2 * W, node_name="")], [])
    [r] = store.read_hot_symbols()
    assert r["unique_callers"] == 7 and r["max_latency_ns"] == 500
    assert r["confidence"] == pytest.approx(0.8)
    assert r["first_seen"] == at(T0 + S) and r["last_seen"] == at(T0 + 2 * W + 2 * S)
    assert r["purl"] == PURL_LIBC and r["build_id"] == "beef"
    assert r["sample"] == {"binary": "/app", "stack": ["a", "b"]}
    assert r["node_name"] == "node-b"  # the last non-empty reporter
    assert r["invocation_count"] == 3


def test_sample_json_round_trip(store: HotSymbolStore) -> None:
    sample = {
        "binary": "/usr/bin/python3",
        "arguments": "[REDACTED] --port 80",
        "namespace": "shop",
        "pod": "api-7d9f",
        "container_id": "c0ffee",
        "stack": [{"module": LIBC, "symbol": "malloc", "offset": 42}, {"symbol": "ünïcode ☃"}],
        "nested": {"n": None, "t": True, "f": 1.5},
    }
    store.write([delta(sample=sample)], [])
    assert store.read_hot_symbols()[0]["sample"] == sample


def test_several_windows_of_one_key_in_one_write_and_duplicates(store: HotSymbolStore) -> None:
    deltas = [delta(count=1, window=T0 + i * W) for i in range(50)] + [delta(count=2, window=T0)]
    assert store.write(deltas, []) == 50
    assert store.read_hot_symbols()[0]["invocation_count"] == 52
    assert store.read_windows()[0]["invocation_count"] == 3


def test_empty_write_is_a_no_op(store: HotSymbolStore) -> None:
    assert store.write([], []) == 0
    assert store.read_hot_symbols() == []


def test_migrations_are_idempotent(empty_url: str) -> None:
    from alembic.script import ScriptDirectory

    from stellaops_runtime.store.engine import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None and int(head) >= 4
    for _ in range(3):
        open_store(empty_url).close()
    engine = create_store_engine(empty_url)
    with engine.connect() as conn:
        assert has_schema(conn)
        version_table = "signals.alembic_version" if conn.dialect.name == "postgresql" else "alembic_version"
        assert conn.execute(sa.text(f"SELECT version_num FROM {version_table}")).scalars().all() == [head]
    engine.dispose()


def test_head_revision_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    from stellaops_runtime.store.engine import alembic_config, head_revision

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_a_store_at_head_opens_without_importing_alembic(empty_url: str) -> None:
    """Alembic's ~11 MB of modules are loaded only to migrate (issue 10's memory budget)."""
    code = (
        "import sys\n"
        "from stellaops_runtime.store.engine import open_store\n"
        "open_store(sys.argv[1]).close()\n"
        "print('alembic' in sys.modules)\n"
    )
    older = create_store_engine(empty_url)
    migrate(older, revision="0004")  # a store one revision behind: the next open migrates it
    older.dispose()
    run = [sys.executable, "-c", code, empty_url]
    first = subprocess.run(run, capture_output=True, text=True, timeout=60, check=True)
    again = subprocess.run(run, capture_output=True, text=True, timeout=60, check=True)
    assert (first.stdout.strip(), again.stdout.strip()) == ("True", "False")


def test_function_id_is_stored_and_kept_from_the_first_delta_that_has_it(store: HotSymbolStore) -> None:
    fid = "93ac61ec5a8eb1396f9fbd350e3169a558528a40:malloc+0x0"
    store.write([delta(count=1)], [])
    store.write([delta(count=2, function_id=fid)], [])
    store.write([delta(count=1, function_id="other:malloc+0x0")], [])
    row = store.read_hot_symbols()[0]
    assert (row["invocation_count"], row["function_id"]) == (4, fid)


def test_upgrade_from_0001_keeps_rows_and_adds_function_id(empty_url: str) -> None:
    engine = create_store_engine(empty_url)
    migrate(engine, revision="0001")
    tbl = "signals.hot_symbols" if engine.dialect.name == "postgresql" else "hot_symbols"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"INSERT INTO {tbl} (image_digest, module, function_name, evidence_kind, invocation_count,"
                " unique_callers, total_latency_ns, max_latency_ns, confidence, first_seen, last_seen,"
                " updated_at) VALUES ('img', 'm', 'f', 'invoked', 7, 0, 0, 0, 1.0, :t, :t, :t)"
            ),
            {"t": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
        )
    engine.dispose()
    store = open_store(empty_url)
    try:
        (row,) = store.read_hot_symbols()
        assert (row["invocation_count"], row["function_id"]) == (7, "")
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_schema_signals_and_indexes(pg_url: str) -> None:
    open_store(pg_url).close()
    engine = create_store_engine(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names(schema="signals"))
        assert {"hot_symbols", "hot_symbol_windows", "observation_windows", "alembic_version"} <= tables
        idx = conn.execute(
            sa.text("SELECT indexdef FROM pg_indexes WHERE schemaname = 'signals' AND indexname = :n"),
            {"n": "ix_hot_symbols_purl_prefix"},
        ).scalar_one()
        assert "text_pattern_ops" in idx
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'")
            ).scalar()
            == 0
        )
    engine.dispose()


def test_url_normalization() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"
    with pytest.raises(StoreError, match="unsupported"):
        normalize_url("mysql://u@h/db")
    with pytest.raises(StoreError, match="invalid"):
        normalize_url("not a url")


@pytest.mark.postgres
def test_unreachable_postgres_raises_store_unavailable(pg_url: str) -> None:
    from pg import free_port

    with pytest.raises(StoreUnavailable, match="cannot migrate"):
        open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/nope")


# -- queries ------------------------------------------------------------------


def seed_queries(store: HotSymbolStore) -> None:
    store.write(
        [
            delta("SSL_read", module=LIBSSL, purl=PURL_SSL, count=40),
            delta("SSL_write", module=LIBSSL, purl=PURL_SSL, count=40),
            delta("EVP_Digest", module=LIBSSL, purl=PURL_SSL, evidence=EvidenceKind.ON_STACK, count=7),
            delta("malloc", purl=PURL_LIBC, count=500),
            delta("free", purl=PURL_LIBC, count=499),
            delta("init", module=LIBSSL, purl=PURL_SSL, count=1),
            delta("init", module=LIBC, purl=PURL_LIBC, count=2),
            delta("", module=LIBSSL, purl=PURL_SSL, evidence=EvidenceKind.LOADED, count=9999),
            delta("", module="/app/server", evidence=EvidenceKind.EXECUTED, count=9998),
            delta("sys_write", module="[kernel]", evidence=EvidenceKind.KERNEL_CALL, count=100),
            delta("malloc", purl=PURL_LIBC, count=5, image="sha256:" + "b" * 64),
        ],
        [ObservationWindow(IMG, "n", T0, 1)],
    )


def test_query_observed_functions_hot(store: HotSymbolStore) -> None:
    seed_queries(store)
    with store.engine.connect() as conn:
        [r] = queries.observed(conn, image=IMG, function="malloc")
        assert (r.invocation_count, r.purl, r.module) == (500, PURL_LIBC, LIBC)
        assert r.first_seen == at(T0 + S)
        init = queries.observed(conn, image=IMG, function="init")
        assert [(x.module, x.invocation_count) for x in init] == [(LIBC, 2), (LIBSSL, 1)]
        assert [x.module for x in queries.observed(conn, image=IMG, function="init", purl=PURL_SSL)] == [
            LIBSSL
        ]
        assert queries.observed(conn, image=IMG, function="init", purl="pkg:deb/debian/openssl") == []
        assert queries.observed(conn, image=IMG, function="nope") == []

        fns = queries.functions(conn, image=IMG, purl=PURL_SSL)
        assert [(x.function_name, x.evidence_kind) for x in fns] == [
            ("EVP_Digest", "on_stack"),
            ("SSL_read", "invoked"),
            ("SSL_write", "invoked"),
            ("init", "invoked"),
        ]
        assert len(queries.functions(conn, image=IMG, purl_prefix="pkg:deb/debian/openssl@")) == 4
        assert len(queries.functions(conn, image=IMG, purl_prefix="pkg:deb/debian/")) == 7
        assert queries.functions(conn, image=IMG, purl_prefix="PKG:DEB/") == []  # case-sensitive everywhere
        assert queries.functions(conn, image=IMG, purl_prefix="pkg:deb/debian/openssl_") == []  # _ is literal

        top = queries.hot(conn, image=IMG, limit=4)
        assert [(x.function_name, x.invocation_count) for x in top] == [
            ("malloc", 500),
            ("free", 499),
            ("sys_write", 100),
            ("SSL_read", 40),  # tie with SSL_write: by name
        ]
        assert all(
            x.evidence_kind not in ("loaded", "executed") for x in queries.hot(conn, image=IMG, limit=100)
        )
        doc = top[0].to_json()
        assert doc["first_seen"] == "2025-03-01T00:00:01Z" and doc["function_name"] == "malloc"


def test_calls_per_day_and_days_without_calls(store: HotSymbolStore) -> None:
    hourly = 3600 * S
    deltas: list[HotSymbolDelta] = []
    windows: list[ObservationWindow] = []
    for day in range(30):  # 30 days under observation, a window every 6 hours
        for h in range(0, 24, 6):
            start = T0 + day * DAY + h * hourly
            windows.append(ObservationWindow(IMG, "node-1", start, 100, Posture.EBPF_DEEP, 60))
            if day < 10:  # hot_fn: 300 calls per window for the first 10 days = 1200 a day
                deltas.append(delta("hot_fn", window=start, count=300))
            if day == 3 and h == 12:
                deltas.append(delta("rare_fn", window=start, count=1))
                deltas.append(
                    delta("rare_fn", window=start, count=0, evidence=EvidenceKind.LOADED, module="x")
                )
    windows.append(ObservationWindow(IMG, "node-2", T0, 1, Posture.FULL_INSTRUMENTATION))  # a day counted
    # Days watched only at Passive (lifecycle events), at ActiveTracing (kernel probes without user
    # stacks, uprobes: no user function shows) or at an unknown posture cannot back a "no".
    windows.append(ObservationWindow(IMG, "node-1", T0 + 40 * DAY, 5, Posture.PASSIVE, 60))
    windows.append(ObservationWindow(IMG, "node-1", T0 + 42 * DAY, 5, Posture.ACTIVE_TRACING, 60))
    windows.append(ObservationWindow(IMG, "node-1", T0 + 41 * DAY, 5))
    # both nodes' agents ran on after their last windows (a record of each the day after): their last
    # days are watched whole, not open as an agent that may be down since (store/coverage_open.py)
    windows += alive_after("node-2", T0 + DAY) + alive_after("node-1", T0 + 43 * DAY)
    store.write(deltas, windows)
    last_day = (at(T0) + dt.timedelta(days=29)).date()
    with store.engine.connect() as conn:
        per_day = day_counts.calls_per_day(conn, image=IMG, function="hot_fn", days=30, until=last_day)
        assert len(per_day) == 10 and all(n == 1200 for _, n in per_day)
        assert per_day[0][0] == dt.date(2025, 3, 1) and per_day[-1][0] == dt.date(2025, 3, 10)
        assert sum(1 for _, n in per_day if n > 1000) == 10
        week = day_counts.calls_per_day(
            conn, image=IMG, function="hot_fn", days=7, until=dt.date(2025, 3, 12)
        )
        assert [d.day for d, _ in week] == [6, 7, 8, 9, 10]
        assert day_counts.calls_per_day(conn, image=IMG, function="hot_fn", days=30, module="/other") == []

        assert day_counts.observed_days_without_calls(conn, image=IMG, function="never_fn") == 30
        assert day_counts.observed_days_without_calls(conn, image=IMG, function="hot_fn") == 20
        assert day_counts.observed_days_without_calls(conn, image=IMG, function="rare_fn") == 29
        assert (
            day_counts.observed_days_without_calls(conn, image=IMG, function="rare_fn", module="/other") == 30
        )
        assert day_counts.observed_days_without_calls(conn, image="sha256:none", function="hot_fn") == 0


def test_observation_posture_merges_by_max_level_and_unknown_is_lowest(store: HotSymbolStore) -> None:
    node2 = T0 + W
    store.write([], [ObservationWindow(IMG, "n", T0, 5, Posture.EBPF_DEEP, 60, "tetragon")])
    store.write([], [ObservationWindow(IMG, "n", T0, 3, Posture.PASSIVE, 60, "tetragon")])
    store.write([], [ObservationWindow(IMG, "n", T0, 1)])  # unknown posture never lowers a known one
    store.write([], [ObservationWindow(IMG, "n", node2, 2)])
    store.write([], [ObservationWindow(IMG, "n", node2, 4, Posture.PASSIVE, 60, "tetragon")])
    store.write(
        [],
        [
            ObservationWindow(IMG, "m", T0, 1, Posture.ACTIVE_TRACING, 60, "tetragon"),
            ObservationWindow(IMG, "m", T0, 1, Posture.FULL_INSTRUMENTATION, 60, "tetragon"),
        ],
    )
    got = [
        (o["node_name"], o["window_start"], o["event_count"], o["posture_level"], o["window_seconds"])
        for o in store.read_observation_windows()
    ]
    assert got == [
        ("m", at(T0), 2, Posture.FULL_INSTRUMENTATION.rank, 60),
        ("n", at(T0), 9, Posture.EBPF_DEEP.rank, 60),
        ("n", at(node2), 6, Posture.PASSIVE.rank, 60),
    ]
    assert {o["source"] for o in store.read_observation_windows()} == {"tetragon"}


def test_upgrade_from_0002_keeps_observation_rows_with_posture_unknown(empty_url: str) -> None:
    engine = create_store_engine(empty_url)
    migrate(engine, revision="0002")
    with engine.begin() as conn:  # only the columns 0002 has
        conn.execute(
            sa.insert(observation_windows).values(
                image_digest=IMG, node_name="n", window_start=at(T0), event_count=7
            )
        )
    with engine.connect() as conn:  # read-only queries work at 0002: posture unknown
        assert not queries.has_posture_columns(conn)
        [g] = coverage.image_windows(conn, image=IMG)
        assert (g.posture, g.seconds, g.windows, g.event_count) == (None, 0, 1, 7)
        assert coverage.absence(IMG, [g]).answer == coverage.UNKNOWN
        assert day_counts.observed_days_without_calls(conn, image=IMG, function="f") == 0
    engine.dispose()
    store = open_store(empty_url)
    try:
        store.write([], [ObservationWindow(IMG, "n", T0, 1, Posture.ACTIVE_TRACING, 60, "tetragon")])
        [row] = store.read_observation_windows()
        assert (row["event_count"], row["posture_level"], row["window_seconds"], row["source"]) == (
            8,
            Posture.ACTIVE_TRACING.rank,
            60,
            "tetragon",
        )
    finally:
        store.close()
