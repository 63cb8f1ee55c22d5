"""Exactly-once batch writes and refused rows, on real PostgreSQL and SQLite.

- A batch written twice with the same (agent id, sequence) is stored once:
  the second write is reported as duplicate rows and changes nothing.
- A row the database refuses (a CHECK constraint added here, standing for
  "whatever the cause"; on PostgreSQL also a real one: a function name too
  large for the key index) is isolated by splitting the batch: every other
  row is stored, the refused one lands in ``quarantined_rows`` with its error.
- Retrying a batch that was split, after the cause went away, adds nothing
  twice: the ledger remembers each committed range.
- On PostgreSQL a retry waits for an attempt at the same batch that is still
  open on the server (an abandoned, hung write) and then sees its result.
- The spool file round-trips batches and refuses a damaged one.
"""

from __future__ import annotations

import json
import random
import string
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from pg import libpq_dsn

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.batches import Batch, Coverage, coverage
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.spool import SpoolError, parse_spool, read_spool, write_spool
from stellaops_runtime.store.writer import HotSymbolStore

S = 1_000_000_000
T0 = 1_740_787_200 * S
IMG = "sha256:" + "e" * 64


def delta(fn: str, count: int, *, window: int = 0) -> HotSymbolDelta:
    start = T0 + window * 60 * S
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, "/lib/libz.so.1", fn, EvidenceKind.INVOKED),
        window_start_ns=start,
        invocation_count=count,
        first_seen_ns=start + S,
        last_seen_ns=start + 2 * S,
        node_name="node-1",
    )


def batch(seq: int, n: int = 40, *, bad: set[int] = frozenset(), agent: str = "node-1/x") -> Batch:  # type: ignore[assignment]
    units: list[HotSymbolDelta | ObservationWindow | None] = [
        delta(f"evil_{i}" if i in bad else f"fn_{i}", i + 1) for i in range(n)
    ]
    units.append(ObservationWindow(IMG, "node-1", T0, n, Posture.EBPF_DEEP, 60, "tetragon"))
    return Batch(agent, seq, units)


@pytest.fixture
def store(url: str) -> Iterator[HotSymbolStore]:
    s = open_store(url)
    yield s
    s.close()


def counts(store: HotSymbolStore) -> dict[str, int]:
    return {r["function_name"]: r["invocation_count"] for r in store.read_hot_symbols()}


def refuse_evil(store: HotSymbolStore) -> None:
    """A CHECK constraint that refuses any function named evil_*: the database says no to that row."""
    table = "signals.hot_symbol_windows" if store.engine.dialect.name == "postgresql" else None
    with store.engine.begin() as c:
        if table:
            c.execute(
                sa.text(f"ALTER TABLE {table} ADD CONSTRAINT no_evil CHECK (function_name NOT LIKE 'evil%')")
            )
        else:  # SQLite cannot add a CHECK to a table: a trigger refuses the same rows
            c.execute(
                sa.text(
                    "CREATE TRIGGER no_evil BEFORE INSERT ON hot_symbol_windows "
                    "WHEN NEW.function_name LIKE 'evil%' BEGIN SELECT RAISE(ABORT, 'no evil rows'); END"
                )
            )


def allow_evil(store: HotSymbolStore) -> None:
    with store.engine.begin() as c:
        if store.engine.dialect.name == "postgresql":
            c.execute(sa.text("ALTER TABLE signals.hot_symbol_windows DROP CONSTRAINT no_evil"))
        else:
            c.execute(sa.text("DROP TRIGGER no_evil"))


def quarantined(store: HotSymbolStore) -> list[dict[str, object]]:
    t = "signals.quarantined_rows" if store.engine.dialect.name == "postgresql" else "quarantined_rows"
    with store.engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(sa.text(f"SELECT * FROM {t} ORDER BY id"))]


def test_a_batch_written_twice_is_stored_once(store: HotSymbolStore) -> None:
    b = batch(1)
    first = store.write_batch(b)
    assert (first.written, first.duplicate) == (41, 0)
    before = counts(store)
    again = store.write_batch(b)
    assert (again.written, again.duplicate) == (0, 41)
    assert counts(store) == before == {f"fn_{i}": i + 1 for i in range(40)}
    assert [r["event_count"] for r in store.read_observation_windows()] == [40]
    # Another sequence (or another agent) with the same rows is new data and adds up.
    assert store.write_batch(batch(2)).written == 41
    assert store.write_batch(batch(1, agent="node-2/y")).written == 41
    assert counts(store)["fn_0"] == 3


def test_one_refused_row_is_quarantined_and_the_rest_stored(store: HotSymbolStore) -> None:
    refuse_evil(store)
    b = batch(1, bad={17})
    result = store.write_batch(b)
    assert (result.written, result.quarantined, result.duplicate) == (40, 1, 0)
    assert result.quarantined_invocations == 18
    assert result.splits >= 1
    got = counts(store)
    assert "evil_17" not in got and got == {f"fn_{i}": i + 1 for i in range(40) if i != 17}
    [q] = quarantined(store)
    assert q["table_name"] == "hot_symbols" and q["agent_id"] == "node-1/x"
    row = json.loads(str(q["row_json"]))
    assert row["function_name"] == "evil_17" and row["invocation_count"] == 18
    assert "no_evil" in str(q["error"]) or "no evil rows" in str(q["error"])

    # The same batch again (a retry after a lost acknowledgement): nothing is added or quarantined twice.
    again = store.write_batch(b)
    assert (again.written, again.quarantined, again.duplicate) == (0, 0, 41)
    assert counts(store) == got and len(quarantined(store)) == 1

    # The cause goes away and the split batch is retried: the ledger remembers each committed range.
    allow_evil(store)
    third = store.write_batch(b)
    assert (third.written, third.duplicate) == (0, 41)
    assert counts(store) == got


def test_many_refused_rows_each_quarantined(store: HotSymbolStore) -> None:
    refuse_evil(store)
    bad = {0, 1, 2, 20, 39}
    result = store.write_batch(batch(1, bad=bad))
    assert (result.written, result.quarantined) == (41 - len(bad), len(bad))
    assert sorted(json.loads(str(q["row_json"]))["function_name"] for q in quarantined(store)) == sorted(
        f"evil_{i}" for i in bad
    )


@pytest.mark.postgres
def test_a_function_name_too_large_for_the_index_is_quarantined_on_postgres(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        rng = random.Random(5)
        huge = "".join(rng.choice(string.ascii_letters) for _ in range(12_000))  # incompressible
        units: list[HotSymbolDelta | ObservationWindow | None] = [
            delta("fn_a", 5),
            delta(huge, 7),
            delta("fn_b", 9),
        ]
        result = store.write_batch(Batch("node-1/x", 1, units))
        assert (result.written, result.quarantined) == (2, 1)
        assert counts(store) == {"fn_a": 5, "fn_b": 9}
        [q] = quarantined(store)
        assert "index row" in str(q["error"]) or "exceeds" in str(q["error"])
    finally:
        store.close()


@pytest.mark.postgres
def test_a_retry_waits_for_a_hung_attempt_at_the_same_batch_and_sees_its_result(pg_url: str) -> None:
    store = open_store(pg_url)
    b = batch(7, n=5)
    try:
        # The "abandoned" attempt: same lock, ledger row and counts, not yet committed.
        hung = psycopg.connect(libpq_dsn(pg_url))
        hung.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"stellaops-flush/{b.agent_id}/{b.seq}"]
        )
        hung.execute("INSERT INTO signals.flush_ledger VALUES (%s, %s, '0-6', 6, now())", [b.agent_id, b.seq])
        hung.execute(
            "INSERT INTO signals.hot_symbols (image_digest, module, function_name, evidence_kind, "
            "invocation_count, unique_callers, total_latency_ns, max_latency_ns, confidence, first_seen, "
            "last_seen, updated_at) VALUES (%s, '/lib/libz.so.1', 'fn_0', 'invoked', 1, 0, 0, 0, 1, now(), "
            "now(), now())",
            [IMG],
        )
        out: dict[str, object] = {}
        t = threading.Thread(target=lambda: out.setdefault("r", store.write_batch(b)))
        t.start()
        time.sleep(1.0)
        assert t.is_alive(), "the retry must wait for the attempt that holds the batch"
        hung.commit()
        t.join(10)
        result = out["r"]
        assert result.duplicate == 6 and result.written == 0  # type: ignore[attr-defined]
        assert counts(store) == {"fn_0": 1}
        hung.close()
    finally:
        store.close()


def test_coverage_of_nested_ranges() -> None:
    assert coverage((0, 4), []) is Coverage.FREE
    assert coverage((0, 4), [(0, 4)]) is Coverage.APPLIED
    assert coverage((2, 3), [(0, 4)]) is Coverage.APPLIED
    assert coverage((0, 4), [(0, 2)]) is Coverage.PARTIAL
    assert coverage((2, 4), [(0, 2)]) is Coverage.FREE


def test_spool_round_trip_and_damage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "hot.spool"
    b = batch(3, n=4)
    b.units[1] = None  # a tombstone keeps its place
    assert write_spool(path, [b]) == 4
    [back] = read_spool(path) or []
    assert (back.agent_id, back.seq, back.from_spool, len(back.units), back.rows) == (
        "node-1/x",
        3,
        True,
        5,
        4,
    )
    assert back.units == b.units
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    data = path.read_bytes()
    for damaged in (data[:-10], data.replace(b"fn_0", b"fn_9"), data[: len(data) // 2], b"", b"{}\n"):
        with pytest.raises(SpoolError):
            parse_spool(damaged)
    assert read_spool(tmp_path / "none.spool") is None


def test_ledger_rows_past_the_retention_are_pruned(store: HotSymbolStore) -> None:
    import datetime as dt

    from stellaops_runtime.store.ledger import LEDGER_RETENTION, prune_ledger
    from stellaops_runtime.store.schema import flush_ledger

    store.write_batch(batch(1, n=2))
    old = dt.datetime.now(dt.UTC) - LEDGER_RETENTION - dt.timedelta(hours=1)
    with store.engine.begin() as c:
        c.execute(
            flush_ledger.insert().values(
                agent_id="gone/1", flush_seq=1, part="0-1", row_count=1, committed_at=old
            )
        )
    assert prune_ledger(store.db) == 1
    with store.engine.connect() as c:
        left = c.execute(sa.select(flush_ledger.c.agent_id)).scalars().all()
    assert left == ["node-1/x"]


def test_the_ledger_keeps_only_what_may_still_be_retried(store: HotSymbolStore) -> None:
    from stellaops_runtime.store.schema import flush_ledger

    def ledger() -> list[tuple[str, int]]:
        with store.engine.connect() as c:
            rows = c.execute(sa.select(flush_ledger.c.agent_id, flush_ledger.c.flush_seq)).all()
        return sorted((r[0], r[1]) for r in rows)

    store.write_batch(batch(1, n=2, agent="old/1"))  # an agent that died: kept for its spool
    for seq in range(1, 6):
        b = batch(seq, n=2)
        b.ledger_floor = seq  # the agent's oldest pending batch is this one
        store.write_batch(b)
    assert ledger() == [("node-1/x", 5), ("old/1", 1)]
    # A retry of the newest batch still finds it: the floor never removes a batch still pending.
    b = batch(5, n=2)
    b.ledger_floor = 5
    assert store.write_batch(b).duplicate == 3


def test_after_an_abort_the_store_opens_new_connections_and_writes(store: HotSymbolStore) -> None:
    """abort() reaches every connection the store opened, and the next write opens a new one."""
    assert store.write_batch(batch(1, n=3)).written == 4
    assert store._raw, "the store tracks the connections it opened"
    store.abort()
    assert store.write_batch(batch(2, n=3)).written == 4
    store.abort()
    store.abort()
    assert store.write_batch(batch(3, n=3)).written == 4
    assert counts(store)["fn_0"] == 3
