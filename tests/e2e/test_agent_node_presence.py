"""A second agent of one node waits for the first to exit: nothing is counted twice.

Probe (s32/h1): two real agents with the same node name over one stream stored
exactly twice every count, and both were ready and exited 0; nothing said so.
Each agent now takes the node's agent lock beside ``store.spoolPath`` before it
is built (agent/node_presence.py). Here two real agent processes share a spool
path, an export file (read from its start) and a store: the second logs that
it waits and reads nothing; once the first is gone (SIGTERM: it stores
everything and leaves its checkpoint; SIGKILL: the kernel drops its lock) the
second starts, resumes after the first's lines and is ready, and the stored
totals are those the first agent stored alone. SIGTERM while waiting is exit 0.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellaops_runtime.agent.node_presence import NodePresence, lock_path
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]

WAITS = "another agent of this node is running"  # the waiting agent's line (agent/node_presence.py)


def readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return 0, {}


def _totals(db: Path) -> tuple[int, int]:
    eng = sa.create_engine(f"sqlite:///{db}")
    with eng.connect() as c:
        n, total = c.execute(
            sa.text("SELECT count(*), coalesce(sum(invocation_count), 0) FROM hot_symbols")
        ).one()
    eng.dispose()
    return int(n), int(total)


async def test_a_second_agent_of_the_node_waits_and_counts_nothing_twice(
    tmp_path: Path, sqlite_at_head
) -> None:
    spool = tmp_path / "node" / "hot.spool"
    spool.parent.mkdir()
    export = tmp_path / "tetragon.log"
    with gzip.open(h.STREAM) as f:
        export.write_bytes(f.read())
    db = tmp_path / "hot.db"
    sqlite_at_head(db)  # at head (tests/conftest.py): the node's agent lock is tested, not the migrations
    cfgs = []
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        cfgs.append(
            h.write_config(
                d,
                tetragon={"exportFile": str(export), "exportFromStart": True},
                store={"url": f"sqlite:///{db}", "spoolPath": str(spool)},
            )
        )
    (cfg_a, port_a), (cfg_b, port_b) = cfgs
    a = h.start_agent(cfg_a)
    b = None
    try:
        await h.wait_for(lambda: readyz(port_a)[0] == 200, what="the first agent ready")
        await h.wait_for(
            lambda: h.metric(h.scrape(port_a), "stellaops_runtime_hot_symbols_flushed_total") > 0,
            what="the first agent's counts stored",
        )
        b = h.start_agent(cfg_b)
        b_out = h.Output(b)
        # It says it waits (a fixed sleep let a slow start find the lock already free).
        await h.wait_for(lambda: b_out.has(WAITS), what="the second agent to say it waits")
        assert b.poll() is None and readyz(port_b) == (0, {})  # no endpoint, nothing read
        a.send_signal(signal.SIGTERM)
        code_a, out_a = await asyncio.to_thread(h.finish, a, 60)
        assert code_a == 0, out_a
        stored = _totals(db)
        assert stored[1] > 0
        await h.wait_for(lambda: readyz(port_b)[0] == 200, what="the second agent ready once alone")
        await asyncio.sleep(2)  # a flush interval: it would have stored the file again by now
        b.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(b_out.finish, 60)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert code == 0, out
    assert WAITS in out, out
    assert _totals(db) == stored, out  # the second agent resumed after the first's lines


async def test_a_waiting_agent_starts_when_the_first_is_killed_and_stops_cleanly_while_waiting(
    tmp_path: Path, sqlite_at_head
) -> None:
    spool = tmp_path / "node" / "hot.spool"
    spool.parent.mkdir()
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"")
    cfgs = []
    for name in ("a", "b", "c"):
        d = tmp_path / name
        d.mkdir()
        cfgs.append(
            h.write_config(
                d,
                tetragon={"exportFile": str(export)},
                store={"url": sqlite_at_head(d / "hot.db"), "spoolPath": str(spool)},
            )
        )
    a = h.start_agent(cfgs[0][0])
    b = c = None
    try:
        await h.wait_for(lambda: readyz(cfgs[0][1])[0] == 200, what="the first agent ready")
        c = h.start_agent(cfgs[2][0])
        c_out = h.Output(c)
        await h.wait_for(lambda: c_out.has(WAITS), what="the third agent to say it waits")
        c.send_signal(signal.SIGTERM)  # stopped while waiting: nothing read, nothing to store
        code_c, out_c = await asyncio.to_thread(c_out.finish, 60)
        assert code_c == 0 and "nothing was read" in out_c, out_c
        b = h.start_agent(cfgs[1][0])
        b_out = h.Output(b)
        await h.wait_for(lambda: b_out.has(WAITS), what="the second agent to say it waits")
        assert readyz(cfgs[1][1]) == (0, {})
        a.send_signal(signal.SIGKILL)  # no clean exit: the kernel releases the lock
        a.wait(30)
        await h.wait_for(lambda: readyz(cfgs[1][1])[0] == 200, what="the second agent ready once alone")
        b.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(b_out.finish, 60)
    finally:
        for p in (a, b, c):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert code == 0, out
    assert "the node's other agent is gone" in out, out


def test_without_a_spool_path_nothing_is_locked(tmp_path: Path) -> None:
    p = NodePresence("")
    assert lock_path("") == "" and p.check() is False and p.other_agent is False


def test_the_lock_is_taken_once_and_a_second_holder_is_refused(tmp_path: Path) -> None:
    spool = str(tmp_path / "hot.spool")
    first, second = NodePresence(spool), NodePresence(spool)
    try:
        assert first.check() and first.check()  # held; checking again keeps it
        assert not second.check() and second.other_agent and second.conflicts == 1
        assert not second.check() and second.conflicts == 1  # one conflict, not one per retry
        first.close()
        assert second.check() and not second.other_agent
    finally:
        first.close()
        second.close()
    assert lock_path(spool) == str(tmp_path / ".hot.spool.agent.lock")


def test_an_agent_built_without_the_wait_reports_the_other_agent(tmp_path: Path) -> None:
    """``Agent`` built in a program (no CLI wait): not ready, other_agent_on_node, the metric at 1."""
    from stellaops_runtime.agent.metrics import AgentCollector
    from stellaops_runtime.agent.runner import Agent
    from stellaops_runtime.contracts.config import parse_config

    spool = str(tmp_path / "hot.spool")
    holder = NodePresence(spool)
    assert holder.check()
    agent = Agent(
        parse_config({"store": {"url": f"sqlite:///{tmp_path}/x.db", "spoolPath": spool}}), node_name="n"
    )
    try:
        assert agent.presence.check() is False
        ready, detail = agent.readiness()
        assert not ready and detail["other_agent_on_node"] is True
        samples = {s.name: s.value for fam in AgentCollector(agent).collect() for s in fam.samples}
        assert samples["stellaops_runtime_node_other_agent"] == 1
    finally:
        agent._worker.shutdown(wait=False)
        holder.close()
        agent.presence.close()


_SIGTERM_AFTER_THE_WAIT_LINE = """
import logging, os, signal, sys
from stellaops_runtime.agent.node_presence import NodePresence, wait_for_node

logging.basicConfig(level=logging.INFO, format="%(message)s")

spool = sys.argv[1]
holder = NodePresence(spool)
assert holder.check()


class Signalled(NodePresence):
    # An operator's SIGTERM that lands right after the agent said it waits for the other one.
    def check(self):
        held = super().check()
        if not held and not getattr(self, "sent", False):
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)
        return held


print("started" if wait_for_node(Signalled(spool), poll=0.05) else "stopped", flush=True)
"""


def test_sigterm_right_after_the_waiting_line_is_a_clean_stop(tmp_path: Path) -> None:
    """The CLI logged that it waits before it took SIGTERM over: a SIGTERM sent on that line (as a
    test or an operator would) could kill it with the default action (-15) instead of exit 0."""
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-c", _SIGTERM_AFTER_THE_WAIT_LINE, str(tmp_path / "hot.spool")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=h.ROOT,
    )
    assert (r.returncode, r.stdout) == (0, "stopped\n"), r.stderr
    assert "another agent of this node is running" in r.stderr
    assert "stopped while waiting for the node's other agent: nothing was read" in r.stderr
