"""Migration 0008 (keys that include the Citus distribution column) on a store holding 0007's rows.

PostgreSQL: every row of every table survives, column for column (the
dropped surrogate ``id`` of hot_symbols and observation_windows excepted),
witness ids are kept and new ones continue after them, the queries give the
same answers, a flush after the migration adds up with the migrated rows
through the new primary keys, the same envelope is still stored once, and
the downgrade gives 0007's keys back with every row. SQLite keeps its shape.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store import coverage, day_counts, queries
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.dbconn import Database
from stellaops_runtime.store.engine import alembic_config, create_store_engine, migrate, open_store
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.store.store_url import parse_store_url
from stellaops_runtime.store.writer import HotSymbolStore
from stellaops_runtime.witness import store as witness_store

IMG = "sha256:" + "e" * 64
OTHER = "sha256:" + "d" * 64
DAY = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), dt.UTC)
TABLES = (
    "hot_symbols",
    "hot_symbol_windows",
    "observation_windows",
    "flush_ledger",
    "quarantined_rows",
    "runtime_witnesses",
)
DROPPED = {"hot_symbols": "id", "observation_windows": "id"}  # 0007's surrogates, read by nothing


def _at(days: int, minutes: int = 0) -> dt.datetime:
    return DAY - dt.timedelta(days=days) + dt.timedelta(minutes=minutes)


def _stmt(image: str, function: str) -> dict[str, Any]:
    claim = {
        "image_digest": image,
        "purl": "pkg:deb/debian/zlib1g",
        "function": function,
        "vulnerability": None,
    }
    return {"predicate": {"claim": claim, "assessment": {"reachability_state": "reachable"}}}


_OBS = sa.text(
    "INSERT INTO signals.observation_windows (image_digest, node_name, window_start, event_count, "
    "posture_level, window_seconds, source, gap_start, gap_end, throttle_count, dropped_events) "
    "VALUES (:i, 'node-1', :s, :n, 3, 60, 'tetragon', :gs, :ge, :t, :dr)"
)
_HOT = sa.text(
    "INSERT INTO signals.hot_symbols (image_digest, module, function_name, evidence_kind, build_id, purl, "
    "function_id, invocation_count, unique_callers, total_latency_ns, max_latency_ns, confidence, "
    "first_seen, last_seen, node_name, sample, updated_at) "
    "VALUES (:i, '/lib/libz.so.1', :f, 'invoked', 'abcd', 'pkg:deb/debian/zlib1g', "
    ":fid, :n, 2, :n, 9, 0.5, :a, :b, 'node-1', CAST(:sample AS jsonb), :b)"
)
_WIN = sa.text(
    "INSERT INTO signals.hot_symbol_windows (image_digest, module, function_name, evidence_kind, "
    "window_start, invocation_count, unique_callers, total_latency_ns, max_latency_ns, first_seen, "
    "last_seen) VALUES (:i, '/lib/libz.so.1', :f, 'invoked', :s, :n, 1, :n, 3, :s, :s)"
)


def _fill_0007(engine: sa.Engine) -> None:
    rows = 0
    with engine.begin() as conn:
        for i, image in enumerate((IMG, OTHER, "")):
            for d in range(3):
                conn.execute(
                    _OBS,
                    {"i": image, "s": _at(d), "n": 0 if image == "" else 5 + d, "t": i, "dr": 7 * i,
                     "gs": _at(d) if d == 1 else None, "ge": _at(d, 1) if d == 1 else None},
                )  # fmt: skip
            if image == "":
                continue
            for fn in ("inflate", "crc32", "f'\"; DROP TABLE x; --\u00e9"):
                n = 10 * i + len(fn)
                rows += 1
                conn.execute(
                    _HOT,
                    {"i": image, "f": fn, "fid": f"abcd:{fn}+0x0", "n": n, "a": _at(2), "b": _at(0, 5),
                     "sample": json.dumps({"binary": "/bin/x"}) if fn == "crc32" else None},
                )  # fmt: skip
                for d in range(3):
                    for _agent in range(2):  # two appended rows of one (key, window): readers sum them
                        conn.execute(_WIN, {"i": image, "f": fn, "s": _at(d), "n": n + d})
        for seq in range(1, 4):
            conn.execute(
                sa.text(
                    "INSERT INTO signals.flush_ledger VALUES ('node-1/a', :s, '0-9', 9, :t), "
                    "('node-2/b', :s, '0-4', 4, :t)"
                ),
                {"s": seq, "t": _at(0, seq)},
            )
        for n in range(3):
            conn.execute(
                sa.text(
                    "INSERT INTO signals.quarantined_rows (agent_id, table_name, row_json, error, "
                    "quarantined_at) VALUES ('node-1/a', 'hot_symbols', :j, 'value too long', :t)"
                ),
                {"j": json.dumps({"n": n, "nul": "a\\u0000b"}), "t": _at(0, n)},
            )
    with engine.connect() as conn:
        for image, fn in ((IMG, "inflate"), (IMG, "crc32"), (OTHER, "inflate")):
            witness_store.save(
                conn, envelope=f'{{"payload": "{image}/{fn}"}}'.encode(), stmt=_stmt(image, fn),
                key_id="k1", issued_at=_at(0),
            )  # fmt: skip
    assert rows == 6


def _dump(conn: sa.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, every column but the dropped ones, in a stable order."""
    out = {}
    for table in TABLES:
        cols = [
            c["name"]
            for c in sa.inspect(conn).get_columns(table, schema="signals")
            if c["name"] != DROPPED.get(table)
        ]
        order = ", ".join(f'"{c}"' for c in cols)
        out[table] = [
            tuple(r) for r in conn.execute(sa.text(f"SELECT {order} FROM signals.{table} ORDER BY {order}"))
        ]
    return out


def _answers(conn: sa.Connection) -> tuple[Any, ...]:
    return (
        day_counts.calls_per_day(
            conn, image=IMG, function="inflate", days=5, until=DAY + dt.timedelta(days=1)
        ),
        day_counts.observed_days_without_calls(conn, image=OTHER, function="nope"),
        [
            (r.invocation_count, r.first_seen, r.purl)
            for r in queries.observed(conn, image=IMG, function="crc32")
        ],
        coverage.image_gaps(conn, image=IMG),
        coverage.image_windows(conn, image=OTHER),
        [(w.id, w.claim_id, w.envelope_sha256) for w in witness_store.find(conn, image=IMG)],
    )


def _downgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


@pytest.mark.postgres
def test_0008_rekeys_a_0007_store_and_keeps_every_row(pg_empty_url: str) -> None:
    engine = create_store_engine(pg_empty_url)
    try:
        migrate(engine, revision="0007")
        _fill_0007(engine)
        with engine.connect() as conn:
            before, answers = _dump(conn), _answers(conn)
        assert {t: len(r) for t, r in before.items()} == {
            "hot_symbols": 6, "hot_symbol_windows": 36, "observation_windows": 9, "flush_ledger": 6,
            "quarantined_rows": 3, "runtime_witnesses": 3,
        }  # fmt: skip
        assert answers[3] and answers[4] and len(answers[5]) == 2  # a gap and two witnesses to compare

        migrate(engine, revision="0008")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM signals.alembic_version")).scalar() == "0008"
            assert _dump(conn) == before
            assert _answers(conn) == answers
            for table in DROPPED:
                assert "id" not in {c["name"] for c in sa.inspect(conn).get_columns(table, schema="signals")}

            # the same envelope is still stored once; a new one is numbered after the migrated ones
            old_ids = [w[0] for w in answers[5]]
            env = f'{{"payload": "{IMG}/inflate"}}'.encode()
            assert witness_store.save(conn, envelope=env, stmt=_stmt(IMG, "inflate"), key_id="k1",
                                      issued_at=_at(0)) == (min(old_ids), False)  # fmt: skip
            new_id, new = witness_store.save(
                conn,
                envelope=b'{"payload": "new"}',
                stmt=_stmt(IMG, "adler32"),
                key_id="k1",
                issued_at=_at(0),
            )
            assert new and new_id > max(old_ids)
            with pytest.raises(sa.exc.IntegrityError), conn.begin():  # the key refuses a copy by hand too
                conn.execute(
                    sa.text(
                        "INSERT INTO signals.runtime_witnesses (claim_id, image_digest, purl, function, "
                        "key_id, envelope_sha256, envelope, issued_at) SELECT claim_id, image_digest, purl, "
                        "function, key_id, envelope_sha256, envelope, issued_at "
                        "FROM signals.runtime_witnesses WHERE id = :id"
                    ),
                    {"id": new_id},
                )

        # flushes go on adding up through the new primary keys (ON CONFLICT targets)
        key = HotSymbolKey(IMG, "/lib/libz.so.1", "crc32", EvidenceKind.INVOKED)
        w = datetime_to_ns(_at(0))
        with open_store(pg_empty_url) as store:
            store.write_batch(Batch("node-9/z", 1, [HotSymbolDelta(key, w, 7, w, w)]))
            row = next(
                r
                for r in store.read_hot_symbols()
                if r["image_digest"] == IMG and r["function_name"] == "crc32"
            )
            assert row["invocation_count"] == len("crc32") + 7 and "id" not in row

        _downgrade(engine, "0007")  # and back: 0007's keys, every row, id numbered afresh
        with engine.connect() as conn:
            back = _dump(conn)
            assert len(back["hot_symbols"]) == 6 and len(back["runtime_witnesses"]) == 4
            assert back["observation_windows"] == before["observation_windows"]
            for table in DROPPED:
                ids = conn.execute(sa.text(f"SELECT count(DISTINCT id), count(*) FROM signals.{table}")).one()
                assert ids[0] == ids[1] > 0
        migrate(engine)
        with engine.connect() as conn:
            assert len(_dump(conn)["hot_symbols"]) == 6
    finally:
        engine.dispose()


def test_0008_on_sqlite_keeps_its_shape_and_rows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/hot.db"
    engine = create_store_engine(url)
    key = HotSymbolKey(IMG, "/lib/libz.so.1", "crc32", EvidenceKind.INVOKED)
    w = datetime_to_ns(_at(0))
    try:
        migrate(engine, revision="0007")
        # open_store refuses a store behind head without migrations (test_store_old_schema.py):
        # the row of the older revision is written through a store opened on it directly.
        with HotSymbolStore(Database(parse_store_url(url))) as store:
            store.write_batch(Batch("node-1/a", 1, [HotSymbolDelta(key, w, 5, w, w)]))
        migrate(engine, revision="0008")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0008"
            assert "id" in {c["name"] for c in sa.inspect(conn).get_columns("hot_symbols")}
        with open_store(url) as store:
            store.write_batch(Batch("node-1/a", 2, [HotSymbolDelta(key, w, 6, w, w)]))
            assert [r["invocation_count"] for r in store.read_hot_symbols()] == [11]
    finally:
        engine.dispose()
