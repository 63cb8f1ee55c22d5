"""A first agent replaying an export file that already existed, killed before its first stored flush.

Defect (s46 ER/RER "left alone" 1, s47/EX): the node's first agent A, with ``exportFromStart``,
reads a file whose lines Tetragon wrote before A started. A's flushes commit, but A never hears
so (the proxy swallows every COMMIT's reply), and it is killed: its watch record holds only an
in-flight checkpoint, with A's start as its moment (nothing stored was ever claimed). The next
agent B resumes after the lines in doubt (they may be stored: never counted twice) and marked the
time since A's start as a gap, but those lines carry times from before A started: outside that
gap, and outside A's hold about the file's first line when the file spans more than that hold.
A question over their time read watched, and answered "not observed" for a function nobody can
say was not called then. Now the record's moment, while nothing of a replay is claimed stored,
is the earliest time a replayed line can carry (the first line's, less the event cache's hold):
B's gap starts there and covers every line in doubt.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from pgproxy import PgProxy

from tests.e2e import harness as h
from tests.e2e.export_agents import NODE, OBJS, THIRD, append, conf, kill_all, none_gaps, stored, truth
from tests.e2e.test_agent_restart_gap import merged

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def stamped(objs: list[dict[str, Any]], at: dt.datetime) -> bytes:
    """The stream objects as export lines of the agent's node, timed ``at``."""
    when = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return b"".join(json.dumps({**o, "node_name": NODE, "time": when}).encode() + b"\n" for o in objs)


def in_flight_only(spool: str) -> bool:
    try:
        export = json.loads(Path(spool + ".alive").read_bytes()).get("export") or {}
    except (OSError, ValueError):
        return False
    return export.get("committed") is None and export.get("in_flight") is not None


async def test_a_replay_killed_before_its_first_stored_flush_leaves_its_lines_in_a_gap(
    tmp_path: Path, pg_url: str, proxy: PgProxy
) -> None:
    spool, export = str(tmp_path / "spool.jsonl"), tmp_path / "tetragon.log"
    now = dt.datetime.now(dt.UTC)
    early, late = now - dt.timedelta(minutes=10), now - dt.timedelta(minutes=5)
    first, second, rest = OBJS[:THIRD], OBJS[THIRD : 2 * THIRD], OBJS[2 * THIRD :]
    export.write_bytes(stamped(first, early) + stamped(second, late))  # written before any agent ran
    proxy.drop_commit_acks = 1_000_000
    procs: list[Any] = []
    try:
        (tmp_path / "a").mkdir()
        cfg_a, _ = h.write_config(tmp_path / "a", **conf(proxy.url(pg_url), spool, export))
        procs.append(h.start_agent(cfg_a))
        want = truth(first, second)  # every flush commits, though A never hears so
        await h.wait_for(lambda: stored(pg_url) == want, what="A's counts committed")
        await h.wait_for(lambda: in_flight_only(spool), what="A's record: in flight, nothing committed")
        procs[0].kill()
        code_a, out_a = await asyncio.to_thread(h.finish, procs[0], 60)
        assert code_a == -signal.SIGKILL, out_a
        (tmp_path / "b").mkdir()
        cfg_b, _ = h.write_config(tmp_path / "b", **conf(pg_url, spool, export))
        procs.append(h.start_agent(cfg_b))
        await asyncio.to_thread(append, export, stamped(rest, dt.datetime.now(dt.UTC)))
        await h.wait_for(lambda: stored(pg_url) == truth(first, second, rest), what="B stored the rest")
        procs[1].send_signal(signal.SIGTERM)
        code_b, out_b = await asyncio.to_thread(h.finish, procs[1], 60)
    finally:
        kill_all(procs)
    assert code_b == 0, out_b
    assert "resumed at byte" in out_b, out_b
    assert stored(pg_url) == truth(first, second, rest)  # never twice
    digest = h.EXPECTED["images"][0]["digest"]
    minute = dt.timedelta(seconds=60)
    since, until = (late - minute).isoformat(), (late + minute).isoformat()
    r = h.cli(
        "query", "observed", "--function", "no_such_fn", "--image", digest, "--store", pg_url,
        "--since", since, "--until", until,
    )  # fmt: skip
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)  # unknown, not "not observed"
    # Every line in doubt (stamped 10 and 5 minutes before A started) lies in one node-wide gap.
    spans = merged(none_gaps(pg_url))
    assert any(a <= early and late <= b for a, b in spans), (early, late, spans)
