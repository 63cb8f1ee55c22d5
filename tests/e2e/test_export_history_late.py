"""A store that cannot say in time whether the node had an agent before: the export file is not replayed.

Defect (s35/h2), reproduced with real agents as subprocesses, a real PostgreSQL and a TCP proxy of
our own that black-holes it (tests/pgproxy.py): with the node's watch record lost, the store
silent for the time the ``exportFromStart`` source waits for its answer (10 s by default,
``tetragon.exportHistoryWaitSeconds``: 2 s here, as a user may set it), the agent acted as the
node's first and read the export file from its first line, so every line an earlier agent had
stored was counted twice. Now the file is read from where it ended when it was opened;
``node_history_unknown`` is 1 until the store answers, and the answer says where the hole's gap
starts: at the node's latest stored window when the store knew the node, at the node's boot when
it did not (a new node: its lines written before the agent opened the file are not read, a gap
instead).

The stream is the synthetic one (tests/fixtures/tetragon/synthetic, copied from
/work/shared/fixtures/tetragon).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from pgproxy import PgProxy

from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

UNKNOWN = "stellaops_runtime_node_history_unknown"


def _late_conf(url: str, spool: str, export: Path) -> dict[str, Any]:
    c = x.conf(url, spool, export)
    c["store"].update(connectTimeout="2s", statementTimeout="2s")
    c["tetragon"]["exportHistoryWaitSeconds"] = "2s"  # the default 10 s sat idle in both tests
    return c


def _processed(port: int) -> float:
    return h.metric(h.scrape(port), "stellaops_runtime_event_processing_latency_seconds_count")


async def _late_store_agent(
    tmp: Path,
    pg_url: str,
    proxy: PgProxy,
    spool: str,
    export: Path,
    later: list[dict[str, Any]],
    after: dt.datetime | None = None,
) -> tuple[str, dict[Any, float], dict[Any, float]]:
    """Run an agent whose store is black-holed past its wait for the node's history; ``later`` is
    written once it follows the file, then the store comes back. Returns (log, metrics while the
    store was away, metrics at the end). ``after``: the gap waited for ends after it (a first
    agent's hold, stored before, is not it)."""
    proxy.blackhole()
    await asyncio.to_thread(tmp.mkdir)
    cfg, port = h.write_config(tmp, **_late_conf(proxy.url(pg_url), spool, export))
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(lambda: x.connected(port), what="the agent follows the file", timeout=60)
        await asyncio.to_thread(x.append, export, x.lines(later))
        # Lines are read only once the wait for the store's answer is over: with the store away.
        await h.wait_for(lambda: _processed(port) >= len(later), what="the later lines read", timeout=60)
        away = h.scrape(port)
        proxy.heal()
        await h.wait_for(lambda: x.settled(port, len(later)), what="every count stored", timeout=60)
        await h.wait_for(lambda: h.metric(h.scrape(port), UNKNOWN) == 0, what="the store answered")
        since = after or dt.datetime.min.replace(tzinfo=dt.UTC)
        await h.wait_for(
            lambda: any(b > since for _, b in x.none_gaps(pg_url)), what="the gap stored", timeout=60
        )
        # the restart gap, not only the first file's hold (stored on its own, sooner)
        gaps = "stellaops_runtime_restart_gaps_total"
        await h.wait_for(lambda: h.metric(h.scrape(port), gaps) >= 1, what="the restart gap", timeout=60)
        end = h.scrape(port)
        code, out = await x.stop(proc)
    finally:
        x.kill_all([proc])
    assert code == 0, out
    return out, away, end


async def test_a_store_late_to_say_it_knew_the_node_never_replays(tmp_path: Path, pg_url: str, proxy) -> None:
    spool, export = str(tmp_path / "spool.jsonl"), tmp_path / "tetragon.log"
    export.write_bytes(b"")
    first, hole, last = x.OBJS[: x.THIRD], x.OBJS[x.THIRD : 2 * x.THIRD], x.OBJS[2 * x.THIRD :]
    (tmp_path / "a").mkdir()
    cfg_a, port_a = h.write_config(tmp_path / "a", **x.conf(pg_url, spool, export))
    proc = h.start_agent(cfg_a)
    try:
        await asyncio.to_thread(x.append, export, x.lines(first))
        await h.wait_for(lambda: x.settled(port_a, len(first)), what="A stored the first third")
        await h.wait_for(lambda: x.committed_on_disk(spool), what="A recorded the stored position")
        code_a, out_a = await x.stop(proc, signal.SIGKILL)
    finally:
        x.kill_all([proc])
    assert code_a == -signal.SIGKILL, out_a
    a_done = dt.datetime.now(dt.UTC)
    await asyncio.to_thread(Path(spool + ".alive").unlink)  # the hostPath wiped: no record
    hole_from = dt.datetime.now(dt.UTC)
    await asyncio.to_thread(x.append, export, x.lines(hole))  # written while no agent runs
    hole_to = dt.datetime.now(dt.UTC)
    out, away, end = await _late_store_agent(tmp_path / "b", pg_url, proxy, spool, export, last, a_done)
    assert x.stored(pg_url) == x.truth(first, last)  # A's lines once (before: twice), the hole's none
    assert "did not say within 2s" in out and "not from its start" in out, out
    assert h.metric(away, UNKNOWN) == 1, out
    assert "answered late: it holds windows of this node" in out, out
    assert "the time since is a gap" in out, out
    gaps = x.first_hold_and_after(pg_url, a_done)  # not A's own first hold
    assert min(a for a, _ in gaps) <= hole_from and hole_to <= max(b for _, b in gaps), (gaps, hole_from)
    assert h.metric(end, "stellaops_runtime_restart_gaps_total") == 1
    x.unknown_answer(pg_url)


async def test_a_new_node_whose_store_is_late_has_its_early_lines_as_a_gap(
    tmp_path: Path, pg_url: str, proxy
) -> None:
    spool, export = str(tmp_path / "spool.jsonl"), tmp_path / "tetragon.log"
    early, rest = x.OBJS[: x.THIRD], x.OBJS[x.THIRD :]
    written = dt.datetime.now(dt.UTC)
    export.write_bytes(x.lines(early))  # before any agent ran on the node
    out, away, end = await _late_store_agent(tmp_path / "b", pg_url, proxy, spool, export, rest)
    assert x.stored(pg_url) == x.truth(rest)  # the early lines are not read ...
    assert "did not say within 2s" in out and "not from its start" in out, out
    assert h.metric(away, UNKNOWN) == 1, out
    assert "answered late: it holds no window of this node" in out, out
    gaps = x.none_gaps(pg_url)  # ... but a gap from the node's boot until the file was opened
    boot = dt.datetime.fromtimestamp(time.time() - time.clock_gettime(time.CLOCK_BOOTTIME), dt.UTC)
    assert min(a for a, _ in gaps) <= min(written, boot + dt.timedelta(seconds=1)), (gaps, written)
    assert max(b for _, b in gaps) >= written, gaps
    assert h.metric(end, "stellaops_runtime_restart_gaps_total") == 1
    x.unknown_answer(pg_url)
