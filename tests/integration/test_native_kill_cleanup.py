"""Probes attached by a process that is killed (SIGKILL) or stopped (SIGTERM) leave nothing behind.

BCC attaches uprobes and USDT probes through perf events (the uprobe PMU), not
tracefs ``uprobe_events``: the kernel removes them when the last descriptor
closes, which a killed process's exit does. The evidence, on the real
kernel: a USDT probe's semaphore (raised by the kernel for each attached
probe, ``ref_ctr_offset``) in a process that runs throughout goes up while
``stella-runtime probes run`` is attached and back to 0 once it is killed or
stopped, and ``uprobe_events`` holds nothing of ours. Skips, with detect.py's
reason, where BCC cannot run (or without gcc).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.detect import Report
from tests.native_app import native_report

pytestmark = pytest.mark.bpf

PROGRAM = r"""
#include <stdio.h>
__attribute__((section(".probes"))) volatile unsigned short h8_app_tick_semaphore = 0;
#define H8_PROBE(a) __asm__ __volatile__ (                                              \
    "990: nop\n"                                                                        \
    ".pushsection .note.stapsdt,\"?\",\"note\"\n"                                       \
    ".balign 4\n"                                                                       \
    ".4byte 992f-991f, 994f-993f, 3\n"                                                  \
    "991: .asciz \"stapsdt\"\n"                                                         \
    "992: .balign 4\n"                                                                  \
    "993: .8byte 990b\n"                                                                \
    ".8byte _.stapsdt.base\n"                                                           \
    ".8byte h8_app_tick_semaphore\n"                                                    \
    ".asciz \"h8_app\"\n"                                                               \
    ".asciz \"tick\"\n"                                                                 \
    ".asciz \"-4@%0\"\n"                                                                \
    "994: .balign 4\n"                                                                  \
    ".popsection\n"                                                                     \
    ".ifndef _.stapsdt.base\n"                                                          \
    ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n"             \
    ".weak _.stapsdt.base\n"                                                            \
    ".hidden _.stapsdt.base\n"                                                          \
    "_.stapsdt.base: .space 1\n"                                                        \
    ".size _.stapsdt.base, 1\n"                                                         \
    ".popsection\n"                                                                     \
    ".endif\n"                                                                          \
    :: "r"(a))
int main(void) {  /* each line read: fire the probe if raised, print the semaphore */
    char line[16];
    while (fgets(line, sizeof line, stdin)) {
        if (h8_app_tick_semaphore) H8_PROBE(1);
        printf("%u\n", (unsigned)h8_app_tick_semaphore);
        fflush(stdout);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def report() -> Report:
    return native_report(Posture.FULL_INSTRUMENTATION, "native USDT probes")


def semaphore(app: subprocess.Popen[str]) -> int:
    assert app.stdin is not None and app.stdout is not None
    app.stdin.write("?\n")
    app.stdin.flush()
    return int(app.stdout.readline())


def wait_semaphore(app: subprocess.Popen[str], pred, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 90  # the CLI compiles the probes first
    while not pred(semaphore(app)):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def uprobe_events() -> str:
    for d in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        with_events = os.path.join(d, "uprobe_events")
        if os.path.exists(with_events):
            with open(with_events) as f:
                return f.read()
    return ""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_or_stopped_probe_run_leaves_no_probe_behind(
    report: Report, tmp_path: Path, sig: signal.Signals
) -> None:
    (tmp_path / "app.c").write_text(PROGRAM)
    prog = tmp_path / "h8_usdt_app"
    subprocess.run(["gcc", "-O1", "-o", str(prog), str(tmp_path / "app.c")], check=True)
    app = subprocess.Popen([str(prog)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    cli = None
    try:
        assert semaphore(app) == 0
        before = uprobe_events()
        cli = subprocess.Popen(
            [sys.executable, "-m", "stellaops_runtime.cli.main", "probes", "run", "--seconds", "300",
             "--usdt", f"{prog}:h8_app:tick", "--uprobe", f"{prog}:main"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_semaphore(app, lambda v: v > 0, "the probe attached (semaphore raised)")
        cli.send_signal(sig)
        cli.wait(60)
        wait_semaphore(app, lambda v: v == 0, "the probe gone (semaphore back to 0)")
        assert uprobe_events() == before  # nothing of ours in tracefs, then or now
    finally:
        if cli is not None and cli.poll() is None:
            cli.kill()
            cli.wait()
        if app.stdin is not None:
            app.stdin.close()
        app.wait(10)
