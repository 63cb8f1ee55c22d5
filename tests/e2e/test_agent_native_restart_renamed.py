"""The real agent restarted after a probed binary was renamed away: the old process is still counted.

``mv app app.old`` and a new ``app`` while the agent is down (a node upgrade
by hand, a rollout of the agent meanwhile). The process started from the old
file maps ``app.old``: linked, under another name, nothing ties it to the
target. Before, the restarted agent probed the new ``app`` only, and the old
process's calls went uncounted while its windows said watched. Now the agent
keeps the files it probed beside its spool (``<spoolPath>.native-files``,
native/known_files.py) and the next agent finds the process mapping one of
them and probes it.

The real agent twice, Tetragon unreachable, its BCC probes on the real kernel;
skips with detect.py's reason where BCC cannot run (or without gcc).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from stellaops_runtime.contracts.posture import Posture
from tests.e2e import harness as h
from tests.native_app import ask, compile_c, installed, native_report, serve

pytestmark = [pytest.mark.e2e, pytest.mark.bpf]

P = "stellaops_runtime_"
PROGRAM = r"""
#include <stdio.h>
__attribute__((noipa)) int h5_renamed(int x) { return x + 1; }
int main(void) {
    long s = 0; int n;
    while (scanf("%d", &n) == 1) {  /* a long-running process: calls on request */
        for (int i = 0; i < n; i++) s += h5_renamed(i);
        printf("done\n"); fflush(stdout);
        if (s == -1) return 1;
    }
    return 0;
}
"""


def build(d: Path, name: str, extra: str = "") -> Path:
    return compile_c(d, name, PROGRAM + extra)


def emitted(port: int) -> float:
    return h.metric(h.scrape(port), P + "native_kernel_events_total", probe="uprobe", counter="emitted")


def start(cfg: Path, log: Path) -> subprocess.Popen[str]:
    """The real agent, its output going to ``log`` (read while it runs)."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stellaops_runtime.cli.main", "agent", "--config", str(cfg)],
            stdout=out, stderr=subprocess.STDOUT, text=True, cwd=h.ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )  # fmt: skip


async def run_agent(cfg: Path, port: int, log: Path, work) -> str:  # type: ignore[no-untyped-def]
    """The real agent until ``work`` is done, then SIGTERM: exit 0; its output."""
    agent = await asyncio.to_thread(start, cfg, log)
    try:
        await h.wait_for(
            lambda: h.metric(h.scrape(port), P + "native_connected") == 1, timeout=60, what="probes attached"
        )
        await work()
    finally:
        agent.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(agent.wait, 60)
    text = await asyncio.to_thread(log.read_text)
    assert code == 0, text
    return text


@pytest.fixture
def native_ok() -> None:
    native_report(Posture.EBPF_DEEP, "native uprobes")


async def test_a_binary_renamed_away_while_the_agent_was_down_is_still_counted(
    tmp_path: Path, native_ok: None
) -> None:
    built, app = installed(tmp_path, build)
    db = tmp_path / "hot.db"
    spool = tmp_path / "state" / "spool"
    spool.parent.mkdir()
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": f"127.0.0.1:{h.free_port()}"},  # nobody listens
        store={"url": f"sqlite:///{db}", "spoolPath": str(spool)},
        native={
            "fallbackAfterSeconds": 0.2, "tetragonCheckSeconds": 600, "execEvents": False,
            "userStacks": False, "uprobes": [{"binary": str(app), "symbol": "h5_renamed"}],
        },
    )  # fmt: skip
    old = await asyncio.to_thread(serve, app)
    try:

        async def first() -> None:
            await asyncio.to_thread(ask, old, 2)
            await h.wait_for(lambda: emitted(port) == 2, timeout=60, what="the first agent's calls")

        await run_agent(cfg, port, tmp_path / "first.log", first)
        assert await asyncio.to_thread(os.path.isfile, str(spool) + ".native-files")
        app.rename(app.with_name("app.old"))  # while no agent runs
        shutil.copy2(build(built, "v2", "/* v2 */\n"), app)
        log = tmp_path / "second.log"

        def probed() -> bool:  # the load's scan found the old process's file and probed it
            text = log.read_text()
            return f"renamed former file of {app} run by pid {old.pid} is probed too" in text

        async def second() -> None:
            await h.wait_for(probed, timeout=60, what="the renamed file probed")
            await asyncio.to_thread(ask, old, 3)
            await h.wait_for(lambda: emitted(port) == 3, timeout=60, what="each call counted")

        await run_agent(cfg, port, log, second)
    finally:
        if old.stdin is not None:
            old.stdin.close()
        old.wait(30)
    with sqlite3.connect(db) as c:
        got = c.execute(
            "SELECT SUM(invocation_count) FROM hot_symbols WHERE function_name = 'h5_renamed'"
        ).fetchone()[0]
    assert got == 2 + 3, got  # both agents' calls stored, each once
