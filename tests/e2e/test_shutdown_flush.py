"""Stopping the agent in the middle of a flush loses no count and doubles none.

The bug these tests pin down: on a fresh clone ``make demo`` stored nothing,
because stopping cancelled a periodic flush that was still running (the first
one is slow while attribution warms up) and the counts it had drained went
with the cancelled task. A cancelled store write could also be retried while
its thread still committed, counting twice.

Each test runs the real agent CLI against the real replay server, makes one
flush slow with real means (a SQLite writer lock held by another connection,
or a large SBOM that attribution must parse on its first drain), stops the
agent by SIGTERM or ``--exit-when-idle`` while that flush runs, and compares
every stored count with the stream's ground truth, in both the cumulative
and the per-window tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import signal
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h

pytestmark = pytest.mark.e2e

EVENTS = h.stream_events()
OBJS = h.stream_objects()
EXPECTED_ON_STACK = dict(h.expected_stack_counts(OBJS))
RECEIVED = "stellaops_runtime_events_received_total"
IDLE = 6  # --exit-when-idle of the idle variant


def _counts(db: Path, table: str, evidence: str) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        res = con.execute(
            f"SELECT image_digest, module, function_name, SUM(invocation_count) FROM {table} "
            "WHERE evidence_kind = ? GROUP BY image_digest, module, function_name",
            (evidence,),
        )
        return {f"{d}|{m}|{f}": n for d, m, f, n in res}
    finally:
        con.close()


def assert_exact(db: Path, out: str = "") -> None:
    """Cumulative and per-window rows both equal the ground truth: nothing lost, nothing doubled.
    ``out``: the agent's output, shown when they do not."""
    for table in ("hot_symbols", "hot_symbol_windows"):
        assert _counts(db, table, "invoked") == h.EXPECTED["uprobe_counts"], (table, out)
        assert _counts(db, table, "on_stack") == EXPECTED_ON_STACK, (table, out)
    con = sqlite3.connect(db)
    try:
        (events,) = con.execute("SELECT SUM(event_count) FROM observation_windows").fetchone()
    finally:
        con.close()
    assert events == len(EVENTS), out


@contextlib.contextmanager
def writer_lock(db: Path) -> Iterator[None]:
    """Hold SQLite's exclusive lock from another connection: every write of the agent waits."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        con.execute("ROLLBACK")
        con.close()


def _all_received(port: int) -> bool:
    return h.metric(h.scrape(port), RECEIVED, source="tetragon-grpc") == len(EVENTS)


def _ready(port: int) -> bool:
    """The agent's /readyz says its store is open (503 while the source is not connected yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(json.load(r).get("store_open"))
    except urllib.error.HTTPError as e:
        return bool(json.load(e).get("store_open"))
    except OSError:
        return False


async def _run_with_locked_store(
    tmp_path: Path, at_head: Callable[[Path], str], *, stop: str
) -> tuple[int, str, Path]:
    """Store open, then locked; all events in; stop while the flush waits on the lock."""
    db = tmp_path / "hs.db"
    at_head(db)  # the store at head (tests/conftest.py): what is tested is the stop, not the migrations
    addr = f"127.0.0.1:{h.free_port()}"  # nothing listens yet: the agent retries until the server starts
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": addr},
        hotSymbols={"flushIntervalSeconds": 0.3},
        store={"url": f"sqlite:///{db}"},
    )
    # The idle time also bounds how long the source may stay unreachable at the start (the server
    # starts once the store is open and locked): 2.5 s failed when a loaded machine opened it slowly.
    extra = ("--exit-when-idle", str(IDLE)) if stop == "idle" else ()
    proc = h.start_agent(cfg, *extra)
    server = ReplayServer(EVENTS)
    try:
        await h.wait_for(lambda: _ready(port), what="store open")
        with writer_lock(db):
            await server.start(addr)
            await h.wait_for(lambda: _all_received(port), what="all events received")
            await asyncio.sleep(1.0)  # a periodic flush is now waiting on the lock
            if stop == "sigterm":
                proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(1.5)  # the stop is requested while the flush still waits
            else:
                # Quiet for the idle time while the flush waits: --exit-when-idle stops only once that
                # flush has stored everything (idle means stored), after the lock is released.
                await asyncio.sleep(IDLE + 0.3)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
        await server.stop()
    return code, out, db


@pytest.mark.parametrize("stop", ["sigterm", "idle"])
async def test_stop_during_a_slow_store_write_keeps_every_count_exactly_once(
    tmp_path, sqlite_at_head, stop
) -> None:
    code, out, db = await _run_with_locked_store(tmp_path, sqlite_at_head, stop=stop)
    assert code == 0, out
    said = "stop requested (SIGTERM)" if stop == "sigterm" else f"stop requested (no event for {IDLE:g}s)"
    assert said in out, out
    assert_exact(db)


def _big_sbom(path: Path, components: int) -> None:
    """A CycloneDX SBOM large enough that attribution takes seconds to parse it (its first drain)."""
    comps = [
        {
            "type": "library",
            "name": f"p{i}",
            "version": "1.0",
            "purl": f"pkg:pypi/p{i}@1.0",
            "bom-ref": f"r{i}",
            "evidence": {"occurrences": [{"location": f"/usr/lib/python3/dist-packages/p{i}/__init__.py"}]},
            "hashes": [{"alg": "SHA-256", "content": f"{i:064x}"}],
        }
        for i in range(components)
    ]
    path.write_text(
        json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": comps})
    )


async def _sigterm_during_a_slow_first_drain(
    tmp_path: Path, at_head: Callable[[Path], str], grace: float
) -> tuple[int, str, Path]:
    """SIGTERM while the first drain is still attributing (cold caches); (exit code, output, store)."""
    sboms = tmp_path / "sboms"
    sboms.mkdir()
    _big_sbom(sboms / "big.json", 12_000)
    for image in h.EXPECTED["images"]:
        (sboms / f"{image['digest']}.json").symlink_to(sboms / "big.json")
    server = ReplayServer(EVENTS)
    addr = await server.start("127.0.0.1:0")
    db = tmp_path / "hs.db"
    at_head(db)
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": addr},
        # The first drain comes after every event arrived (well under a second on a quiet machine,
        # seconds on a loaded one). Begun before, it would hold /metrics at a stale count (rendered
        # on the pipeline thread) for the whole slow drain, and the wait below saw too few events.
        hotSymbols={"flushIntervalSeconds": 6},
        attribution={"sbomDir": str(sboms), "hostRoot": "/"},
        store={"url": f"sqlite:///{db}"},
        shutdown={"graceSeconds": grace},
    )
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(lambda: _all_received(port), what="all events received")
        # /metrics is rendered on the pipeline thread: while the first drain attributes (the big
        # SBOMs, cold) a scrape gets the last rendering, and says how stale it is. Stop then.
        await h.wait_for(
            lambda: h.metric(h.scrape(port), "stellaops_runtime_metrics_stale_seconds") > 0,
            what="the first drain to hold the pipeline",
        )
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, proc, grace + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
        await server.stop()
    return code, out, db


QUEUE_CUT = re.compile(r"shutdown deadline: (\d+) queued events were not processed")


def assert_cut_is_a_gap(db: Path, dropped: int) -> None:
    """The consumer's share of the grace ran out behind the drain: the ``dropped`` events still
    queued were never counted (docs/operations.md, SIGTERM). Each stored count is at most the
    truth (none doubled), the stored events and the dropped ones add up to the stream, and every
    node the agent saw has a node-wide gap row carrying the dropped count, so no window claims
    the node was watched while they went uncounted."""
    assert 0 < dropped <= len(EVENTS)
    for table in ("hot_symbols", "hot_symbol_windows"):
        for evidence, truth in (("invoked", h.EXPECTED["uprobe_counts"]), ("on_stack", EXPECTED_ON_STACK)):
            over = {k: n for k, n in _counts(db, table, evidence).items() if n > truth.get(k, 0)}
            assert not over, (table, evidence, over)
    con = sqlite3.connect(db)
    try:
        (events,) = con.execute("SELECT COALESCE(SUM(event_count), 0) FROM observation_windows").fetchone()
        nodes = {n for (n,) in con.execute("SELECT DISTINCT node_name FROM observation_windows")}
        gaps = dict(
            con.execute(
                "SELECT node_name, MAX(dropped_events) FROM observation_windows"
                " WHERE image_digest = '' AND gap_start IS NOT NULL GROUP BY node_name"
            ).fetchall()
        )
    finally:
        con.close()
    assert events + dropped == len(EVENTS)
    assert nodes and gaps == dict.fromkeys(nodes, dropped)


async def test_sigterm_during_a_slow_first_drain_keeps_every_count(tmp_path, sqlite_at_head) -> None:
    """The demo's failure: stop while the first drain is still attributing, with time to finish it
    (a grace long enough for a loaded machine: the drain takes ~5 s on a quiet one).

    On a loaded machine the consumer can still be behind when that drain starts (events received,
    not yet processed), and the drain can outlast the consumer's half of the grace (a 64 s drain
    was seen at load 12): the queued events are then dropped and stored as a gap, exit 0, by
    design (tests/integration/test_shutdown_queue_gap.py). The count of that run is honest, not
    exact, and asserted as such."""
    code, out, db = await _sigterm_during_a_slow_first_drain(tmp_path, sqlite_at_head, grace=120)
    assert code == 0, out
    if (cut := QUEUE_CUT.search(out)) is not None:
        assert_cut_is_a_gap(db, int(cut[1]))
    else:
        assert_exact(db, out)


async def test_a_drain_still_running_at_the_deadline_is_reported_lost_never_exit_0(
    tmp_path, sqlite_at_head
) -> None:
    """The grace ends while the first drain still holds every count: neither the store nor the
    spool can have them, so the agent says so and exits 2 (it once exited 0 with an empty store)."""
    code, out, db = await _sigterm_during_a_slow_first_drain(tmp_path, sqlite_at_head, grace=1)
    assert code == 2, out
    assert "drain(s) of the hot-symbol aggregator still running" in out, out
    assert "neither stored nor spooled" in out
    assert _counts(db, "hot_symbols", "invoked") != h.EXPECTED["uprobe_counts"]  # the case it covers


async def test_sigterm_at_random_points_never_loses_or_doubles_a_count(tmp_path, sqlite_at_head) -> None:
    """Many short runs, SIGTERM at a random moment after the stream was received."""
    rng = random.Random(20261202)
    server = ReplayServer(EVENTS)
    addr = await server.start("127.0.0.1:0")
    try:
        for run in range(6):
            work = tmp_path / f"run{run}"
            work.mkdir()
            db = work / "hs.db"
            sqlite_at_head(db)
            cfg, port = h.write_config(
                work,
                tetragon={"address": addr},
                hotSymbols={"flushIntervalSeconds": 0.05},
                store={"url": f"sqlite:///{db}"},
            )
            proc = h.start_agent(cfg)
            try:
                await h.wait_for(lambda port=port: _all_received(port), what="all events received")
                await asyncio.sleep(rng.uniform(0.0, 0.4))
                proc.send_signal(signal.SIGTERM)
                code, out = await asyncio.to_thread(h.finish, proc, 60)
            finally:
                if proc.poll() is None:
                    proc.kill()
            assert code == 0, out
            assert_exact(db)
    finally:
        await server.stop()
