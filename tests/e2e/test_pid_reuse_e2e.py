"""The agent never names an event's frames from the files of a younger process that holds its pid.

The CI failure this comes from: tests/e2e/test_agent_restart_gap.py streamed events whose pids
were held, on the CI machine, by live processes started long after the events' processes; the
agent read those processes' libcrypto and stored ``RC2_cbc_encrypt`` and ``0x1f66e0`` where the
events said ``SSL_CTX_new``. On a node the same happens whenever a process exits and its pid is
handed to another (another container's) before the agent reads the frames.

The real agent (subprocess) reads an export file into SQLite with this machine's real /proc: two
live ``sleep`` processes hold two pids; the events of one claim an older process of its pid (the
exec_id's ktime is a microsecond after boot), those of the other are its own (ktime now). The
first's frames keep the events' names; the second's are resolved in its own libc.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.e2e import harness as h
from tests.integration.test_pid_reuse_frames import function_offset, holder, libc_of

pytestmark = [pytest.mark.e2e]

DIGEST = "sha256:" + "5e" * 32
_ = holder  # the fixture, used by name below


def kprobe(n: int, pid: int, ktime: int, libc: str, offset: int) -> dict[str, Any]:
    return {
        "process_kprobe": {
            "process": {
                "exec_id": base64.b64encode(f"e2e-node:{ktime}:{pid}".encode()).decode(),
                "pid": pid,
                "binary": "/usr/bin/sleep",
                "start_time": "2026-12-04T09:00:00Z",
                "pod": {
                    "namespace": "shop",
                    "name": f"p-{pid}",
                    "container": {
                        "id": "containerd://" + f"{pid:064x}",
                        "name": "app",
                        "image": {
                            "id": f"registry.example.com/app@{DIGEST}",
                            "name": "registry.example.com/app:1",
                        },
                    },
                },
            },
            "function_name": "__x64_sys_read",
            "policy_name": "stellaops-syscalls",
            "user_stack_trace": [{"module": libc, "offset": offset, "symbol": "SSL_CTX_new"}],
        },
        "node_name": "e2e-node",
        "time": f"2026-12-04T09:00:0{n}.000000Z",
    }


def test_frames_of_an_older_process_of_a_live_pid_keep_their_names(
    tmp_path: Path, holder, sqlite_at_head: Callable[[Path], str]
) -> None:
    own = subprocess.Popen(["sleep", "120"])
    try:
        deadline = time.monotonic() + 30
        while not Path(f"/proc/{own.pid}/maps").read_text().count("libc"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        libc = libc_of(holder.pid)
        assert libc_of(own.pid) == libc
        off = function_offset(libc, "getaddrinfo")
        now = time.monotonic_ns()
        lines = [kprobe(n, holder.pid, 1_000, libc, off) for n in range(3)]
        lines += [kprobe(n, own.pid, now, libc, off) for n in range(3, 5)]
        export = tmp_path / "export.jsonl"
        export.write_text("".join(json.dumps(o) + "\n" for o in lines))
        url = sqlite_at_head(tmp_path / "hot.db")  # at head (tests/conftest.py): not a migration test
        cfg, port = h.write_config(
            tmp_path,
            tetragon={"exportFile": str(export), "exportFromStart": True},
            store={"url": url},
            symbols={"parseWaitMilliseconds": 20_000},
            attribution={"enabled": False},
        )
        # Stopped by SIGTERM once every line is processed: the shutdown flush stores the counts
        # (--exit-when-idle 3 sat 3 s idle first).
        agent = h.start_agent(cfg)
        try:
            m: dict[Any, float] = {}
            deadline = time.monotonic() + 90
            while h.metric(m, h.PROCESSED) < len(lines):
                assert agent.poll() is None and time.monotonic() < deadline, "events not processed in time"
                time.sleep(0.05)
                m = h.scrape(port) or m
            agent.send_signal(signal.SIGTERM)
            code, out = h.finish(agent, timeout=90)
        finally:
            if agent.poll() is None:
                agent.kill()
    finally:
        own.kill()
        own.wait()
    assert code == 0, out
    eng = sa.create_engine(url)
    with eng.connect() as c:
        rows = c.execute(
            sa.text(
                "SELECT function_name, SUM(invocation_count) FROM hot_symbols "
                "WHERE evidence_kind = 'on_stack' AND module = :m GROUP BY 1"
            ),
            {"m": libc},
        )
        got = {f: int(n) for f, n in rows}
    eng.dispose()
    # the older process's three events keep the name they came with; the live process's two are its own
    assert got == {"SSL_CTX_new": 3, "getaddrinfo": 2}, got
    ops = {
        dict(lb).get("op"): v for (name, lb), v in m.items() if name.endswith("symbolizer_operations_total")
    }
    assert ops.get("pid_reused", 0) >= 1, ops
