"""The agent's own loop runs ``asyncio.to_thread`` calls on daemon threads that its exit does not wait for.

Review RTJ (s45) of 51f97b63: agent/runner.py makes a ``daemon_pool.DaemonPool`` its loop's default
executor, so a side call it gave up on (BCC's detection, the probe ConfigMap's ``binaryPath`` facts,
a DNS lookup of asyncio's streams) cannot hold ``asyncio.run``'s end and the process's exit. The e2e
test of that promise (tests/e2e/test_agent_exit_hung_thread.py) hangs a kube credential plugin,
which runs on a daemon thread of its own since d322fac8, so nothing tested the agent's default
executor any more: with it removed every test still passed. Here the real agent runs on the test's
loop, a call on that loop's default executor hangs (a ``recv`` nobody answers) and is given up, and
the loop's executor shutdown (what ``asyncio.run`` awaits at its end) must return.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from tests.e2e import harness as h


@pytest.fixture()
def quiet_socket() -> Iterator[socket.socket]:
    """One end of a socket pair: its ``recv`` blocks until the test ends (then it returns)."""
    a, b = socket.socketpair()
    try:
        yield a
    finally:
        b.send(b"x")  # lets the hung call return, so no thread outlives the test
        b.close()
        a.close()


async def test_a_call_the_agent_gave_up_on_does_not_hold_its_loop_s_end(
    tmp_path: Path, quiet_socket: socket.socket, sqlite_at_head
) -> None:
    export = tmp_path / "tetragon.log"
    export.write_text("".join(json.dumps(o) + "\n" for o in h.stream_objects()[:5]))
    cfg = parse_config(
        {
            "tetragon": {"exportFile": str(export), "exportFromStart": True},
            "store": {"url": sqlite_at_head(tmp_path / "hot.db")},
            "metrics": {"address": "127.0.0.1", "port": 0},
            "native": {"enabled": False},
            "lifecycle": {"enabled": False},
            "shutdown": {"graceSeconds": 3},
        }
    )
    agent = Agent(cfg, node_name="n1")
    run = asyncio.ensure_future(agent.run())
    await asyncio.sleep(0)  # run() sets the loop's default executor before its first await
    loop = asyncio.get_running_loop()
    assert await asyncio.to_thread(lambda: threading.current_thread().daemon) is True
    with pytest.raises(TimeoutError):  # given up: the recv goes on in its thread
        await asyncio.wait_for(asyncio.to_thread(quiet_socket.recv, 1), 0.1)
    agent.stop("test")
    assert await asyncio.wait_for(run, 30) == 0
    # asyncio.run's end: with a plain ThreadPoolExecutor this waits for the recv for ever
    await asyncio.wait_for(loop.shutdown_default_executor(), 5)
