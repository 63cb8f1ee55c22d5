"""A failing store under the real agent: lost acknowledgements, black holes, SIGTERM, SIGKILL.

The agent CLI runs as a subprocess against the real PostgreSQL test cluster,
through a TCP proxy of our own on loopback (tests/pgproxy.py) that drops the
server's reply to a COMMIT or black-holes every connection. Ground truth is
the synthetic stream's expected counts.

What broke before (issue 10): a lost COMMIT acknowledgement counted 903
calls twice; a black-holed connection hung the agent for good (no failure
counted, /readyz 200, SIGTERM ignored for 45 s, 2,748 events lost).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import os
import random
import signal
import string
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.spool import write_spool
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

with gzip.open(h.STREAM) as _f:
    GOOD = [ln for ln in _f.read().splitlines() if ln.strip()]
OBJS = h.stream_objects()
IMAGES = {i["digest"] for i in h.EXPECTED["images"]}
T_SPOOL = 1_763_971_200 * 1_000_000_000  # 2025-11-24, a window of an earlier agent
EVERY_KIND = ("invoked", "on_stack", "executed", "loaded", "kernel_call")


def stored(url: str, *, kinds: tuple[str, ...] = ("invoked", "on_stack")) -> dict[str, int]:
    """Stored counts of the stream's images, by evidence|image|module|function (``kinds`` only)."""
    eng = sa.create_engine(url)
    with eng.connect() as c:
        rows = c.execute(
            sa.text("SELECT image_digest, module, function_name, evidence_kind, invocation_count "
                    "FROM signals.hot_symbols")
        ).all()  # fmt: skip
    eng.dispose()
    return {f"{r[3]}|{r[0]}|{r[1]}|{r[2]}": r[4] for r in rows if r[0] in IMAGES and r[3] in kinds}


def expected() -> dict[str, int]:
    out = {f"invoked|{k}": v for k, v in h.EXPECTED["uprobe_counts"].items()}
    out.update({f"on_stack|{k}": v for k, v in h.expected_stack_counts(OBJS).items()})
    return out


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return 0, {}


# shutdown.graceSeconds: an agent stopped while the store is black-holed retries its last flush
# until this deadline (then spools, or reports the rows lost), so each such stop lasts it; by the
# agent's own clock the stop ends within it (docs/operations.md), the process's exit within it plus
# the same slack as before (it was 6 s).
GRACE = 3


def config(tmp: Path, url: str, export: Path, **store: Any) -> tuple[Path, int]:
    return h.write_config(
        tmp,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": url, "flushTimeout": "2s", "statementTimeout": "2s", "connectTimeout": "2s",
               "idleInTransactionTimeout": "3s", "tcpKeepalive": "2s", **store},
        shutdown={"graceSeconds": GRACE},
    )  # fmt: skip


def processed(port: int) -> float:
    return h.metric_sum(h.scrape(port), "stellaops_runtime_event_processing_latency_seconds_count")


async def test_a_lost_commit_acknowledgement_never_counts_twice(tmp_path, pg_url, proxy) -> None:
    proxy.drop_commit_acks = 1
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"\n".join(GOOD) + b"\n")
    cfg, _port = config(tmp_path, proxy.url(pg_url), export)
    # Nothing is scraped: the idle exit itself waits for the file read to its end and a flush after
    # that storing everything, or stops on a failed one and the last flush retries (agent/idle_exit.py).
    proc = h.start_agent(cfg, "--exit-when-idle", "1")
    code, out = await asyncio.to_thread(h.finish, proc, 120)
    assert code == 0, out
    assert proxy.commit_acks_dropped == 1
    assert "already stored" in out, out  # the retry found its batch in the ledger
    assert stored(pg_url) == expected()


async def test_a_black_holed_store_is_noticed_abandoned_and_recovered(tmp_path, pg_url, proxy) -> None:
    export = tmp_path / "tetragon.log"
    half = len(GOOD) // 2
    export.write_bytes(b"\n".join(GOOD[:half]) + b"\n")
    # A connection opened into the black hole must be abandoned by the flush deadline (2 s),
    # not end at libpq's connect timeout first: with both at 2 s either could win each attempt,
    # and a run of connect failures (with their backoff) held the abandonment past the wait.
    cfg, port = config(tmp_path, proxy.url(pg_url), export, connectTimeout="5s")
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(lambda: processed(port) == half, what="first half processed", timeout=60)
        # Stored: not only none pending (counts still in memory are not pending yet) but flushed. A
        # first flush met in the black hole fails at the agent's start row (agent/proof_of_life.py),
        # before any rows' write could be abandoned and counted.
        await h.wait_for(
            lambda: (
                h.metric(m := h.scrape(port), "stellaops_runtime_hot_symbols_pending") == 0
                and h.metric(m, "stellaops_runtime_hot_symbols_in_memory") == 0
                and h.metric(m, "stellaops_runtime_hot_symbols_flushed_total") > 0
                and readyz(port)[0] == 200
            ),
            what="first half stored",
        )
        proxy.blackhole()
        with export.open("ab") as f:
            f.write(b"\n".join(GOOD[half:]) + b"\n")
        t0 = time.monotonic()
        await h.wait_for(lambda: readyz(port)[0] == 503, what="/readyz reports the store", timeout=20)
        _status, body = readyz(port)
        assert body["store_open"] and (body["store_last_error"] or body["store_write_overdue_seconds"])
        await h.wait_for(
            lambda: h.metric(h.scrape(port), "stellaops_runtime_store_flush_timeouts_total") >= 1,
            what="a hung write abandoned",
            timeout=20,
        )
        await h.wait_for(
            lambda: h.metric(h.scrape(port), "stellaops_runtime_store_flush_failures_total") >= 1,
            what="the abandoned write counted as a failure",
            timeout=10,
        )
        assert time.monotonic() - t0 < 25
        proxy.heal()
        await h.wait_for(
            lambda: (
                h.metric(h.scrape(port), "stellaops_runtime_hot_symbols_pending") == 0
                and readyz(port)[0] == 200
            ),
            what="recovered after the black hole",
            timeout=60,
        )
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, proc, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    assert "Traceback" not in out
    assert stored(pg_url) == expected()


async def test_sigterm_during_a_black_hole_ends_in_time_and_the_spool_loses_nothing(
    tmp_path, pg_url, proxy
) -> None:
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"")
    spool = tmp_path / "spool" / "hot.spool"
    spool.parent.mkdir()
    cfg, port = config(tmp_path, proxy.url(pg_url), export, spoolPath=str(spool))
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(lambda: readyz(port)[1].get("store_open") is True, what="store open")
        proxy.blackhole()
        export.write_bytes(b"\n".join(GOOD) + b"\n")
        await h.wait_for(lambda: processed(port) == len(GOOD), what="every event processed", timeout=60)
        await asyncio.sleep(1.0)  # a flush is now hung in the black hole
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, proc, 30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    # Within the grace by the agent's own clock, as docs/operations.md promises (the pod's
    # terminationGracePeriodSeconds kills it past that, maybe in its spool write): the flush hung in
    # the black hole aborted, the spool written and the store closed before the deadline. The process
    # is gone soon after it (a thread left in the black hole must not hold its exit), with room for
    # a loaded machine's signal and exit.
    took = h.log_seconds(out, "stop requested (SIGTERM)", "agent stopped:")
    assert took < GRACE, f"shutdown took {took:.2f}s with graceSeconds {GRACE}:\n{out}"
    assert elapsed < GRACE + 20, f"the agent exited {elapsed:.1f}s after SIGTERM:\n{out}"
    assert "spooled them to" in out, out
    assert spool.exists() and oct(spool.stat().st_mode & 0o777) == "0o600"

    # The next agent on the node, with the store back: it replays the spool first.
    proxy.heal()
    export2 = tmp_path / "empty.log"
    export2.write_bytes(b"")
    cfg2 = tmp_path / "second"
    cfg2.mkdir()
    # The store is healthy again: the outage's 2 s timeouts could cut this agent's write of the
    # spool's ~18,000 rows on a loaded machine, and the idle exit would then spool them again.
    healthy = {"flushTimeout": "30s", "statementTimeout": "30s"}
    cfg_path, _port2 = config(cfg2, proxy.url(pg_url), export2, spoolPath=str(spool), **healthy)
    # An empty file and the spool's rows pending from the start: the idle exit comes only after a
    # flush stored them all (agent/idle_exit.py), so 1 s of quiet is enough.
    proc2 = h.start_agent(cfg_path, "--exit-when-idle", "1")
    code2, out2 = await asyncio.to_thread(h.finish, proc2, 60)
    assert code2 == 0, out2
    assert "loaded" in out2 and "spool file" in out2 and "removed" in out2, out2
    assert not spool.exists()
    assert stored(pg_url) == expected()


async def test_a_corrupt_spool_file_is_moved_aside_and_counted(tmp_path, pg_url) -> None:
    spool = tmp_path / "hot.spool"
    spool.write_bytes(b'{"format": "stellaops-runtime-spool", "version": 1}\n{"sha256": "00"}\n')
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"\n".join(GOOD) + b"\n")
    # A healthy store: not the outage tests' tight 2 s timeouts (see the test below).
    cfg, port = config(
        tmp_path, pg_url, export, spoolPath=str(spool), flushTimeout="30s", statementTimeout="30s"
    )
    proc = h.start_agent(cfg, "--exit-when-idle", "3")
    await h.wait_for(lambda: processed(port) == len(GOOD), what="every event processed", timeout=60)
    m = h.scrape(port)
    code, out = await asyncio.to_thread(h.finish, proc, 60)
    assert code == 0, out
    assert h.metric(m, "stellaops_runtime_store_spool_rows_total", event="corrupt") == 1
    assert "does not match" in out and "moved aside" in out
    assert not spool.exists() and len(list(tmp_path.glob("hot.spool.corrupt-*"))) == 1
    assert stored(pg_url) == expected()


async def test_a_row_postgres_refuses_is_quarantined_and_every_good_count_kept(tmp_path, pg_url) -> None:
    rng = random.Random(11)
    huge = "".join(rng.choice(string.ascii_letters) for _ in range(12_000))  # too big for the key index
    poison = {
        "process_kprobe": {
            "process": {"binary": "/bin/huge", "pid": 8},
            "function_name": "__x64_sys_openat",
            "user_stack_trace": [{"module": "/lib/huge.so", "symbol": huge, "offset": "4"}],
        },
        "node_name": "poison-node",
        "time": "2026-11-24T09:00:30Z",
    }
    lines = [*GOOD[:1000], json.dumps(poison).encode(), *GOOD[1000:]]
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"\n".join(lines) + b"\n")
    # The store is healthy here: the tight 2 s timeouts of the outage tests would abandon a
    # slow bisection on a loaded machine and retry it until the agent gives up.
    cfg, port = config(tmp_path, pg_url, export, flushTimeout="30s", statementTimeout="30s")
    # No --exit-when-idle: the agent quarantined the row in its last flush and went idle 0.1 s
    # later (seen under load: the test's scrapes then found no agent and waited 90 s in vain).
    # It runs until the test has seen every event processed, the row quarantined and every other
    # row stored (one scrape), then SIGTERM stops it.
    proc = h.start_agent(cfg)

    def quarantined_and_stored() -> bool:
        m = h.scrape(port)
        return (
            h.metric_sum(m, "stellaops_runtime_event_processing_latency_seconds_count") == len(lines)
            and h.metric(m, "stellaops_runtime_store_rows_quarantined_total") >= 1
            and h.metric(m, "stellaops_runtime_hot_symbols_in_memory") == 0
            and h.metric(m, "stellaops_runtime_hot_symbols_pending") == 0
        )

    try:
        await h.wait_for(quarantined_and_stored, what="the row quarantined, the rest stored", timeout=90)
    except AssertionError as e:  # say what the agent did
        proc.kill()
        _, out = await asyncio.to_thread(h.finish, proc, 30)
        raise AssertionError(f"{e}\n{out[-6000:]}") from None
    proc.send_signal(signal.SIGTERM)
    code, out = await asyncio.to_thread(h.finish, proc, 60)
    assert code == 0, out
    assert "quarantined" in out
    assert stored(pg_url) == expected()
    eng = sa.create_engine(pg_url)
    with eng.connect() as c:
        q = c.execute(sa.text("SELECT table_name, row_json, error FROM signals.quarantined_rows")).all()
    eng.dispose()
    assert q and all(json.loads(r[1])["function_name"] == huge for r in q if r[0] == "hot_symbols")


async def test_a_wrongly_typed_spool_row_is_quarantined_and_blocks_no_later_flush(tmp_path, pg_url) -> None:
    # A spool left by an earlier agent (another version, say) with one row whose window start is
    # text: before, converting it raised a TypeError (no database error), so the spool's batch was
    # retried for ever and every flush after it waited behind it: no count of the stream was stored.
    img = "sha256:" + "5" * 64
    key = HotSymbolKey(img, "/lib/libz.so.1", "spooled_fn", EvidenceKind.INVOKED)
    good = HotSymbolDelta(key=key, window_start_ns=T_SPOOL, invocation_count=5, first_seen_ns=T_SPOOL,
                          last_seen_ns=T_SPOOL + 1, node_name="node-0")  # fmt: skip
    bad = dataclasses.replace(good, key=dataclasses.replace(key, function_name="typed_wrong"))
    bad.window_start_ns = "2026-11-24"  # type: ignore[assignment]
    spool = tmp_path / "hot.spool"
    write_spool(spool, [Batch("node-0/earlier", 4, [good, bad])])
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"\n".join(GOOD) + b"\n")
    cfg, port = config(tmp_path, pg_url, export, spoolPath=str(spool), flushTimeout="30s",
                       statementTimeout="30s")  # fmt: skip
    proc = h.start_agent(cfg, "--exit-when-idle", "3")
    await h.wait_for(lambda: processed(port) == len(GOOD), what="every event processed", timeout=60)
    code, out = await asyncio.to_thread(h.finish, proc, 90)
    assert code == 0, out
    assert "window_start_ns is not an integer" in out, out
    assert stored(pg_url) == expected()
    eng = sa.create_engine(pg_url)
    with eng.connect() as c:
        spooled = c.execute(
            sa.text("SELECT function_name, invocation_count FROM signals.hot_symbols WHERE image_digest=:i"),
            {"i": img},
        ).all()
        q = c.execute(sa.text("SELECT row_json, error FROM signals.quarantined_rows")).all()
    eng.dispose()
    assert [tuple(r) for r in spooled] == [("spooled_fn", 5)]
    assert [json.loads(r[0])["function_name"] for r in q] == ["typed_wrong"]
    assert not spool.exists()


async def test_sigkill_loses_at_most_the_unflushed_counts_and_never_doubles(tmp_path, pg_url) -> None:
    export = tmp_path / "tetragon.log"
    half = len(GOOD) // 2
    export.write_bytes(b"\n".join(GOOD[:half]) + b"\n")
    cfg, port = config(tmp_path, pg_url, export)
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(lambda: processed(port) == half, what="first half processed", timeout=60)
        await h.wait_for(
            lambda: (
                h.metric(h.scrape(port), "stellaops_runtime_hot_symbols_flushed_total") > 0
                and h.metric(h.scrape(port), "stellaops_runtime_hot_symbols_pending") == 0
                and h.metric(h.scrape(port), "stellaops_runtime_hot_symbols_in_memory") == 0
            ),
            what="first half stored",
        )
        first = stored(pg_url, kinds=EVERY_KIND)
        with export.open("ab") as f:
            f.write(b"\n".join(GOOD[half:]) + b"\n")
        await asyncio.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    after_all, after, want = stored(pg_url, kinds=EVERY_KIND), stored(pg_url), expected()
    assert first and all(after_all.get(k, 0) >= v for k, v in first.items())  # nothing stored was lost
    assert all(v <= want[k] for k, v in after.items())  # and nothing counted twice


async def test_without_a_spool_path_unstored_rows_are_reported_lost_and_exit_2(
    tmp_path, pg_url, proxy
) -> None:
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"")
    cfg, port = config(tmp_path, proxy.url(pg_url), export)
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(lambda: readyz(port)[1].get("store_open") is True, what="store open")
        proxy.blackhole()
        export.write_bytes(b"\n".join(GOOD[:500]) + b"\n")
        await h.wait_for(lambda: processed(port) == 500, what="events processed", timeout=60)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, proc, 30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 2, out
    assert h.log_seconds(out, "stop requested (SIGTERM)", "agent stopped:") < GRACE + 3, out  # as above
    assert elapsed < GRACE + 20, out
    assert "could not store" in out and "set store.spoolPath" in out, out


async def test_a_store_black_holed_at_start_never_delays_event_intake(tmp_path, pg_url, proxy) -> None:
    proxy.blackhole()
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"\n".join(GOOD) + b"\n")
    cfg, port = config(tmp_path, proxy.url(pg_url), export)
    proc = h.start_agent(cfg)
    try:
        # Every event is taken in and counted while the store cannot even be opened.
        await h.wait_for(lambda: processed(port) == len(GOOD), what="events processed", timeout=30)
        status, body = readyz(port)
        assert status == 503 and body["store_open"] is False
        proxy.heal()
        await h.wait_for(
            lambda: (
                readyz(port)[0] == 200
                and h.metric(h.scrape(port), "stellaops_runtime_hot_symbols_pending") == 0
                and h.metric(h.scrape(port), "stellaops_runtime_hot_symbols_flushed_total") > 0
            ),
            what="stored once the store answers",
            timeout=60,
        )
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, proc, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    assert stored(pg_url) == expected()
