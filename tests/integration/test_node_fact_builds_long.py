"""A node fact whose names are near PostgreSQL's index limit is stored, and meets its container.

``node_fact_builds``' key is ``hot_symbols``' key with a build-id (40 characters) in place of the
kind: a fact whose path and name fit ``hot_symbols``' key index with less than that to spare was
refused by the new table's (SQLSTATE 54000, "index row size exceeds btree version 4 maximum"), and
the flush's transaction with it. The ledger's bisection then quarantined the fact's row: a
container that ran the node's file met no fact and said ``not_observed`` where the store before
0016 said ``unknown``; and migration 0016's copy of the stored facts failed on such a row, so the
store could not be upgraded. Such a fact's builds are not kept now (store/fact_builds.py): it is
met by the build its row keeps, as before 0016. SQLite and PostgreSQL (SQLite has no such limit).
"""

from __future__ import annotations

import datetime as dt
import json
import random

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import create_store_engine, migrate, open_store
from stellaops_runtime.store.fact_builds import MAX_KEY_BYTES
from stellaops_runtime.store.rows import HOT_COLS, OBS_COLS, hot_tuple, obs_tuple
from stellaops_runtime.store.schema import hot_symbols, node_fact_builds, observation_windows
from tests.cli_run import cli_in_process
from tests.integration.test_answer_replaced_in_place import HOST, _delta, _windows
from tests.integration.test_migration_0016 import MODULE, OLD, OLDPOD, _at, _loaded
from tests.integration.test_vex import DAY, T0

# 2,615 characters no compression shortens: within hot_symbols' key index (about 2,630 with this
# path and image), past node_fact_builds' (about 2,600) had it been written there
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
LONG = "f" + "".join(random.Random(7).choices(LETTERS, k=2614))
AT = T0 + 2 * DAY


def _answer(url: str) -> tuple[int, str]:
    r = cli_in_process("query", "observed", "--image", OLDPOD, "--function", LONG, "--store", url, "--json")
    assert r.stdout.strip(), r.stderr[-2000:]
    return r.returncode, str(json.loads(r.stdout)["answer"])


def _windows_once() -> list[ObservationWindow]:
    return list(
        {(w.image_digest, w.window_start_ns): w for i in (HOST, OLDPOD) for w in _windows(i)}.values()
    )


def test_a_fact_near_the_index_limit_is_stored_and_met(url: str) -> None:
    """Seen failing before the fix on PostgreSQL: the fact's row was quarantined (the write's
    errors named pk_node_fact_builds) and the container's answer was not_observed (exit 1). A key
    of MAX_KEY_BYTES itself is kept, and fits the index."""
    room = MAX_KEY_BYTES - len(HOST) - len(MODULE) - len(OLD) - len(".part.0")
    edge = "g" + "".join(random.Random(8).choices(LETTERS, k=room - 1))  # incompressible too
    with open_store(url) as s:
        facts = [_delta(MODULE, f"{n}.part.0", 0, AT, OLD) for n in (LONG, edge)]
        res = s.write_batch(Batch("node-1/a", 1, [*facts, _loaded(OLDPOD, AT, OLD), *_windows_once()]))
        assert (res.errors, res.quarantined) == ([], 0)
        stored = sorted(r["function_name"] for r in s.read_hot_symbols() if r["image_digest"] == HOST)
        assert stored == sorted(f"{n}.part.0" for n in (LONG, edge))
        with s.engine.connect() as conn:
            t = node_fact_builds.c
            assert conn.execute(sa.select(t.function_name, t.build_id)).all() == [(f"{edge}.part.0", OLD)]
    assert _answer(url) == (3, "unknown")


def test_migration_0016_upgrades_a_store_holding_such_a_fact(empty_url: str) -> None:
    """Seen failing before the fix on PostgreSQL: the upgrade's copy into node_fact_builds was
    refused (index row size), so the store stayed at 0015."""
    now = dt.datetime.now(dt.UTC)
    engine = create_store_engine(empty_url)
    try:
        migrate(engine, revision="0015")
        with engine.begin() as conn:  # as an agent before 0016 left them
            rows = [_delta(MODULE, f"{LONG}.part.0", 0, AT, OLD), _loaded(OLDPOD, AT, OLD)]
            _at(
                conn,
                hot_symbols,
                [dict(zip(HOT_COLS, hot_tuple(d), strict=True), updated_at=now) for d in rows],
            )
            _at(
                conn,
                observation_windows,
                [dict(zip(OBS_COLS, obs_tuple(w), strict=True)) for w in _windows_once()],
            )
        migrate(engine)
    finally:
        engine.dispose()
    assert _answer(empty_url) == (3, "unknown")
