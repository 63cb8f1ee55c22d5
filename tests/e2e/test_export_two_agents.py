"""Two agents on one export file with different spool paths (or none) never count a line twice.

Probe (s36/h2), real agents as subprocesses and a real PostgreSQL: the node's agent lock
(agent/node_presence.py) sits beside ``store.spoolPath``, so two agents of one node given
different spool paths, or one given none (a second install, an agent run by hand beside the
DaemonSet's pod), both followed the node's export file and stored every line twice, both
ready, both exiting 0. Now the export follower takes a lock on the export file's directory
(sources/export_lock.py) before it opens the file: the second agent logs that it waits, reads
nothing and reports ``node_other_agent`` 1 until the first exits; then it reads on from the
file's end (never from its start, never from a checkpoint of its own that the other agent
read past), so every line is counted once. The stream is the synthetic one
(tests/fixtures/tetragon/synthetic, copied from /work/shared/fixtures/tetragon).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import export_agents as x
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

WAITS = "another agent follows the export files in"  # sources/export_lock.py


def _readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _other(port: int) -> float:
    return h.metric(h.scrape(port), "stellaops_runtime_node_other_agent")


async def test_a_second_agent_on_the_export_file_waits_and_counts_nothing_twice(
    tmp_path: Path, pg_url: str
) -> None:
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"")
    first, second = x.OBJS[: x.THIRD], x.OBJS[x.THIRD : 2 * x.THIRD]
    procs: list[Any] = []
    try:
        (tmp_path / "a").mkdir()
        cfg_a, port_a = h.write_config(tmp_path / "a", **x.conf(pg_url, str(tmp_path / "a.spool"), export))
        procs.append(h.start_agent(cfg_a))
        await h.wait_for(lambda: x.connected(port_a), what="A follows the file", timeout=60)
        a_open = dt.datetime.now(dt.UTC)  # A's hold ends before this, B starts after
        (tmp_path / "b").mkdir()
        # No spool path (so no node lock, no watch record), exportFromStart: alone it reads the
        # file whole (tests/integration/test_export_lock.py has another spool path's checkpoint).
        cfg_b, port_b = h.write_config(tmp_path / "b", **x.conf(pg_url, "", export))
        out_b = h.Output(h.start_agent(cfg_b))
        procs.append(out_b.proc)
        # B either follows the file too (counting every line twice) or says it waits.
        await h.wait_for(
            lambda: x.connected(port_b) or _other(port_b) == 1, what="B follows the file or waits", timeout=60
        )
        assert not x.connected(port_b), "B follows the file A follows: each line would be counted twice"
        await h.wait_for(lambda: out_b.has(WAITS), what="B says it waits", timeout=60)
        waiting = dt.datetime.now(dt.UTC)
        code, body = await asyncio.to_thread(_readyz, port_b)
        assert code == 503 and body["other_agent_on_node"] is True, body
        await asyncio.to_thread(x.append, export, x.lines(first))
        await h.wait_for(lambda: x.settled(port_a, len(first)), what="A stored its lines", timeout=60)
        a_stopping = dt.datetime.now(dt.UTC)
        code_a, text_a = await x.stop(procs[0], signal.SIGKILL)  # the kernel drops its lock
        assert code_a == -signal.SIGKILL, text_a
        await h.wait_for(lambda: x.connected(port_b), what="B follows the file once A is gone", timeout=60)
        assert _other(port_b) == 0
        gap_said = "the time since this agent began waiting is a gap"  # read by a thread: waited for
        await h.wait_for(lambda: out_b.has(gap_said), what="B says the wait is a gap", timeout=60)
        await asyncio.to_thread(x.append, export, x.lines(second))
        await h.wait_for(lambda: x.settled(port_b, len(second)), what="B stored its lines", timeout=60)
        out_b.proc.send_signal(signal.SIGTERM)
        code_b, text_b = await asyncio.to_thread(out_b.finish, 60)
    finally:
        x.kill_all(procs)
    assert code_b == 0, text_b
    assert x.stored(pg_url) == x.truth(first, second)  # every line once
    # B cannot know which lines written while it waited A counted: that time is a gap.
    gaps = x.first_hold_and_after(pg_url, a_open)  # not A's hold before it opened the file
    assert gaps, "the time B waited is not a gap"  # split at window boundaries: their union counts
    assert min(a for a, _ in gaps) <= waiting and a_stopping <= max(b for _, b in gaps), (gaps, waiting)
