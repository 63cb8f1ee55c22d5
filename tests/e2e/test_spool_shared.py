"""Two agents on one spool file: neither may silently erase the other's counts.

Probe (s29/h3): the spool file is a hostPath shared by every agent pod of a
node. Two agents may meet there (a rolling update with ``maxSurge``, a manual
run next to the DaemonSet's pod, a pod restarted while its predecessor is
still in its grace period). Before, the agent that shut down last replaced
the file with its own rows, and an agent that had replayed an older file
removed whatever file was at the path by then: the other agent's spooled
counts were gone, with exit 0 and no count anywhere. Now a spool file the
agent did not load is merged into the one it writes (its batches keep their
agent id and sequence, so the flush ledger still stores each once), and only
the very file the agent loaded is removed.

Since s32 a second agent of a node waits for the first to exit before it
reads anything (agent/node_presence.py: both would count the node's events),
so two agents take turns on the file: the second loads what the first
spooled. The newer file an agent must not remove is therefore put in place
as another writer would (an atomic rename), from a spool file a third agent
wrote at another path.

The real agent CLI runs as subprocesses against the real PostgreSQL test
cluster, behind a black-holing proxy (tests/pgproxy.py) while the store is
"down"; ground truth is the synthetic stream's expected counts.
"""

from __future__ import annotations

import asyncio
import gzip
import signal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.store.spool import read_spool
from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

with gzip.open(h.STREAM) as _f:
    GOOD = [ln for ln in _f.read().splitlines() if ln.strip()]
OBJS = h.stream_objects()
IMAGES = {i["digest"] for i in h.EXPECTED["images"]}
SPOOL_ROWS = "stellaops_runtime_store_spool_rows_total"


def stored(url: str) -> dict[str, int]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        rows = c.execute(
            sa.text("SELECT image_digest, module, function_name, evidence_kind, invocation_count "
                    "FROM signals.hot_symbols")
        ).all()  # fmt: skip
    eng.dispose()
    return {
        f"{r[3]}|{r[0]}|{r[1]}|{r[2]}": r[4]
        for r in rows
        if r[0] in IMAGES and r[3] in ("invoked", "on_stack")
    }


def expected() -> dict[str, int]:
    out = {f"invoked|{k}": v for k, v in h.EXPECTED["uprobe_counts"].items()}
    out.update({f"on_stack|{k}": v for k, v in h.expected_stack_counts(OBJS).items()})
    return out


def config(
    tmp: Path, url: str, export: Path, spool: Path, *, from_start: bool = True, down: bool = True
) -> tuple[Path, int]:
    """``from_start`` False for an agent whose file is empty when it opens it (its lines come once it
    follows the file): it reads the same lines, without first waiting 10 s for a black-holed store
    to say whether the node is new (sources/export_restart.py, ``HISTORY_WAIT_SECONDS``).

    ``down`` (an agent that meets the black hole): 2 s timeouts, so its writes give up and spool
    soon. The agent that replays into the healed store keeps the defaults: within 2 s a loaded
    machine did not store its ~18,000 rows, the idle exit then stopped it and it spooled them
    again (exit 2, the test failed while the agent did what it must)."""
    tmp.mkdir(exist_ok=True)
    fast = {"flushTimeout": "2s", "statementTimeout": "2s", "connectTimeout": "2s",
            "idleInTransactionTimeout": "3s", "tcpKeepalive": "2s"}  # fmt: skip
    return h.write_config(
        tmp,
        tetragon={"exportFile": str(export), "exportFromStart": from_start},
        store={"url": url, "spoolPath": str(spool), **(fast if down else {})},
        # An agent stopped while the store is black-holed retries its last flush until the deadline,
        # then spools (reserve min(2, grace/4) kept for the spool write): 3 s take the same steps as 5.
        shutdown={"graceSeconds": 3},
    )  # fmt: skip


def processed(port: int) -> float:
    return h.metric_sum(h.scrape(port), "stellaops_runtime_event_processing_latency_seconds_count")


async def _run_until_processed(
    cfg: Path, port: int, n: int, export: Path | None = None, lines: list[bytes] | None = None
) -> Any:
    """Start an agent and wait for ``n`` events processed. ``lines`` are written to ``export`` once
    it follows the file: with no watch record and its store down, nothing says the node is new,
    so the agent does not replay what the file held before (docs/operations.md, "Gaps")."""
    proc = h.start_agent(cfg)
    try:
        if export is not None and lines is not None:
            await h.wait_for(lambda: x.connected(port), what="the agent follows the file", timeout=60)
            await asyncio.to_thread(export.write_bytes, b"\n".join(lines) + b"\n")
        await h.wait_for(lambda: processed(port) == n, what=f"{n} events processed", timeout=60)
    except BaseException:
        proc.kill()
        raise
    return proc


async def _stop(proc: Any) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(h.finish, proc, 30)


async def test_two_agents_spooling_to_one_file_keep_both_agents_counts(tmp_path, pg_url, proxy) -> None:
    proxy.blackhole()  # the store is down for both agents
    spool = tmp_path / "spool" / "hot.spool"
    spool.parent.mkdir()
    half = len(GOOD) // 2
    parts = (GOOD[:half], GOOD[half:])
    cfgs = []
    exports = [tmp_path / f"tetragon-{i}.log" for i in range(2)]
    exports[0].write_bytes(b"")  # the first agent's lines come once it follows the file
    exports[1].write_bytes(b"\n".join(parts[1]) + b"\n")  # read whole: the first's record says so
    for i, export in enumerate(exports):
        cfgs.append(config(tmp_path / f"agent-{i}", proxy.url(pg_url), export, spool, from_start=i == 1))
    first = await _run_until_processed(*cfgs[0], half, exports[0], parts[0])
    second = h.start_agent(cfgs[1][0])  # waits for the first: the node's agent lock
    try:
        code, out = await _stop(first)  # the first spools, then the second loads it and adds its own
        assert code == 0, out
        await h.wait_for(
            lambda: processed(cfgs[1][1]) == len(GOOD) - half, what="the second agent's events", timeout=60
        )
        code, out = await _stop(second)
    finally:
        if second.poll() is None:
            second.kill()
    assert code == 0, out
    batches = read_spool(spool) or []
    assert len({b.agent_id for b in batches}) == 2, out  # both agents' rows are in the file

    # The next agent, with the store back, replays the file: every count of both agents, once.
    proxy.heal()
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    cfg, _ = config(tmp_path / "agent-next", pg_url, empty, spool, down=False)
    # An empty file and the spool's rows pending from the start: the idle exit comes only after a
    # flush stored them all (agent/idle_exit.py), so 1 s of quiet is enough.
    code, out = await asyncio.to_thread(h.finish, h.start_agent(cfg, "--exit-when-idle", "1"), 90)
    assert code == 0, out
    assert not spool.exists(), out
    assert stored(pg_url) == expected()


async def test_an_agent_that_replayed_a_spool_never_removes_a_newer_one(tmp_path, pg_url, proxy) -> None:
    spool = tmp_path / "spool" / "hot.spool"
    spool.parent.mkdir()
    half = len(GOOD) // 2
    proxy.blackhole()
    # 0. Agent C, at another path, spools the second half: the newer file of step 3.
    other = tmp_path / "other" / "hot.spool"
    other.parent.mkdir()
    export_c = tmp_path / "c.log"
    export_c.write_bytes(b"")
    cfg_c, port_c = config(tmp_path / "agent-c", proxy.url(pg_url), export_c, other, from_start=False)
    code, out = await _stop(
        await _run_until_processed(cfg_c, port_c, len(GOOD) - half, export_c, GOOD[half:])
    )
    assert code == 0 and other.exists(), out
    # 1. An earlier agent left the first half's rows in the spool file (the store was down).
    export_a = tmp_path / "a.log"
    export_a.write_bytes(b"")
    cfg_a, port_a = config(tmp_path / "agent-a", proxy.url(pg_url), export_a, spool, from_start=False)
    code, out = await _stop(await _run_until_processed(cfg_a, port_a, half, export_a, GOOD[:half]))
    assert code == 0 and spool.exists(), out
    # 2. Agent B starts and loads that file; the store is still down, so it cannot replay it yet.
    export_b = tmp_path / "b.log"
    export_b.write_bytes(b"")
    cfg_b, port_b = config(tmp_path / "agent-b", proxy.url(pg_url), export_b, spool)
    proc_b = h.start_agent(cfg_b)
    try:
        await h.wait_for(
            lambda: (
                h.metric(h.scrape(port_b), "stellaops_runtime_store_spool_rows_total", event="loaded") > 0
            ),
            what="B loaded the spool",
        )
        # 3. Another writer puts a newer spool file (C's second half) at the path, as a writer
        #    does: written beside it, renamed into place.
        tmp = spool.with_name("newer.tmp")
        tmp.write_bytes(other.read_bytes())
        tmp.replace(spool)
        # 4. The store comes back: B replays what it loaded; the newer file must stay.
        proxy.heal()
        await h.wait_for(
            lambda: (
                h.metric(h.scrape(port_b), "stellaops_runtime_hot_symbols_pending") == 0
                and h.metric(h.scrape(port_b), SPOOL_ROWS, event="replayed") > 0
            ),
            what="B replayed the spool",
        )
        code, out_b = await _stop(proc_b)
    finally:
        if proc_b.poll() is None:
            proc_b.kill()
    assert code == 0, out_b
    assert spool.exists(), out_b  # C's rows are still on disk
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    cfg, _ = config(tmp_path / "agent-next", pg_url, empty, spool, down=False)
    # An empty file and the spool's rows pending from the start: the idle exit comes only after a
    # flush stored them all (agent/idle_exit.py), so 1 s of quiet is enough.
    code, out = await asyncio.to_thread(h.finish, h.start_agent(cfg, "--exit-when-idle", "1"), 90)
    assert code == 0, out
    assert not spool.exists(), out
    assert stored(pg_url) == expected()
