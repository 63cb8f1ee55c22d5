"""A pairing the store can never take does not hold the node's rows; many pairings are written in parts.

Since 1ec7b784 the flush writes the image pairings (store/image_pairs.py) before its rows, and a
flush whose pairing write fails stores no rows. That is right for a store that is down, and wrong
for a pairing that can never be written: every later flush failed too, and the node stored nothing
again. Two such cases, both seen failing before the fix:

- the store refuses a pairing as data (a constraint, a value its column does not take: SQLSTATE
  classes 22/23/54, as the ledger's row refusals): the pairing is now counted and logged
  (``PairsToRecord.refused``, ``lifecycle_image_pairs_refused_total``) and never tried again, the
  other pairings and the rows are stored;
- many pairings (up to ``MAX_PAIRS`` = 65,536, a node's registry after a restart) were one
  statement each in one transaction: 17-19 s on the test PostgreSQL, so a ``store.flushTimeout``
  shorter than that (or a remote database's round trips) failed every flush from the start. They
  are now written a part (one statement) at a time, each part kept as it commits, so a flush that
  times out leaves the next one less to write.

And a pairing write that timed out was left hanging on its thread and connection, one more each
flush on a hung store: it is now cut as the rows' write is.

Real Flusher and store (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from urllib.parse import urlsplit

import sqlalchemy as sa
from pgproxy import PgProxy

from stellaops_runtime.agent.flusher import Flusher
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import create_store_engine
from stellaops_runtime.store.image_pairs import MAX_PAIRS
from stellaops_runtime.store.schema import datetime_to_ns, image_pairs

MANIFEST = "sha256:" + "1" * 64
CONFIG = "sha256:" + "c" * 64
LONG_CONFIG = "sha512:" + "d" * 128  # the one the store's constraint refuses
NOW = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)


def window(image: str, minutes_ago: int = 5) -> ObservationWindow:
    start = datetime_to_ns(NOW - dt.timedelta(minutes=minutes_ago))
    return ObservationWindow(image, "node-2", start, 9, Posture.EBPF_DEEP, 60, "tetragon")


def flusher(url: str, flush_timeout: str = "30s") -> Flusher:
    async def no_drain() -> None:
        return None

    st = {"url": url, "migrate": False, "flushTimeout": flush_timeout, "connectTimeout": "1s"}
    cfg = AgentConfig(store=st)
    return Flusher(cfg, agent_id="node-2/a", drain=no_drain, stop=lambda _r: None)


def stored(url: str, table: sa.Table) -> int:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def refuse_long_configs(url: str) -> None:
    """The store refuses a config digest longer than sha256's (a constraint a DBA added)."""
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("ALTER TABLE signals.image_pairs ADD CONSTRAINT short_config "
                                     "CHECK (length(config_digest) <= 71)"))  # fmt: skip
            else:
                conn.execute(sa.text("CREATE TRIGGER short_config BEFORE INSERT ON image_pairs "
                                     "WHEN length(NEW.config_digest) > 71 "
                                     "BEGIN SELECT RAISE(ABORT, 'config digest too long'); END"))  # fmt: skip
    finally:
        engine.dispose()


async def test_a_pairing_the_store_refuses_is_counted_and_holds_no_rows(url: str) -> None:
    """Before: every flush returned False, its rows pending, the good pairing unstored too."""
    from stellaops_runtime.store.schema import observation_windows

    refuse_long_configs(url)
    f = flusher(url)
    try:
        f.pairs.note(LONG_CONFIG, MANIFEST)
        f.pairs.note(CONFIG, MANIFEST)
        f.pending.add([], [window(MANIFEST)])
        assert await f.flush() is True, f.pending.last_error
        assert f.pending.pending_rows == 0 and stored(url, observation_windows) == 1
        assert f.pairs.refused == 1 and f.pairs.unstored() == []
        assert f.pairs.others(CONFIG) == {MANIFEST}  # the good pairing is stored
        assert stored(url, image_pairs) == 1
        # never tried again: a later flush stores its rows (the refused pairing is not re-offered
        # either: the registry notes it at each refresh)
        f.pairs.note(LONG_CONFIG, MANIFEST)
        f.pending.add([], [window(MANIFEST, 4)])
        assert await f.flush() is True and stored(url, observation_windows) == 2
        assert f.pairs.refused == 1
    finally:
        await f.close()


async def test_more_pairings_than_one_flush_timeout_writes_are_stored_over_flushes(pg_url: str) -> None:
    """A quarter of MAX_PAIRS at once (~4.5 s one statement each on the test PostgreSQL) and a 1 s
    flushTimeout. Before: each flush began them all again and timed out: never stored, nor the
    rows (5 flushes, all False). Now each flush keeps the parts it stored."""
    from stellaops_runtime.store.schema import observation_windows

    n = MAX_PAIRS // 4
    f = flusher(pg_url, flush_timeout="1s")
    try:
        for i in range(n):
            f.pairs.note(f"sha256:{2 * i + 1:064x}", f"sha256:{2 * i + 2:064x}")
        f.pending.add([], [window(MANIFEST)])
        for _ in range(5):
            if await f.flush():
                break
        assert f.pending.pending_rows == 0, f.pending.last_error
        assert f.pairs.unstored() == [] and f.pairs.refused == 0
        assert stored(pg_url, image_pairs) == n and stored(pg_url, observation_windows) == 1
    finally:
        await f.close()


def store_pairs_threads() -> int:
    return sum(t.name == "store-pairs" and t.is_alive() for t in threading.enumerate())


async def test_a_pairing_write_on_a_hung_store_is_cut_not_left_hanging(pg_url: str) -> None:
    """The store opened, then the network goes silent (tests/pgproxy.py's black hole) while a new
    image's pairing waits. Before: each flush's pairing write was left hanging on its thread and
    connection (3 flushes, 3 threads), as no row write of the flush ran to cut them; the rows' own
    write and the start row cut a hung store's connections. Now it is cut as theirs are."""
    target = urlsplit(pg_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    f = flusher(proxy.url(pg_url), flush_timeout="1s")
    try:
        assert await f.open() is True
        proxy.blackhole()
        f.pairs.note(CONFIG, MANIFEST)
        f.pending.add([], [window(MANIFEST)])
        for _ in range(3):
            assert await f.flush() is False
        for t in [t for t in threading.enumerate() if t.name == "store-pairs"]:
            await asyncio.to_thread(t.join, 3.0)  # one connecting into the black hole: connectTimeout
        assert store_pairs_threads() == 0
        proxy.heal()
        assert await f.flush() is True, f.pending.last_error
        assert f.pairs.unstored() == [] and f.pending.pending_rows == 0
    finally:
        await f.close()
        proxy.close()


async def test_a_pairing_write_abandoned_at_the_flush_timeout_is_counted(pg_url: str) -> None:
    """store_flush_timeouts_total says "writes abandoned after store.flushTimeout": a pairing write
    cut there was not counted (only the rows' writes were), so a store hanging at each flush's
    pairings showed flush failures and no timeout at all."""
    target = urlsplit(pg_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    f = flusher(proxy.url(pg_url), flush_timeout="1s")
    try:
        f.pending.add([], [window(MANIFEST)])
        assert await f.flush() is True  # the start row and the rows stored; the connection pooled
        proxy.blackhole()  # that connection goes silent: the pairing's write hangs, not its connect
        f.pairs.note(CONFIG, MANIFEST)
        f.pending.add([], [window(MANIFEST, 4)])
        assert await f.flush() is False and "pairings" in f.pending.last_error
        assert f.pending.timeouts == 1 and f.pending.pending_rows == 1
    finally:
        await f.close()
        proxy.close()
