"""A uprobe call in flight when the probes detach is counted once, at its entry, not lost.

A uprobe call is emitted at its return, by the load whose entry program kept
its start (probes/uprobes.py). A call entered while the probes ran and
returning after they detached (a stop, a reload, a switch to Tetragon) was
counted by nobody, and no gap said so: a long-running function (a server's
loop entered once) read "not observed" over its window. Now the probes'
last read, after the uprobes are detached, turns every call left in the map
into an event at its entry time (no latency: it had not returned).

Real BPF: a program calls ``stella_block`` (which waits for a file), the probes
stop while it waits, then it returns: one event, that process's, no latency.
A call made and returned while the probes run is counted once as before.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from stellaops_runtime.contracts.events import EventKind
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.session import run_session
from tests.native_app import compile_c, native_report

SOURCE = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((noinline)) int stella_block(const char *gate) {
    while (access(gate, F_OK) != 0) usleep(2000);
    return 7;
}
int main(int argc, char **argv) {
    int r = stella_block(argv[1]);  /* returns at once when the gate exists */
    printf("entered\n");
    fflush(stdout);
    return stella_block(argv[2]) == 7 ? 0 : 1;  /* waits for the second gate */
}
"""


def test_a_call_in_flight_at_the_stop_is_counted_once_at_its_entry(tmp_path: Path) -> None:
    rep = native_report(Posture.EBPF_DEEP, "native uprobes")
    app = compile_c(tmp_path, "blocker", SOURCE)
    first, second = tmp_path / "first", tmp_path / "second"
    first.touch()
    procs: list[subprocess.Popen[str]] = []
    entered: list[int] = []

    def during() -> None:
        p = subprocess.Popen([str(app), str(first), str(second)], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline() == "entered\n"  # first call returned
        time.sleep(0.1)  # inside the second call (it polls its gate every 2 ms)
        entered.append(time.time_ns())

    cfg = NativeConfig(
        exec_events=False, user_stacks=False, uprobes=(UprobeTarget(str(app), "stella_block"),)
    )
    try:
        res = asyncio.run(run_session(cfg, seconds=0.2, report=rep, during=during))
    finally:
        second.touch()  # the second call returns now, after the probes were detached
        for p in procs:
            p.wait(30)
    assert procs and procs[0].returncode == 0
    calls = [ev for ev in res.events if ev.kind is EventKind.UPROBE and ev.process.pid == procs[0].pid]
    assert len(calls) == 2, [(ev.timestamp_ns, ev.latency_ns) for ev in calls]
    returned, in_flight = sorted(calls, key=lambda ev: ev.latency_ns is None)
    assert returned.latency_ns is not None and returned.latency_ns >= 0
    assert in_flight.latency_ns is None  # it had not returned when the probes stopped
    assert in_flight.function_name == "stella_block" and in_flight.module == str(app)
    assert in_flight.timestamp_ns <= entered[0]  # filed at its entry, not at the stop
