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
import time
from pathlib import Path

import pytest

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config

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


async def test_a_task_deaf_to_its_cancel_is_left_at_the_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen failing before the fix: the agent had not stopped 3 graces after the stop. Now it stops
    within the grace, says which task it left, and its last flush ran: it exits 0, nothing spooled."""
    (tmp_path / "tetragon.log").write_text("")
    (tmp_path / "probes.json").write_text('{"apiVersion": "stellaops.io/v1alpha1", "policies": {}}')
    cfg = parse_config(
        {
            "tetragon": {"exportFile": str(tmp_path / "tetragon.log")},
            "native": {"enabled": True, "probeConfigFile": str(tmp_path / "probes.json")},
            "store": {"url": f"sqlite:///{tmp_path}/hs.db"},
            "symbols": {"enabled": False},
            "attribution": {"enabled": False},
            "shutdown": {"graceSeconds": GRACE},
            "metrics": {"port": 0},
        }
    )
    agent = Agent(cfg, node_name="node-1")
    assert agent.tetragon_facts is not None
    deaf = _Deaf()
    agent.tetragon_facts = deaf  # type: ignore[assignment]
    run = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(deaf.started.wait(), 30)
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
