"""A task of the agent that does not end when cancelled holds the shutdown no longer than the grace.

agent/shutdown.py cancels the tasks after the flush loop (metrics poller, pod view, facts, outages,
presence, lifecycle, witness...) and waited for them with no deadline: one deaf to its cancel (a
step shielded from it) held the stop past ``shutdown.graceSeconds``, where the pod's
terminationGracePeriodSeconds kills the agent, maybe in its spool write, and its last drain never
ran. The real agent runs here on an export file and a SQLite store, one of its tasks replaced by one
that swallows its cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from tests.e2e import harness as h
from tests.e2e.export_agents import NODE, OBJS, append, lines, uprobe_counts

GRACE = 1.0


class _Deaf:
    """Stands in for the agent's TetragonFacts task: ignores every cancel until released."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        self.started.set()
        while not self.release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await self.release.wait()


def _agent(tmp_path: Path, node: str = "node-1", grace: float = GRACE) -> tuple[Agent, _Deaf, Path]:
    """The real agent on an export file (read from its end) and a SQLite store, its facts task deaf."""
    (tmp_path / "tetragon.log").write_text("")
    probes = '{"apiVersion": "stellaops.io/v1alpha1", "kind": "ProbeConfig", "policies": {}}'
    (tmp_path / "probes.json").write_text(probes)
    cfg = parse_config(
        {
            "tetragon": {"exportFile": str(tmp_path / "tetragon.log")},
            "native": {"enabled": True, "probeConfigFile": str(tmp_path / "probes.json")},
            "store": {"url": f"sqlite:///{tmp_path}/hs.db"},
            "symbols": {"enabled": False},
            "attribution": {"enabled": False},
            "hotSymbols": {"flushIntervalSeconds": 3600},  # only the last flush stores
            "shutdown": {"graceSeconds": grace},
            "metrics": {"port": 0},
        }
    )
    agent = Agent(cfg, node_name=node)
    assert agent.tetragon_facts is not None
    deaf = _Deaf()
    agent.tetragon_facts = deaf  # type: ignore[assignment]
    return agent, deaf, tmp_path / "tetragon.log"


async def test_a_task_deaf_to_its_cancel_is_left_at_the_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen failing before the fix: the agent had not stopped 3 graces after the stop. Now it stops
    within the grace, says which task it left, and its last flush ran: it exits 0, nothing spooled."""
    agent, deaf, _ = _agent(tmp_path)
    run = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(deaf.started.wait(), 30)
        await h.wait_for(lambda: agent.flusher.store is not None, what="the store open")
        agent.stop("test: stop with a task deaf to its cancel")
        stopped = time.monotonic()
        with caplog.at_level(logging.WARNING):
            await asyncio.wait({run}, timeout=3 * GRACE)  # not cancelled at the timeout: looked at
        assert run.done(), "the agent had not stopped 3 graces after the stop"
        assert time.monotonic() - stopped <= GRACE + 0.5
        assert run.result() == 0 and agent.flusher.spool.spooled_rows == 0
        assert "task(s) tetragon-facts did not end when cancelled" in caplog.text
    finally:
        deaf.release.set()
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def test_the_last_flush_keeps_its_time_when_a_task_is_deaf_to_its_cancel(tmp_path: Path) -> None:
    """The deaf task was waited for until the drain's deadline, so the last flush had no time left:
    it drained nothing, the counts read since the last flush were neither stored nor spooled, the
    agent exited 0 and marked the export position final past their lines, so the next agent resumes
    after them: counts lost (review RNX; seen: 2,135 calls read, 0 stored, 0 spooled). The ending
    tasks now get half of the time left, the last flush the rest: every count read is stored."""
    objs = OBJS[:200]
    agent, deaf, export = _agent(tmp_path, NODE, grace=3.0)  # the flush's half: 1.1 s on a loaded machine
    run = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(deaf.started.wait(), 30)
        await h.wait_for(lambda: agent.flusher.store is not None, what="the store open")
        await h.wait_for(lambda: agent.watch.export.store_position(NODE, "x") is not None, what="the file")
        append(export, lines(objs))
        await h.wait_for(lambda: agent.pipeline.processed >= len(objs), what="the lines processed")
        agent.stop("test: stop with counts to flush and a task deaf to its cancel")
        await asyncio.wait({run}, timeout=10)
        assert run.done() and run.result() == 0
    finally:
        deaf.release.set()
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    assert agent.flusher.spool.spooled_rows == 0
    assert _calls(tmp_path / "hs.db") == sum(uprobe_counts(objs).values()) > 0


def _calls(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        (n,) = con.execute(
            "SELECT COALESCE(SUM(invocation_count), 0) FROM hot_symbols WHERE evidence_kind = 'invoked'"
        ).fetchone()
    finally:
        con.close()
    return int(n)
