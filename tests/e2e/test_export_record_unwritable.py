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
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness as h
from tests.e2e.test_export_restart_gap import OBJS, THIRD, append, lines, none_gaps
from tests.e2e.test_export_resume import stored, truth
from tests.e2e.test_export_resume_reboot import _conf, settled

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
        assert "are a gap" in out_b and none_gaps(pg_url), out_b
