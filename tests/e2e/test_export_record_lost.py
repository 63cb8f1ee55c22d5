"""A lost or unreadable watch record: the store, not the record, says an agent ran on the node.

Defect (s34/h4), reproduced with real agents as subprocesses and a real PostgreSQL: a watch
record that is missing (the node's hostPath wiped, ``store.spoolPath`` changed) or ignored as
unreadable made the next agent act as the node's first. With ``exportFromStart`` it read the
export file from its first line and counted every line the earlier agent had stored a second
time; without it, the hole since the earlier agent was no gap, so ``query observed`` could say
"not observed" over a time nobody watched. Now the agent asks the store, as it opens, for the
node's latest observation window (agent/node_history.py): when there is one, the file is read
from its end (no line counted twice) and the time since that window's start is a gap.

The stream is the synthetic one (tests/fixtures/tetragon/synthetic, copied from
/work/shared/fixtures/tetragon).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _lose(record: Path, how: str) -> None:
    if how == "missing":  # the hostPath wiped (or spoolPath changed): no record at all
        record.unlink()
    else:  # a record the next agent ignores as unreadable
        record.write_bytes(b'{"format": "stellaops-runtime-alive", "node": ')


@pytest.mark.parametrize(
    ("sig", "how", "from_start"),
    [(signal.SIGKILL, "missing", True), (signal.SIGTERM, "corrupt", False)],
    ids=["sigkill-missing-from_start", "sigterm-corrupt-from_end"],
)
async def test_a_lost_record_never_replays_what_the_store_holds(
    tmp_path: Path, pg_url: str, sig: signal.Signals, how: str, from_start: bool
) -> None:
    spool, export = str(tmp_path / "spool.jsonl"), tmp_path / "tetragon.log"
    export.write_bytes(b"")
    first, hole, last = x.OBJS[: x.THIRD], x.OBJS[x.THIRD : 2 * x.THIRD], x.OBJS[2 * x.THIRD :]
    procs: list[Any] = []
    try:
        (tmp_path / "a").mkdir()
        cfg_a, port_a = h.write_config(tmp_path / "a", **x.conf(pg_url, spool, export))
        procs.append(h.start_agent(cfg_a))
        await asyncio.to_thread(x.append, export, x.lines(first))
        await h.wait_for(lambda: x.settled(port_a, len(first)), what="A stored the first third")
        await h.wait_for(lambda: x.committed_on_disk(spool), what="A recorded the stored position")
        code_a, out_a = await x.stop(procs[0], sig)
        assert code_a == (0 if sig == signal.SIGTERM else -signal.SIGKILL), out_a
        a_done = dt.datetime.now(dt.UTC)
        _lose(Path(spool + ".alive"), how)
        hole_from = dt.datetime.now(dt.UTC)
        await asyncio.to_thread(x.append, export, x.lines(hole))  # written while no agent runs
        hole_to = dt.datetime.now(dt.UTC)
        (tmp_path / "b").mkdir()
        cfg_b, port_b = h.write_config(tmp_path / "b", **x.conf(pg_url, spool, export, from_start=from_start))
        procs.append(h.start_agent(cfg_b))
        await h.wait_for(lambda: x.connected(port_b), what="B follows the file")
        await asyncio.to_thread(x.append, export, x.lines(last))
        await h.wait_for(lambda: x.settled(port_b, len(last)), what="B stored what it read")
        code_b, out_b = await x.stop(procs[1])
    finally:
        x.kill_all(procs)
    assert code_b == 0, out_b
    assert "the time since is a gap" in out_b, out_b
    assert x.stored(pg_url) == x.truth(first, last)  # A's lines once; the hole's not read
    gaps = x.first_hold_and_after(pg_url, a_done)  # not A's own first hold
    assert gaps, "the hole since A is not a gap"
    assert min(a for a, _ in gaps) <= hole_from and hole_to <= max(b for _, b in gaps), (gaps, hole_from)
    x.unknown_answer(pg_url)


async def test_the_node_first_agent_still_replays_the_whole_file(tmp_path: Path, pg_url: str) -> None:
    """No record and a store that holds nothing of the node: ``exportFromStart`` reads every line."""
    spool, export = str(tmp_path / "spool.jsonl"), tmp_path / "tetragon.log"
    before, after = x.OBJS[: x.THIRD], x.OBJS[x.THIRD :]
    began = dt.datetime.now(dt.UTC)  # before the file's first line (stamped now) and the agent
    export.write_bytes(x.lines(before))  # written before any agent ran
    procs: list[Any] = []
    try:
        cfg, port = h.write_config(tmp_path, **x.conf(pg_url, spool, export))
        procs.append(h.start_agent(cfg))
        await h.wait_for(lambda: x.connected(port), what="the agent follows the file")
        await asyncio.to_thread(x.append, export, x.lines(after))
        await h.wait_for(lambda: x.settled(port, len(x.OBJS)), what="every line stored")
        code, out = await x.stop(procs[0])
        done = dt.datetime.now(dt.UTC)
    finally:
        x.kill_all(procs)
    assert code == 0, out
    assert "the first agent on this node" in out, out
    assert x.stored(pg_url) == x.truth(x.OBJS)
    # Only the hold about the file's first line (read from its start): no gap over the file's time.
    x.only_first_hold(pg_url, began, done)


async def test_a_lost_record_of_a_grpc_agent_is_a_gap_too(tmp_path: Path, pg_url: str) -> None:
    """The gRPC source: a record ignored as unreadable, a store holding a window of the node from
    five minutes ago (an earlier agent's). Before, no gap (the node's first agent); now the time
    since that window's start until the stream opened is one."""
    from stellaops_runtime.contracts.hotsymbols import ObservationWindow
    from stellaops_runtime.replay.server import ReplayServer
    from stellaops_runtime.store.engine import open_store
    from tests.e2e.test_agent_restart_gap import retimed

    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    start_ns = int(earlier.timestamp()) // 60 * 60 * 10**9
    store = await asyncio.to_thread(open_store, pg_url)
    digest = h.EXPECTED["images"][0]["digest"]
    await asyncio.to_thread(store.write, [], [ObservationWindow(digest, x.NODE, start_ns, 1)])
    store.close()
    spool = tmp_path / "spool.jsonl"
    await asyncio.to_thread(_lose, Path(str(spool) + ".alive"), "corrupt")
    server = ReplayServer(retimed(tmp_path, x.OBJS, "all"))
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(
        tmp_path, tetragon={"address": addr}, store={"url": pg_url, "spoolPath": str(spool)}
    )
    proc = h.start_agent(cfg)
    try:
        await server.wait_served(len(x.OBJS), timeout=60)
        await h.wait_for(lambda: x.settled(port, len(x.OBJS)), what="every event stored")
        await h.wait_for(lambda: bool(x.none_gaps(pg_url)), what="the gap stored")
        m = h.scrape(port)
        code, out = await x.stop(proc)
    finally:
        x.kill_all([proc])
        await server.stop(grace=0)
    assert code == 0, out
    assert "ignored (" in out and "the time since is a gap" in out, out
    assert h.metric(m, "stellaops_runtime_restart_gaps_total") == 1
    gaps = x.none_gaps(pg_url)
    assert min(a for a, _ in gaps) <= earlier + dt.timedelta(minutes=1), gaps
    assert x.summed(pg_url, "invoked") == h.EXPECTED["uprobe_counts"]
