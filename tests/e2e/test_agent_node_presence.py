"""A second agent of one node is loud: an error, a metric and /readyz 503 until the first is gone.

Probe (s32/h1): two real agents with the same node name over one stream stored
exactly twice every count, and both were ready and exited 0; nothing said so.
Each agent now holds the node's agent lock beside ``store.spoolPath``
(agent/node_presence.py). Here two real agent processes share a spool path;
the second reports ``stellaops_runtime_node_other_agent 1`` and ``/readyz``
503 (``other_agent_on_node``), the first stays ready, and once the first is
killed (SIGKILL: the kernel drops its lock) the second takes the lock and is
ready.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stellaops_runtime.agent.node_presence import NodePresence, lock_path
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]

OTHER = "stellaops_runtime_node_other_agent"


def readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return 0, {}


def _config(tmp: Path, name: str, spool: Path, export: Path) -> tuple[Path, int]:
    d = tmp / name
    d.mkdir()
    return h.write_config(
        d,
        tetragon={"exportFile": str(export)},
        store={"url": f"sqlite:///{d}/hot.db", "spoolPath": str(spool)},
    )


async def test_a_second_agent_of_the_node_is_not_ready_until_the_first_is_gone(tmp_path: Path) -> None:
    spool = tmp_path / "node" / "hot.spool"
    spool.parent.mkdir()
    export = tmp_path / "tetragon.log"
    export.write_bytes(b"")
    cfg_a, port_a = _config(tmp_path, "a", spool, export)
    cfg_b, port_b = _config(tmp_path, "b", spool, export)
    a = h.start_agent(cfg_a)
    b = None
    try:
        await h.wait_for(lambda: readyz(port_a)[0] == 200, what="the first agent ready")
        assert h.metric(h.scrape(port_a), OTHER) == 0
        b = h.start_agent(cfg_b)
        await h.wait_for(lambda: h.metric(h.scrape(port_b), OTHER) == 1, what="the second agent says so")
        code, detail = readyz(port_b)
        assert code == 503 and detail["other_agent_on_node"] is True, detail
        code, detail = readyz(port_a)
        assert code == 200 and detail["other_agent_on_node"] is False, detail
        a.send_signal(signal.SIGKILL)  # no clean exit: the kernel releases the lock
        a.wait(30)
        await h.wait_for(lambda: readyz(port_b)[0] == 200, what="the second agent ready once alone")
        assert h.metric(h.scrape(port_b), OTHER) == 0
        b.send_signal(signal.SIGTERM)
        code, out = h.finish(b, 60)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert code == 0, out
    assert "another agent of this node is running" in out, out
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
