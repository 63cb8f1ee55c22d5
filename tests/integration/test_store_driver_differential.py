"""The agent's writes through its own PostgreSQL client (pgwire) store what psycopg's store.

store/dbconn.py opens PostgreSQL connections with pgwire unless pgwire does not speak the
configuration (store/pg_connect.py); then with psycopg, as before. The same write path (batches of
the synthetic stream's counts through the ledger, a row the database refuses, node start, proof of
life and stop, image pairings, the history's maintenance) runs once on each driver, into two
databases of the same server, and every row of every table must be the same. A URL keyword pgwire
does not speak (``target_session_attrs``) is what makes one of them psycopg's: the fallback a user
gets, which must work and say why in the log.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections import Counter
from typing import Any

import psycopg
import pytest
from pg import libpq_dsn

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.node_liveness import Liveness, write_liveness, write_start
from stellaops_runtime.store.node_stop import Stop, write_stop
from stellaops_runtime.store.pg_connect import is_pgwire
from tests.e2e import harness as h

pytestmark = pytest.mark.postgres

S = 1_000_000_000
NODE = "node-d"
AGENT = "node-d/3f2a"
PSYCOPG_ONLY = "target_session_attrs=read-write"  # libpq checks the server takes writes; pgwire cannot


def with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def stream_deltas(t0: int) -> tuple[list[HotSymbolDelta], list[str]]:
    """The synthetic stream's uprobe counts as deltas over three windows (a third each), and its images."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for o in h.stream_objects():
        u = o.get("process_uprobe")
        if u:
            digest = u["process"]["pod"]["container"]["image"]["id"].split("@")[1]
            counts[(digest, u["path"], u["symbol"])] += 1
    out = []
    for i, ((digest, module, symbol), n) in enumerate(sorted(counts.items())):
        start = t0 + (i % 3) * 60 * S
        for kind in (EvidenceKind.INVOKED, EvidenceKind.ON_STACK):
            out.append(
                HotSymbolDelta(
                    key=HotSymbolKey(digest, module, symbol, kind),
                    window_start_ns=start,
                    invocation_count=n * (3 if kind is EvidenceKind.ON_STACK else 1),
                    first_seen_ns=start + S + 123_456,
                    last_seen_ns=start + 2 * S + 789,
                    node_name=NODE,
                )
            )
    return out, sorted({d for d, _, _ in counts})


def write_everything(url: str, t0: int) -> bool:
    """The agent's write path on ``url``; returns whether the store's connections were pgwire's."""
    store = open_store(url)
    try:
        deltas, images = stream_deltas(t0)
        live = Liveness(NODE, AGENT, 30.0, t0 - 10 * S, 1.0, t0 + 170 * S, 10.0, 60)
        write_start(store.db, live)
        half = len(deltas) // 2
        obs = [ObservationWindow(d, NODE, t0 + w * 60 * S, 7 + w, Posture.EBPF_DEEP, 60, "tetragon")
               for d in images for w in range(3)]  # fmt: skip
        bad = HotSymbolDelta(  # refused by the server (a NUL): quarantined, the rest stored
            key=HotSymbolKey(images[0], "/lib/x.so", "nul\x00name", EvidenceKind.INVOKED),
            window_start_ns=t0,
            invocation_count=5,
            first_seen_ns=t0 + S,
            last_seen_ns=t0 + 2 * S,
            node_name=NODE,
        )
        units: list[Any] = [*deltas[:half], bad, *obs[:3]]
        first = store.write_batch(Batch(AGENT, 1, units))
        second = store.write_batch(Batch(AGENT, 2, [*deltas[half:], *obs[3:]], ledger_floor=1))
        again = store.write_batch(Batch(AGENT, 2, [*deltas[half:], *obs[3:]], ledger_floor=1))
        assert (first.quarantined, second.quarantined, again.written) == (1, 0, 0), (first, second, again)
        assert again.duplicate == second.written > 0, (second, again)
        write_liveness(store.db, live)
        store.record_pairs([(images[0], "sha256:" + "9" * 64)])
        write_stop(store.db, Stop(NODE, AGENT, "SIGTERM", tuple(images[:2]), False, t0))
        with store.db.connect() as conn:
            pgwire = is_pgwire(conn.raw)
            zone = conn.execute("SHOW TimeZone").scalar()
        assert zone == (TZ if "TimeZone" in url else "Etc/UTC"), (zone, url)
        return pgwire
    finally:
        store.close()


def tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Every table of the store (a partitioned table once, not its partitions), qualified."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_%%' "
        "ORDER BY 1, 2"
    ).fetchall()
    return [f"{s}.{t}" for s, t in rows]


def dump(url: str, now: tuple[dt.datetime, dt.datetime]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted; a moment of the server's clock during the run (a write's
    ``clock_timestamp()``) reads ``"now"``: the two runs were not at the same instant."""

    def value(v: Any) -> Any:
        if isinstance(v, dt.datetime) and v.tzinfo is not None and now[0] <= v <= now[1]:
            return "now"
        return v

    out: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(libpq_dsn(url)) as conn:
        for t in tables(conn):
            rows = conn.execute(f"SELECT * FROM {t}").fetchall()
            out[t] = sorted((tuple(value(v) for v in r) for r in rows), key=repr)
    return out


TZ = "Asia/Kathmandu"  # an odd session time zone: +05:45


# A session time zone (options=-c TimeZone=..., which both drivers send; PGTZ would make both psycopg's,
# pgwire.unsupported): the agent's writes must not depend on it.
@pytest.mark.parametrize("zone", [None, TZ])
def test_the_agents_writes_store_the_same_rows_through_pgwire_and_psycopg(
    pg: Any, pg_url: str, zone: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    other = pg.migrated_database()
    session = f"options=-c%20TimeZone%3D{TZ.replace('/', '%2F')}" if zone else ""
    try:
        t0 = (int(dt.datetime.now(dt.UTC).timestamp()) // 86_400 - 2) * 86_400 * S  # two days ago
        began = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
        with caplog.at_level(logging.INFO, logger="stellaops_runtime.store.pg_connect"):
            assert write_everything(with_query(pg_url, session) if zone else pg_url, t0) is True
            assert "psycopg" not in caplog.text  # pgwire speaks the test server's URL: no fallback said
            psycopg_url = with_query(other, PSYCOPG_ONLY)
            assert write_everything(with_query(psycopg_url, session) if zone else psycopg_url, t0) is False
        said = [r.getMessage() for r in caplog.records if r.name == "stellaops_runtime.store.pg_connect"]
        assert len(said) == 1 and "target_session_attrs" in said[0] and "psycopg" in said[0], said
        now = (began, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2))
        mine, theirs = dump(pg_url, now), dump(other, now)
        assert set(mine) == set(theirs)
        assert sum(len(r) for r in mine.values()) > 100  # the runs stored something to compare
        # The refused row's error is each driver's words: pgwire refuses the NUL before sending it
        # (as psycopg's Python dumper does); psycopg's C dumper sends it and the server refuses it.
        errors = [t.pop("signals.quarantined_rows") for t in (mine, theirs)]
        assert [[r[:-2] for r in e] for e in errors] == [[r[:-2] for r in errors[1]]] * 2
        (pgwire_said,), (psycopg_said,) = ([r[-2] for r in e] for e in errors)
        assert "PostgreSQL text fields cannot contain NUL (0x00) bytes" in pgwire_said, pgwire_said
        assert psycopg_said == 'invalid byte sequence for encoding "UTF8": 0x00'  # the server's
        for table in mine:
            assert mine[table] == theirs[table], table
    finally:
        pg.drop_database(other)


def test_an_environment_variable_pgwire_does_not_handle_makes_psycopg_open_and_it_works(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PGKRBSRVNAME", "postgres")  # Kerberos' service name: libpq's default, pgwire's none
    with caplog.at_level(logging.INFO, logger="stellaops_runtime.store.pg_connect"):
        store = open_store(pg_url)
        try:
            with store.db.begin() as conn:
                assert conn.execute("SELECT 41 + 1").scalar() == 42
                assert not is_pgwire(conn.raw)
                assert type(conn.raw).__module__.startswith("psycopg")
        finally:
            store.close()
    said = [r.getMessage() for r in caplog.records if r.name == "stellaops_runtime.store.pg_connect"]
    assert len(said) == 1 and "PGKRBSRVNAME" in said[0], said
    assert "psycopg" in sys.modules
