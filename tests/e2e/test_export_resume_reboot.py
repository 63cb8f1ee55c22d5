"""The export checkpoint after a node reboot or a wall clock set back far.

Defects (s33/h3), reproduced with real agents as subprocesses and a real PostgreSQL:

- A node reboot, or a wall clock set back more than a day: the watch record's export
  checkpoint was used on the same boot and with a sane time only. An
  agent with ``exportFromStart`` after a reboot, its export file kept on a persistent
  hostPath (Tetragon's lumberjack appends to the file it finds), read the file from its
  first line again and counted a second time every line the last agent had stored (it only
  warned). Now the checkpoint of another boot positions the file when the file is still
  that file (the reboot stays a gap: nobody watched the node from its boot until the file
  was opened), so no line is counted twice.

The reboot is what the next agent sees of one: a record written under another boot id (the
kernel's boot id cannot be changed by a test). The stream is the synthetic one
(tests/fixtures/tetragon/synthetic, copied from /work/shared/fixtures/tetragon).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness as h
from tests.e2e.export_agents import OBJS, THIRD, append, first_hold_and_after, lines, settled, stored, truth
from tests.e2e.export_agents import conf as _conf

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


DAY_NS = 86_400 * 10**9


def _as_if(record: Path, how: str) -> None:
    """The record as the next agent reads it after a reboot (written under another boot id), or
    after the wall clock was set back two days (written when it was two days ahead)."""
    doc = json.loads(record.read_bytes())
    assert "export" in doc, doc  # the last agent kept its checkpoint
    if how == "rebooted":
        doc["boot_id"] = str(uuid.uuid4())
    else:
        doc["alive_ns"] += 2 * DAY_NS
        if doc["export"]["in_flight"] is not None:
            doc["export"]["in_flight"]["at_ns"] += 2 * DAY_NS
    record.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("sig", "how"),
    [(signal.SIGKILL, "rebooted"), (signal.SIGTERM, "clock_set_back")],
    ids=["sigkill-rebooted", "sigterm-clock_set_back"],
)
async def test_a_reboot_with_export_from_start_never_counts_twice(
    tmp_path: Path, pg_url: str, sig, how: str
) -> None:
    spool, export = str(tmp_path / "spool.jsonl"), tmp_path / "tetragon.log"
    export.write_bytes(b"")
    first, after, last = OBJS[:THIRD], OBJS[THIRD : 2 * THIRD], OBJS[2 * THIRD :]
    procs: list[Any] = []
    try:
        (tmp_path / "a").mkdir()
        cfg_a, port_a = h.write_config(tmp_path / "a", **_conf(pg_url, spool, export))
        procs.append(h.start_agent(cfg_a))
        await asyncio.to_thread(append, export, lines(first))
        await h.wait_for(lambda: settled(port_a, len(first)), what="A stored the first third")
        procs[0].send_signal(sig)
        code_a, out_a = await asyncio.to_thread(h.finish, procs[0], 60)
        assert code_a == (0 if sig == signal.SIGTERM else -signal.SIGKILL), out_a
        a_done = dt.datetime.now(dt.UTC)
        _as_if(Path(spool + ".alive"), how)
        await asyncio.to_thread(append, export, lines(after))  # Tetragon after the reboot: same file
        (tmp_path / "b").mkdir()
        cfg_b, port_b = h.write_config(tmp_path / "b", **_conf(pg_url, spool, export))
        procs.append(h.start_agent(cfg_b))
        await asyncio.to_thread(append, export, lines(last))
        await h.wait_for(lambda: settled(port_b, len(after) + len(last)), what="B stored the rest")
        procs[1].send_signal(signal.SIGTERM)
        code_b, out_b = await asyncio.to_thread(h.finish, procs[1], 60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert code_b == 0, out_b
    assert "resumed at byte" in out_b, out_b
    assert stored(pg_url) == truth(first, after, last)  # each line once
    # nobody watched the node while it booted (after A's own first hold)
    assert first_hold_and_after(pg_url, a_done), "the reboot is not a gap"
    digest = h.EXPECTED["images"][0]["digest"]
    r = h.cli("query", "observed", "--function", "no_such_fn", "--image", digest, "--store", pg_url)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
