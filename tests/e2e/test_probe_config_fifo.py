"""A ``native.probeConfigFile`` that is a FIFO is an error in the log, not a stopped pipeline.

docs/configuration.md, `native`: "`probeConfigFile` [...] unreadable or
invalid: the agent's own settings, an error in the log and
`stellaops_runtime_native_probe_config_errors_total`"; the same file carries
the operator's list of opted-out pods, which the pipeline thread looks at
once a second (agent/optout_watch.py: "a file that cannot be read or parsed
keeps the last list").

Before the fix, through the real agent: the pipeline thread opened the file
with a blocking ``open``, which on a FIFO waits for a writer for ever. No
event was processed again (the synthetic stream's 3,144 events stayed
unprocessed, its export file unread past the queue), nothing was stored, and
SIGTERM could not end the agent.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]


async def test_a_fifo_probe_config_file_leaves_every_event_counted(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    objs = h.stream_objects()
    fifo = tmp_path / "probes.json"
    os.mkfifo(fifo)
    export = tmp_path / "tetragon.log"
    export.write_text("".join(json.dumps(o) + "\n" for o in objs))
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"exportFile": str(export), "exportFromStart": True},
        store={"url": sqlite_at_head(tmp_path / "hot.db")},  # at head: the probe config is tested
        native={"enabled": False, "probeConfigFile": str(fifo)},
    )
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:
        await h.wait_for(
            lambda: (
                h.metric_sum(h.scrape(port), "stellaops_runtime_event_processing_latency_seconds_count")
                == len(objs)
            ),
            what="every event processed",
            timeout=60,
        )
        m = h.scrape(port)
        code, out = await asyncio.to_thread(h.finish, proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert code == 0, out
    assert "Traceback" not in out
    assert h.metric(m, "stellaops_runtime_optout_list_errors_total") >= 1
    assert f"{fifo}" in out and "not a regular file (a FIFO)" in out, out
