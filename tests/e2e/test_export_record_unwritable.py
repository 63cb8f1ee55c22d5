"""The export checkpoint when the watch record cannot be written.

Defect (s33/h3), reproduced with real agents as subprocesses and a real PostgreSQL: a watch
record that cannot be written (its directory gone, a full disk, read-only) let the rows of a
drain reach the store while the record on disk still named an older checkpoint, so the next
agent read those lines again and counted them twice. Now a drain whose checkpoint cannot be
recorded first is held (its counts stay in the aggregator, the file keeps the lines) until the
record can be written. The stream is the synthetic one (tests/fixtures/tetragon/synthetic,
copied from /work/shared/fixtures/tetragon).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import export_agents as x
from tests.e2e import harness as h
from tests.e2e.export_agents import OBJS, THIRD, append, lines, settled, stored, truth
from tests.e2e.export_agents import conf as _conf

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


Totals = tuple[dict[str, int], dict[str, int]]


def _within(got: Totals, want: Totals) -> bool:
    """No count past the truth (none counted twice)."""
    return all(n <= w.get(k, 0) for g, w in zip(got, want, strict=True) for k, n in g.items())


def _resume_pos(spool: str) -> int:
    """Where the next agent resumes: the record's checkpoint in flight, else the committed one."""
    export = json.loads(Path(spool + ".alive").read_bytes())["export"]
    cp = export["in_flight"]["checkpoint"] if export["in_flight"] else export["committed"]
    return int(cp["pos"])


@pytest.mark.parametrize("sig", [signal.SIGKILL], ids=["sigkill"])
async def test_a_record_that_cannot_be_written_never_counts_twice(tmp_path: Path, pg_url: str, sig) -> None:
    """The spool directory (the node's hostPath) vanishes while A runs and comes back after A
    stopped: A's record still names the first third's checkpoint. B must not count twice
    what A stored meanwhile, nor lose what A could not store."""
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    spool, export = str(node_dir / "spool.jsonl"), tmp_path / "tetragon.log"
    export.write_bytes(b"")
    first, middle, last = OBJS[:THIRD], OBJS[THIRD : 2 * THIRD], OBJS[2 * THIRD :]
    away = tmp_path / "node-away"
    procs: list[Any] = []
    try:
        (tmp_path / "a").mkdir()
        cfg_a, port_a = h.write_config(tmp_path / "a", **_conf(pg_url, spool, export))
        procs.append(h.start_agent(cfg_a))
        await asyncio.to_thread(append, export, lines(first))
        await h.wait_for(lambda: settled(port_a, len(first)), what="A stored the first third")
        node_dir.rename(away)  # the record's directory is gone: every write of it fails
        errors = h.metric(h.scrape(port_a), "stellaops_runtime_watch_record_write_errors_total")
        await asyncio.to_thread(append, export, lines(middle))
        await h.wait_for(
            lambda: (
                h.metric(h.scrape(port_a), "stellaops_runtime_event_processing_latency_seconds_count")
                == len(first) + len(middle)
            ),
            what="A processed the middle third",
        )
        await h.wait_for(
            lambda: h.metric(h.scrape(port_a), "stellaops_runtime_watch_record_write_errors_total") > errors,
            what="A failed to write its record",
        )
        # A stored the middle third's counts (what it did before the fix), or held them.
        held = "stellaops_runtime_export_drains_held_total"
        await h.wait_for(
            lambda: stored(pg_url) == truth(first, middle) or h.metric(h.scrape(port_a), held) > 0,
            what="A stored or held the middle third",
        )
        procs[0].send_signal(sig)
        code_a, out_a = await asyncio.to_thread(h.finish, procs[0], 60)
        assert code_a in ((0, 1) if sig == signal.SIGTERM else (-signal.SIGKILL,)), out_a
        a_done = dt.datetime.now(dt.UTC)
        assert "the counts read since are held" in out_a, out_a  # A said why it stored nothing
        away.rename(node_dir)  # back, with A's older record in it
        (tmp_path / "b").mkdir()
        cfg_b, port_b = h.write_config(tmp_path / "b", **_conf(pg_url, spool, export))
        procs.append(h.start_agent(cfg_b))
        await asyncio.to_thread(append, export, lines(last))
        want = truth(first, middle, last)
        n_b = export.read_bytes()[_resume_pos(spool) :].count(b"\n")  # the lines B reads
        await h.wait_for(lambda: settled(port_b, n_b), what="B stored what it read")
        procs[1].send_signal(signal.SIGTERM)
        code_b, out_b = await asyncio.to_thread(h.finish, procs[1], 60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert code_b == 0, out_b
    assert "resumed at byte" in out_b, out_b
    got = stored(pg_url)
    assert _within(got, want), "a line was counted twice"
    if got != want:  # the directory went away between the record's rename and its sync: in doubt
        assert "are a gap" in out_b and x.first_hold_and_after(pg_url, a_done), out_b


HELD = "stellaops_runtime_export_drains_held_total"


async def _held_agent(tmp_path: Path, pg_url: str) -> tuple[Any, int, Path, Path, Path, str]:
    """Agent A stored the first third, then its record's directory went away and the middle
    third arrived: A holds its drains. Returns (A, its port, node dir, where it went, file, spool)."""
    node_dir, away = tmp_path / "node", tmp_path / "node-away"
    node_dir.mkdir()
    spool, export = str(node_dir / "spool.jsonl"), tmp_path / "tetragon.log"
    export.write_bytes(b"")
    (tmp_path / "a").mkdir()
    conf = {**x.conf(pg_url, spool, export), "shutdown": {"graceSeconds": 25}}
    cfg_a, port_a = h.write_config(tmp_path / "a", **conf)
    proc = h.start_agent(cfg_a)
    await asyncio.to_thread(x.append, export, x.lines(OBJS[:THIRD]))
    await h.wait_for(lambda: x.settled(port_a, THIRD), what="A stored the first third")
    await h.wait_for(lambda: x.committed_on_disk(spool), what="A recorded the stored position")
    node_dir.rename(away)
    await asyncio.to_thread(x.append, export, x.lines(OBJS[THIRD : 2 * THIRD]))
    await h.wait_for(lambda: h.metric(h.scrape(port_a), HELD) > 0, what="A held a drain")
    return proc, port_a, node_dir, away, export, spool


async def test_readyz_says_the_export_position_is_unrecorded(tmp_path: Path, pg_url: str) -> None:
    """Defect (s34/h4): while the record's directory stayed unwritable the agent stored nothing and
    said so in its log and a counter, but ``/readyz`` answered 200. Now it answers 503 with
    ``export_position_unrecorded``, and 200 again once the record can be written."""
    procs: list[Any] = []
    try:
        proc, port, node_dir, away, _, _ = await _held_agent(tmp_path, pg_url)
        procs.append(proc)
        await h.wait_for(lambda: x.readyz(port)[0] == 503, what="/readyz not ready")
        _, body = x.readyz(port)
        assert body["export_position_unrecorded"] is True and body["ready"] is False, body
        away.rename(node_dir)  # writable again: the held counts go to the store
        want = x.truth(OBJS[: 2 * THIRD])
        await h.wait_for(lambda: x.stored(pg_url) == want, what="the held counts stored")
        await h.wait_for(lambda: x.readyz(port)[0] == 200, what="/readyz ready again")
        assert x.readyz(port)[1]["export_position_unrecorded"] is False
        code_a, out_a = await x.stop(procs[0])
    finally:
        x.kill_all(procs)
    assert code_a == 0, out_a
    assert x.stored(pg_url) == want


async def test_sigterm_while_drains_are_held_exits_promptly_and_loses_nothing(
    tmp_path: Path, pg_url: str
) -> None:
    """Defect (s34/h4): SIGTERM while drains were held retried the record until
    ``shutdown.graceSeconds`` ran out (25 s here: Kubernetes' default grace is 30 s), then exited 0
    as if everything was stored or spooled. Now it stops retrying at once, says the counts read
    since the recorded position were not stored, exits 2, and the next agent reads those lines
    again from the record on disk: the totals are exact."""
    procs: list[Any] = []
    try:
        began = dt.datetime.now(dt.UTC)  # before the node's first agent (A) and its hold
        proc, _, node_dir, away, export, spool = await _held_agent(tmp_path, pg_url)
        procs.append(proc)
        code_a, out_a = await x.stop(procs[0])
        a_done = dt.datetime.now(dt.UTC)
        away.rename(node_dir)
        (tmp_path / "b").mkdir()
        cfg_b, _ = h.write_config(tmp_path / "b", **x.conf(pg_url, spool, export))
        procs.append(h.start_agent(cfg_b))
        await asyncio.to_thread(x.append, export, x.lines(OBJS[2 * THIRD :]))
        want = x.truth(OBJS)
        await h.wait_for(lambda: x.stored(pg_url) == want, what="every line stored once")
        code_b, out_b = await x.stop(procs[1])
    finally:
        x.kill_all(procs)
    assert code_a == 2, out_a  # not everything was stored or spooled
    assert "were not stored" in out_a, out_a
    assert h.log_seconds(out_a, "stopping: draining", "agent stopped") < 15, out_a  # not the 25 s
    assert code_b == 0, out_b
    assert "resumed at byte" in out_b, out_b
    assert x.stored(pg_url) == want
    x.only_first_hold(pg_url, began, a_done)  # B read every line A could not store: nothing unwatched
