"""The JSON export source: the time between two agents on a node is a gap, never "watched".

Probe (s31/h7): an agent following Tetragon's export file starts at the file's end
(``exportFromStart: false``, the default), so the lines Tetragon wrote while no agent
ran (an upgrade, a crash, an OOM kill) are never read. The export source had no watch
record and no outage, so nothing said so: a day with other events of the image counted
as watched, and ``query observed`` answered "not observed" (exit 1) for a function that
ran only in that hole. Now the export source keeps the node's watch record like the gRPC
source (docs/operations.md): the next agent records the span from the last agent's last
watching moment to the moment it opened the file as a node-wide gap (source ``none``),
and the answer is unknown (exit 3). Counts of the lines read stay exact.

Since s32/h2 a restarted agent reads on from the last agent's checkpoint when the file at the
path is still the file it followed (tests/e2e/test_export_resume.py): the hole is then read, not
a gap. Here the file was rotated away and compressed, or emptied by copytruncate, while no
agent ran: the checkpoint names bytes that are no longer at the path, so the hole stays a gap
(a file rotated once and kept uncompressed is read on: tests/e2e/test_export_rotated_while_stopped.py).

The stream is the synthetic one (tests/fixtures/tetragon/synthetic, copied from
/work/shared/fixtures/tetragon), its node set to the agent's and its times to now.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

# Shared with the other export restart tests (tests/e2e/export_agents.py); imported by some of them.
NODE, OBJS, THIRD = x.NODE, x.OBJS, x.THIRD
lines, uprobe_counts, summed, none_gaps, append = x.lines, x.uprobe_counts, x.summed, x.none_gaps, x.append


def received(port: int) -> float:
    return h.metric(h.scrape(port), "stellaops_runtime_events_received_total", source="tetragon-export")


def all_stored(port: int, n: int) -> bool:
    m = h.scrape(port)
    return (
        h.metric(m, "stellaops_runtime_event_processing_latency_seconds_count") == n
        and h.metric(m, "stellaops_runtime_hot_symbols_in_memory") == 0
        and h.metric(m, "stellaops_runtime_hot_symbols_pending") == 0
        and h.metric(m, "stellaops_runtime_hot_symbols_flushed_total") > 0
    )


def rotate(path: Path, how: str) -> None:
    """Rotate the export file the way Tetragon does (rename), or the way logrotate's copytruncate does."""
    if how == "rotated":  # with exportFileCompress: the rotated file is gzipped and removed
        rotated = path.with_suffix(".log.1")
        path.rename(rotated)
        path.write_bytes(b"")
        rotated.with_suffix(".1.gz").write_bytes(gzip.compress(rotated.read_bytes()))
        rotated.unlink()
    else:
        path.with_suffix(".log.1").write_bytes(path.read_bytes())
        with path.open("r+b") as f:
            f.truncate(0)


@pytest.mark.parametrize(
    ("sig", "how"),
    [(signal.SIGTERM, "rotated"), (signal.SIGKILL, "copytruncate")],
    ids=["sigterm-rotated", "sigkill-copytruncate"],
)
async def test_the_hole_between_two_export_agents_is_a_gap(tmp_path, pg_url, sig, how) -> None:
    spool = str(tmp_path / "spool.jsonl")
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, hole, last = OBJS[:THIRD], OBJS[THIRD : 2 * THIRD], OBJS[2 * THIRD :]
    t_begin = dt.datetime.now(dt.UTC)
    conf = {"store": {"url": pg_url, "spoolPath": spool}, "tetragon": {"exportFile": str(export)}}
    cfg_a, port_a = h.write_config(tmp_path / "a", **conf)
    proc_a = h.start_agent(cfg_a)
    proc_b = None
    try:
        await h.wait_for(lambda: h.metric(h.scrape(port_a), "stellaops_runtime_tetragon_connected") == 1)
        await asyncio.to_thread(append, export, lines(first))
        await h.wait_for(lambda: received(port_a) == len(first), what="A read the first third")
        await h.wait_for(lambda: all_stored(port_a, len(first)), what="A stored every count")
        a_read = dt.datetime.now(dt.UTC)
        x.only_first_hold(pg_url, t_begin, a_read)  # the node's first agent: only its hold before the file
        await h.wait_for(lambda: Path(spool + ".alive").exists(), what="A's watch record")
        proc_a.send_signal(sig)
        code_a, out_a = await asyncio.to_thread(h.finish, proc_a, 60)
        assert code_a == (0 if sig == signal.SIGTERM else -signal.SIGKILL), out_a
        stopped = dt.datetime.now(dt.UTC)
        rotate(export, how)  # the file A followed is no longer at the path
        await asyncio.to_thread(append, export, lines(hole))  # written while no agent runs
        await asyncio.sleep(0.5)
        cfg_b, port_b = h.write_config(tmp_path / "b", **conf)
        proc_b = h.start_agent(cfg_b)
        await h.wait_for(lambda: h.metric(h.scrape(port_b), "stellaops_runtime_tetragon_connected") == 1)
        b_open = dt.datetime.now(dt.UTC)  # B opened the file before this
        await asyncio.to_thread(append, export, lines(last))
        await h.wait_for(lambda: received(port_b) == len(last), what="B read the last third")
        await h.wait_for(lambda: all_stored(port_b, len(last)), what="B stored every count")
        m = h.scrape(port_b)
        proc_b.send_signal(signal.SIGTERM)
        code_b, out_b = await asyncio.to_thread(h.finish, proc_b, 60)
    finally:
        for p in (proc_a, proc_b):
            if p is not None and p.poll() is None:
                p.kill()
    assert code_b == 0, out_b
    assert "recorded as a gap" in out_b, out_b
    assert h.metric(m, "stellaops_runtime_restart_gaps_total") == 1
    assert h.metric(m, "stellaops_runtime_events_dropped_total", reason="queue_full") == 0
    # Exact counts of what was read: the hole's lines are not counted, nothing is doubled.
    want = Counter(uprobe_counts(first)) + Counter(uprobe_counts(last))
    assert summed(pg_url, "invoked") == dict(want)
    assert summed(pg_url, "on_stack") == dict(h.expected_stack_counts(first) + h.expected_stack_counts(last))
    # One node-wide gap over the hole: from A's last watching moment to B's opening of the file
    # (besides A's own hold before it opened the file, the node's first agent).
    spans = x.first_hold_and_after(pg_url, a_read)
    assert spans, "no gap over the hole"
    start, end = min(a for a, _ in spans), max(b for _, b in spans)
    assert t_begin <= start <= stopped, (t_begin, start, stopped)
    assert stopped <= end <= b_open, (stopped, end, b_open)
    digest = h.EXPECTED["images"][0]["digest"]
    since = (t_begin - dt.timedelta(minutes=2)).isoformat()
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)).isoformat()
    args = ("--image", digest, "--store", pg_url, "--since", since, "--until", until)
    r = h.cli("query", "observed", "--function", "no_such_fn", *args)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
