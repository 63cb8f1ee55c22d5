"""The real agent following an export file that rotates while it is behind: exact counts.

The synthetic stream (tests/fixtures/tetragon/synthetic, copied from
/work/shared/fixtures/tetragon with its ground truth) is written in five files, each renamed
away as Tetragon's exporter rotates (once the agent holds it open), faster than the agent
reads them (queueSize 100, the smallest allowed). Every uprobe and stack count must equal
the ground truth: nothing dropped for lack of room (the file keeps it), no rotated file
skipped, nothing counted twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from tests.e2e import harness as h
from tests.e2e.test_export_restart_gap import lines, received, summed

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

OBJS = h.stream_objects()


def holds(pid: int, path) -> bool:
    """Whether process ``pid`` has the file now at ``path`` open."""
    try:
        want = os.stat(path)
    except FileNotFoundError:
        return False
    fds = f"/proc/{pid}/fd"
    for fd in os.listdir(fds):
        try:
            st = os.stat(os.path.join(fds, fd))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
            return True
    return False


async def test_rotations_while_behind_count_every_event_once(tmp_path, pg_url) -> None:
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"")
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(export), "queueSize": 100},
        store={"url": pg_url},
        native={"enabled": False},
    )
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(lambda: h.metric(h.scrape(port), "stellaops_runtime_tetragon_connected") == 1)
        step = len(OBJS) // 5 + 1
        for n, i in enumerate(range(0, len(OBJS), step)):
            with export.open("ab") as f:
                f.write(lines(OBJS[i : i + step]))
            if i + step < len(OBJS):
                # Rotated once the agent holds the file open (a file must be at the path for one of
                # its looks, 0.1 s: Tetragon's are there until 10 MB were written), reading or not.
                await h.wait_for(lambda: holds(proc.pid, export), what="the agent holds the file")
                os.rename(export, tmp_path / f"tetragon-{n}.log")
                export.write_bytes(b"")
        await h.wait_for(lambda: received(port) == len(OBJS), what="every line read", timeout=120)
        await h.wait_for(
            lambda: (
                h.metric(h.scrape(port), "stellaops_runtime_hot_symbols_pending") == 0
                and h.metric(h.scrape(port), "stellaops_runtime_hot_symbols_in_memory") == 0
                and h.metric(h.scrape(port), "stellaops_runtime_event_processing_latency_seconds_count")
                == len(OBJS)
            ),
            what="every count stored",
        )
        m = h.scrape(port)
        proc.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    assert h.metric_sum(m, "stellaops_runtime_events_dropped_total") == 0, json.dumps(
        {str(k): v for k, v in m.items() if "dropped" in k[0]}
    )
    assert summed(pg_url, "invoked") == h.EXPECTED["uprobe_counts"]
    assert summed(pg_url, "on_stack") == dict(h.expected_stack_counts(OBJS))
