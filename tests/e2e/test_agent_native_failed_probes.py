"""A native probe that cannot attach is counted and named; the other probes keep counting.

The real agent, Tetragon unreachable, falls back to its BCC probes on the real
kernel with three uprobes: one on a function of a program built here, one on a
symbol that program lacks, one on a binary that does not exist. Then:

- ``stellaops_runtime_native_probes{state}`` says 1 attached and 2 failed
  (before, nothing but a log line said a probe was missing: the metrics and
  ``/readyz`` looked the same as with every probe attached);
- the log names each failed probe with its reason;
- the attached probe counts every call of its function, stored;
- ``/readyz`` is ready (the source delivers) and names the source;
- after SIGTERM the agent exits 0.

Skips, with detect.py's reason, where BCC cannot run (or without gcc).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import subprocess
import urllib.request
from pathlib import Path

import pytest

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.detect import detect
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.bpf]

P = "stellaops_runtime_"
CALLS = 7
PROGRAM = r"""
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline)) int h8_target(int x) { return x * 3; }
int main(int argc, char **argv) {
    long s = 0;
    for (int i = 0; i < atoi(argv[1]); i++) s += h8_target(i);
    usleep(200000);
    return s == 12345;
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=str(Path(".cache/native").resolve()))
    if rep.posture < Posture.EBPF_DEEP:
        pytest.skip(f"native uprobes cannot run here: {rep.missing}")
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("failed-probes")
    (d / "h8_target.c").write_text(PROGRAM)
    out = d / "h8_target"
    subprocess.run(
        ["gcc", "-O1", "-fno-omit-frame-pointer", "-o", str(out), str(d / "h8_target.c")], check=True
    )
    return out


def readyz(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
        return json.loads(r.read())


async def test_probes_that_cannot_attach_are_counted_and_named_and_the_others_count(
    tmp_path: Path, program: Path
) -> None:
    db = tmp_path / "hot.db"
    missing_bin = tmp_path / "no-such-binary"
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": f"127.0.0.1:{h.free_port()}"},  # nobody listens
        store={"url": f"sqlite:///{db}"},
        native={
            "fallbackAfterSeconds": 0.2, "tetragonCheckSeconds": 600, "execEvents": False,
            "uprobes": [
                {"binary": str(program), "symbol": "h8_target"},
                {"binary": str(program), "symbol": "h8_no_such_symbol"},
                {"binary": str(missing_bin), "symbol": "main"},
            ],
        },
    )  # fmt: skip
    agent = h.start_agent(cfg)
    try:
        await h.wait_for(
            lambda: h.metric(h.scrape(port), P + "native_connected") == 1, timeout=60, what="probes attached"
        )
        m = h.scrape(port)
        assert h.metric(m, P + "native_probes", state="attached") == 1
        assert h.metric(m, P + "native_probes", state="failed") == 2
        await asyncio.to_thread(subprocess.run, [str(program), str(CALLS)], check=True)
        await h.wait_for(
            lambda: (
                h.metric(h.scrape(port), P + "native_kernel_events_total", probe="uprobe", counter="emitted")
                == CALLS
            ),
            timeout=60,
            what="every call emitted",
        )
        ready = await asyncio.to_thread(readyz, port)
        assert ready["ready"] is True and ready["source"] == "bcc", ready
    finally:
        agent.send_signal(signal.SIGTERM)
        code, out = await asyncio.to_thread(h.finish, agent, 60)
    assert code == 0, out
    assert "Traceback" not in out, out
    assert f"native probe {program}:h8_no_such_symbol not attached: symbol h8_no_such_symbol not found" in out
    assert f"native probe {missing_bin}:main not attached: binary {missing_bin} not found" in out
    with sqlite3.connect(db) as c:
        got = c.execute(
            "SELECT SUM(invocation_count) FROM hot_symbols WHERE function_name = 'h8_target'"
        ).fetchone()[0]
    assert got == CALLS
