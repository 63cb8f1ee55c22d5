"""A FIFO at ``symbols.kallsymsPath`` or ``store.spoolPath`` is an error, not a stopped agent.

Both paths are the user's (configuration values). Before the fix, through the
real agent: the spool file was opened with a blocking ``open`` at start-up and
``/proc/kallsyms`` (or what ``kallsymsPath`` names) on the first kernel frame;
on a FIFO nobody writes to, each waits for a writer for ever, and the retried
call outlives SIGTERM (found by brief H8 of 2026-12-04). Now the spool is set
aside like a damaged one (``store_spool_rows_total{event="corrupt"}``, its
error in the log) and kernel frames stay unresolved, counted
``kallsyms_unreadable``; every event is processed and stored, and SIGTERM
ends the agent.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]


async def test_fifos_at_the_spool_and_kallsyms_paths_leave_every_event_counted(
    tmp_path: Path, sqlite_at_head: Any
) -> None:
    objs = h.stream_objects()
    spool = tmp_path / "spool.json"
    kallsyms = tmp_path / "kallsyms"
    os.mkfifo(spool)
    os.mkfifo(kallsyms)
    export = tmp_path / "tetragon.log"
    export.write_text("".join(json.dumps(o) + "\n" for o in objs))
    db = tmp_path / "hot.db"
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": sqlite_at_head(db), "spoolPath": str(spool)},  # at head: tests/conftest.py
        symbols={"kallsymsPath": str(kallsyms)},
        native={"enabled": False},
    )
    proc = h.start_agent(cfg)
    try:
        await h.wait_for(
            lambda: (
                h.metric_sum(h.scrape(port), "stellaops_runtime_event_processing_latency_seconds_count")
                == len(objs)
            ),
            what="every event processed",
            timeout=90,
        )
        await h.wait_for(
            lambda: h.metric(h.scrape(port), "stellaops_runtime_hot_symbols_pending") == 0,
            what="every row stored",
            timeout=60,
        )
        m = h.scrape(port)
        proc.terminate()
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 0, out
    assert "Traceback" not in out
    assert h.metric(m, "stellaops_runtime_store_spool_rows_total", event="corrupt") == 1
    assert "not a regular file (a FIFO)" in out and str(spool) in out, out
    unreadable = h.metric(
        m, "stellaops_runtime_frames_unresolved_total", stack="kernel", reason="kallsyms_unreadable"
    )
    assert unreadable > 0, [k for k in m if "frames_unresolved" in k[0]]
    with sqlite3.connect(db) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM hot_symbols").fetchone()
    assert rows > 0
