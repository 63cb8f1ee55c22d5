"""A store that hangs while the agent signs its last witnesses must not keep the agent from exiting.

Every count is stored; the claim is due a witness (only the shutdown signs here); then the route
to PostgreSQL goes dead (a black hole: no RST, TCP keeps acknowledging, so the server's statement
timeout never fires) and the agent gets SIGTERM. Shutdown tries to sign the due witness within
``shutdown.graceSeconds``; the signer cannot reach the store. The agent must still exit within
the grace period (plus slack), exit 0 since every count was stored, and say the witness was not
made, instead of waiting for the signer.
"""

from __future__ import annotations

import asyncio
import gzip
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pgproxy import PgProxy

from stellaops_runtime.store.engine import create_store_engine
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

IMAGE = h.EXPECTED["images"][0]["digest"]  # billing-70, whose zlib crc32 the stream calls
GRACE = 4  # each stop lasts until this deadline (the witness is never made), so it is kept short


def all_stored(port: int) -> bool:
    """Every event processed and every row stored: nothing pending and no row flushed for a while
    (the aggregator is drained every flush interval, 0.5 s): three samples 0.6 s apart, so at
    least two flushes ran between the first and the last and stored nothing new."""
    seen = []
    for i in range(3):
        if i:
            time.sleep(0.6)
        m = h.scrape(port)
        if h.metric_sum(m, "stellaops_runtime_event_processing_latency_seconds_count") < 3144:
            return False
        seen.append(
            (h.metric(m, "tetragon_hotsymbols_flushed"), h.metric(m, "stellaops_runtime_hot_symbols_pending"))
        )
    return seen[0][0] > 0 and all(s == (seen[0][0], 0) for s in seen)


def start(tmp_path: Path, url: str, **store: Any) -> tuple[Any, int]:
    """The agent on the whole stream, one claim due, witnesses signed only at shutdown."""
    key = tmp_path / "k"
    assert (
        h.cli("witness", "keygen", "--private", str(key), "--public", str(tmp_path / "k.pub")).returncode == 0
    )
    claims = tmp_path / "claims.yaml"
    claims.write_text(f"- {{image: '{IMAGE}', purl: 'pkg:deb/debian/zlib1g', function: crc32}}\n")
    export = tmp_path / "tetragon.log"
    with gzip.open(h.STREAM) as f:
        export.write_bytes(f.read())
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": url, "flushTimeout": "2s", "statementTimeout": "2s", "connectTimeout": "2s",
               "tcpKeepalive": "2s", **store},
        symbols={"hostRoot": "/"}, attribution={"hostRoot": "/"},
        witness={"enabled": True, "claimsFile": str(claims), "keyFile": str(key), "intervalSeconds": 3600},
        shutdown={"graceSeconds": GRACE},
    )  # fmt: skip
    return h.start_agent(cfg), port


async def stop(proc: Any) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code, out = await asyncio.to_thread(h.finish, proc, GRACE + 30)
    return code, out, time.monotonic() - t0


async def test_a_store_black_holed_before_the_last_witness_never_holds_shutdown(
    tmp_path: Path, pg_url: str, proxy: PgProxy
) -> None:
    proc, port = start(tmp_path, proxy.url(pg_url))
    try:
        await h.wait_for(lambda: all_stored(port), what="the stream processed and stored", timeout=90)
        proxy.blackhole()
        code, out, took = await stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert took < GRACE + 20, (took, out)  # generous: the point is it ends, not how fast
    assert code == 0, out  # every count was stored before: a witness not made loses none
    assert "not made" in out or "claims left without a new witness" in out, out
    assert "0 witnesses" in out, out


async def test_a_store_black_holed_while_the_last_witness_reads_never_holds_shutdown(
    tmp_path: Path, pg_url: str, proxy: PgProxy
) -> None:
    # the signer's read waits on a lock (so it is in flight), then the route goes dead: its reply
    # never comes, and nothing on the client side ends the wait
    proc, port = start(tmp_path, proxy.url(pg_url), statementTimeout="60s")
    engine = create_store_engine(pg_url)
    try:
        await h.wait_for(lambda: all_stored(port), what="the stream processed and stored", timeout=90)
        with engine.connect() as lock:
            lock.execute(sa.text("LOCK TABLE signals.hot_symbols IN ACCESS EXCLUSIVE MODE"))
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await h.wait_for(lambda: waiting_on_a_lock(engine), what="the signer's read waits", timeout=GRACE)
            proxy.blackhole()
            lock.rollback()
        code, out = await asyncio.to_thread(h.finish, proc, GRACE + 30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.dispose()
    assert took < GRACE + 20, (took, out)
    assert code == 0, out
    assert "1 claims left without a new witness" in out, out  # the claim in flight stays due


def waiting_on_a_lock(engine: Any) -> bool:
    with engine.connect() as c:
        return bool(c.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND query ILIKE 'select%hot_symbols%'"  # a read, not a write
        )).scalar())  # fmt: skip
