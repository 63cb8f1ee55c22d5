"""A store that is down: the proof of life after a flush that could not open it does not open it again.

Defect (RLV's report, session 45, "Left alone" 5): after a flush failed to open the store, the flush
loop's proof of life (agent/flusher.py ``prove_alive``) opened it again, waiting as long again
(connect, statement and 5 s; 45 s by default), so a store that was down doubled the loop's retry
period, and each round started two connections into the outage. The proof now gives up at once
when the flush's own open just failed (counted in ``liveness_failures`` like any proof not
written); an idle node's proof, whose flush opens nothing, still opens the store itself.
Real Flusher, real PostgreSQL behind tests/pgproxy.py's black hole (connections accepted, nothing
answered: the connect timeout fires).
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

import pytest
from pgproxy import PgProxy

from stellaops_runtime.agent.flusher import Flusher
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.hotsymbols.clock_span import now_pair

NODE = "node-down"
IMG = "sha256:" + "f" * 64


def delta() -> HotSymbolDelta:
    t = time.time_ns() // 60_000_000_000 * 60_000_000_000
    key = HotSymbolKey(IMG, "/lib/libz.so.1", "inflate", EvidenceKind.INVOKED)
    return HotSymbolDelta(key=key, window_start_ns=t, invocation_count=1, first_seen_ns=t, last_seen_ns=t + 1)


def flusher(url: str, flush_timeout: str = "5s") -> Flusher:
    async def no_drain() -> None:
        return None

    cfg = AgentConfig(
        store={"url": url, "connectTimeout": "1s", "statementTimeout": "1s", "flushTimeout": flush_timeout}
    )
    return Flusher(cfg, agent_id=f"{NODE}/a1", drain=no_drain, stop=lambda _r: None, node=NODE)


async def test_the_proof_after_a_flush_that_could_not_open_the_store_opens_nothing(pg_url: str) -> None:
    target = urlsplit(pg_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    proxy.blackhole()
    f = flusher(proxy.url(pg_url))
    try:
        f.pending.add([delta()], [])
        t0 = time.monotonic()
        assert await f.flush(proof_follows=True) is False  # its open met the black hole
        flushed = time.monotonic() - t0
        tried = proxy.accepted
        assert tried >= 1 and f.store is None
        t1 = time.monotonic()
        assert await f.prove_alive(NODE, now_pair()) is False
        proved = time.monotonic() - t1
        # before: a second open into the outage, as long again as the flush's (2.0 s and 2.0 s)
        assert proxy.accepted == tried and proved < 0.5, (proxy.accepted, tried, flushed, proved)
        assert f.liveness_failures == 1
    finally:
        proxy.close()
    # an idle node's flush opens nothing: its proof still opens the store itself
    g = flusher(pg_url)
    assert await g.flush(proof_follows=True) is True and g.store is None
    assert await g.prove_alive(NODE, now_pair()) is True and g.liveness_failures == 0
    await g.close()


async def test_a_hung_store_costs_a_fresh_agent_s_first_flush_one_flush_timeout_not_two(pg_url: str) -> None:
    """The start row (store/node_liveness.py ``write_start``) goes before an agent's first rows: on a
    store that hangs once open it waited ``store.flushTimeout`` and then the rows' write waited as long
    again (seen: 2.0 s with a 1 s timeout). A start row not written in time now fails the flush, its
    hung connection cut as a hung write's is: the rows wait in the buffer for the next flush."""
    target = urlsplit(pg_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    f = flusher(proxy.url(pg_url), flush_timeout="1s")
    try:
        assert await f.open() is True  # open, its connection pooled; then the network goes silent
        proxy.blackhole()
        f.pending.add([delta()], [])
        t0 = time.monotonic()
        assert await f.flush() is False
        took = time.monotonic() - t0
        assert took < 1.6, took  # one flushTimeout (before: the start row's and the rows' write's)
        assert f.pending.pending_rows == 1 and f.liveness_failures == 1
        # abandoned after store.flushTimeout: counted in store_flush_timeouts_total (was 0)
        assert f.pending.timeouts == 1
        proxy.heal()
        assert await f.flush() is True, f.pending.last_error  # the next flush stores both, once
        assert f.pending.rows_flushed == 1 and f.liveness_failures == 1
    finally:
        await f.close()
        proxy.close()


async def test_a_store_that_stopped_answering_fails_the_start_row_s_flush_at_one_connect(pg_url: str) -> None:
    """An agent whose store opened (an idle node's proof opened it) and then gave its connection back
    (after every flush and proof) meets a black hole at its first rows: the start row's connect timed
    out (psycopg's ConnectionTimeout, an error, not the flush's timeout), was counted as a proof not
    written, and the flush went on to the pairings' write (or, with none, the rows'), which waited
    for a connect of its own, and the proof after it for a third (seen: flush 4.0 s and 2
    connections, proof 2.0 s and 1). An unreachable store at the start row now fails the flush at
    once, and the proof after it opens nothing; so does one the pairings' write, or the rows' write,
    finds unreachable. Those two meet a store that resets its connections (RST: a server restarting)
    rather than the black hole: the connections counted show the same, without a 2 s connect each.
    Every count is stored once when the store is back."""
    target = urlsplit(pg_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    f = flusher(proxy.url(pg_url), flush_timeout="5s")  # a connect (2 s at least) times out first

    async def fails_with_one_connection(pairings: bool) -> None:
        f.pending.add([delta()], [])
        if pairings:
            f.pairs.note("sha256:" + "d" * 64, IMG)
        tried = proxy.accepted
        assert await f.flush(proof_follows=True) is False, f.pending.last_error
        assert ("pairings" in (f.pending.last_error or "")) is pairings, f.pending.last_error
        t1 = time.monotonic()
        assert await f.prove_alive(NODE, now_pair()) is False  # before: its own connection
        assert proxy.accepted - tried == 1 and time.monotonic() - t1 < 0.5, proxy.accepted - tried
        assert f.pending.pending_rows == 1 and f.unreachable

    try:
        assert await f.open() is True and f.store is not None
        f.store.release()  # as after every flush and proof: the next write opens a connection
        proxy.blackhole()
        f.pending.add([delta()], [])
        f.pairs.note("sha256:" + "c" * 64, IMG)
        tried = proxy.accepted
        t0 = time.monotonic()
        assert await f.flush(proof_follows=True) is False
        took = time.monotonic() - t0
        assert proxy.accepted - tried == 1 and took < 3.5, (proxy.accepted - tried, took)
        assert f.pending.pending_rows == 1 and f.pending.failures == 1 and f.liveness_failures == 1
        assert "unreachable" in (f.pending.last_error or ""), f.pending.last_error
        t1 = time.monotonic()
        assert await f.prove_alive(NODE, now_pair()) is False
        assert proxy.accepted - tried == 1 and time.monotonic() - t1 < 0.5
        proxy.heal()
        assert await f.flush(proof_follows=True) is True, f.pending.last_error  # all of it, once
        assert await f.prove_alive(NODE, now_pair()) is True
        assert f.pending.rows_flushed == 1 and f.pairs.unstored() == [] and f.liveness_failures == 2
        proxy.reset()  # the start row is in: the pairings' write meets a store that resets
        await fails_with_one_connection(pairings=True)
        assert f.liveness_failures == 3
        proxy.heal()
        assert await f.flush() is True and f.pairs.unstored() == [], f.pending.last_error
        proxy.reset()  # and now the rows' write
        await fails_with_one_connection(pairings=False)
        assert f.liveness_failures == 4
        proxy.heal()
        assert await f.flush(proof_follows=True) is True and await f.prove_alive(NODE, now_pair())
        assert f.pending.pending_rows == 0 and f.liveness_failures == 4
        assert sum(r["invocation_count"] for r in f.store.read_hot_symbols()) == 3  # each once
    finally:
        await f.close()
        proxy.close()


async def test_a_proof_of_life_hung_on_a_silent_connection_is_cut_and_the_next_one_is_written(
    pg_url: str,
) -> None:
    """A proof whose write hangs (its connection open, the replies never come: a middlebox that keeps
    acknowledging) was left on its thread past ``store.flushTimeout`` with its connection: every later
    proof failed with "the last write has not finished" for as long as that connection lived, for good
    here, and an idle node (no rows' write to cut the store) never cut it. It is now cut as a hung
    rows' write is (``store.abort()``), and the next proof, the store answering again, is written."""
    target = urlsplit(pg_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    f = flusher(proxy.url(pg_url), flush_timeout="1s")
    try:
        f.pending.add([delta()], [])
        assert await f.flush(proof_follows=True) is True  # its connection kept for the proof
        proxy.blackhole()  # that connection goes silent: the proof's write hangs, not its connect
        (hung,) = proxy.silent()
        t0 = time.monotonic()
        assert await f.prove_alive(NODE, now_pair()) is False
        took = time.monotonic() - t0
        assert took < 2.5 and f.liveness_failures == 1, took
        assert f.pending.timeouts == 1  # store_flush_timeouts_total (was 0: only rows' writes counted)
        proxy.heal(keep_silent=True)  # new connections answered; the hung one stays silent
        assert await f.prove_alive(NODE, now_pair()) is True  # before: "the last write has not finished"
        assert f.liveness_failures == 1
        assert hung.wait(1.0)  # cut by the agent (before: open, its write waiting as long as the middlebox)
    finally:
        await f.close()
        proxy.close()


async def test_each_flush_a_start_row_finds_the_store_unreachable_is_logged(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A flush its start row fails (the store out of reach) said nothing of its rows: the proof's
    warning comes at the first failure and every 60th, so an outage met before the agent's first rows
    left the log silent for 59 flushes, where every other failed flush (its open, its pairings, its
    rows) logs the rows kept. Each such flush now logs them too."""
    target = urlsplit(pg_url.replace("postgresql+psycopg", "postgresql"))
    proxy = PgProxy(target.hostname or "127.0.0.1", target.port or 5432)
    f = flusher(proxy.url(pg_url))
    try:
        assert await f.open() is True and f.store is not None
        f.store.release()
        proxy.reset()  # a store restarting: each connect reset at once
        f.pending.add([delta()], [])
        with caplog.at_level(logging.WARNING, logger="stellaops_runtime.agent.flusher"):
            for _ in range(3):
                assert await f.flush(proof_follows=True) is False and f.unreachable
        kept = [r for r in caplog.records if r.name.endswith("flusher") and "1 rows kept" in r.getMessage()]
        assert len(kept) == 3 and "unreachable" in kept[0].getMessage(), caplog.text
        assert f.liveness_failures == 3 and f.pending.failures == 3 and f.pending.pending_rows == 1
    finally:
        await f.close()
        proxy.close()
