"""The export file rotated while no agent ran: the rotated file's unread lines are read, or a gap.

Defect (s33/h3): an agent that restarted after Tetragon rotated its export file (lumberjack
renames ``tetragon.log`` to ``tetragon-<time>.log`` and starts a new file) found another
file at the path, so the last agent's checkpoint was not used: the lines written to the
rotated file after it, and the new file's lines written before the agent opened it, were
never read (only a gap said so; with the default ``exportFromStart: false`` every line of
the new file written while no agent ran was skipped too). Now the checkpoint's file found
beside the path is read on from the checkpoint, then the new file from its first line: no
line lost, none twice, no gap. When that is not certain (two rotations meanwhile, the
rotated file compressed or deleted) the hole stays a gap, as before.

Real agents as subprocesses, a real PostgreSQL, the synthetic stream
(tests/fixtures/tetragon/synthetic, copied from /work/shared/fixtures/tetragon).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness as h
from tests.e2e.export_agents import (
    OBJS,
    THIRD,
    append,
    first_hold_and_after,
    lines,
    only_first_hold,
    settled,
    stored,
    truth,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _rotate(export: Path, name: str, *, compress: bool = False) -> None:
    """Tetragon's rotation (lumberjack): rename aside, a new empty file at the path; with
    ``exportFileCompress`` the rotated file is then gzipped and removed."""
    rotated = export.with_name(name)
    export.rename(rotated)
    export.write_bytes(b"")
    if compress:
        rotated.with_name(name + ".gz").write_bytes(gzip.compress(rotated.read_bytes()))
        rotated.unlink()


HOUR_NS = 3600 * 10**9


def _clock_stepped_back(export: Path, spool: str) -> None:
    """As if the wall clock stepped back an hour between the two rotations while no agent ran:
    the second rotated file was last written half an hour "before" the first, and A's record
    is an hour ahead of the clock (its boot-clock time is what it was)."""
    first, second = (export.with_name(f"tetragon-2026-12-05T05-0{i}-00.000.log") for i in (0, 1))
    t = first.stat().st_mtime_ns - HOUR_NS // 2
    os.utime(second, ns=(t, t))
    record = Path(spool + ".alive")
    doc = json.loads(record.read_bytes())
    doc["alive_ns"] += HOUR_NS
    record.write_text(json.dumps(doc))


async def _run(
    tmp_path: Path, pg_url: str, sig: signal.Signals, rotations: int, compress: bool, stepped: bool = False
) -> Any:
    spool, export = str(tmp_path / "spool.jsonl"), tmp_path / "tetragon.log"
    export.write_bytes(b"")
    first, hole, last = OBJS[:THIRD], OBJS[THIRD : 2 * THIRD], OBJS[2 * THIRD :]
    conf = {"store": {"url": pg_url, "spoolPath": spool}, "tetragon": {"exportFile": str(export)}}
    procs: list[Any] = []
    try:
        (tmp_path / "a").mkdir()
        cfg_a, port_a = h.write_config(tmp_path / "a", **conf)
        began = dt.datetime.now(dt.UTC)
        procs.append(h.start_agent(cfg_a))
        await h.wait_for(lambda: h.metric(h.scrape(port_a), "stellaops_runtime_tetragon_connected") == 1)
        await asyncio.to_thread(append, export, lines(first))
        await h.wait_for(lambda: settled(port_a, len(first)), what="A stored the first third")
        procs[0].send_signal(sig)
        code_a, out_a = await asyncio.to_thread(h.finish, procs[0], 60)
        assert code_a == (0 if sig == signal.SIGTERM else -signal.SIGKILL), out_a
        until = dt.datetime.now(dt.UTC)  # A's hold (the node's first agent) ends before this
        # While no agent runs: lines to the file A followed, then rotation(s), lines to the new file.
        parts = [hole[i :: rotations + 1] for i in range(rotations + 1)]
        for i, part in enumerate(parts):
            await asyncio.to_thread(append, export, lines(part))
            if i < rotations:
                _rotate(export, f"tetragon-2026-12-05T05-0{i}-00.000.log", compress=compress)
        if stepped:
            _clock_stepped_back(export, spool)
        (tmp_path / "b").mkdir()
        cfg_b, port_b = h.write_config(tmp_path / "b", **conf)
        procs.append(h.start_agent(cfg_b))
        await h.wait_for(lambda: h.metric(h.scrape(port_b), "stellaops_runtime_tetragon_connected") == 1)
        await asyncio.to_thread(append, export, lines(last))
        await h.wait_for(lambda: settled(port_b, len(last)), what="B stored the last third")
        procs[1].send_signal(signal.SIGTERM)
        code_b, out_b = await asyncio.to_thread(h.finish, procs[1], 60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert code_b == 0, out_b
    return first, hole, last, out_b, (began, until)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_one_rotation_while_stopped_is_read_whole(tmp_path: Path, pg_url: str, sig) -> None:
    first, hole, last, out_b, a_moments = await _run(tmp_path, pg_url, sig, rotations=1, compress=False)
    assert "reading the rotated file first" in out_b and "resumed at byte" in out_b, out_b
    assert stored(pg_url) == truth(first, hole, last)  # none lost, none twice
    if sig == signal.SIGTERM:  # nothing was in doubt: the hole was read, no gap but A's first hold
        only_first_hold(pg_url, *a_moments)


@pytest.mark.parametrize(
    ("rotations", "compress", "stepped"),
    [(2, False, False), (1, True, False), (2, False, True)],
    ids=["twice", "compressed", "twice-clock_stepped_back"],
)
async def test_a_rotation_not_certain_to_be_the_only_one_stays_a_gap(
    tmp_path: Path, pg_url: str, rotations: int, compress: bool, stepped: bool
) -> None:
    """Defect (s34/h4) for ``twice-clock_stepped_back``: the clock stepped back between the two
    rotations, so the second rotated file looked older than the one A followed; B read that one
    on and then the current file, and the second rotated file's lines were lost with no gap.
    The rotated files' order now holds only beyond the clock's step since A's record."""
    first, _, last, out_b, a_moments = await _run(
        tmp_path, pg_url, signal.SIGTERM, rotations, compress, stepped
    )
    assert "reading the rotated file first" not in out_b, out_b
    assert stored(pg_url) == truth(first, last)  # the hole's lines are not read: none twice
    assert first_hold_and_after(pg_url, a_moments[1]), out_b  # ... and the time they cover is a gap
    digest = h.EXPECTED["images"][0]["digest"]
    r = h.cli("query", "observed", "--function", "no_such_fn", "--image", digest, "--store", pg_url)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
