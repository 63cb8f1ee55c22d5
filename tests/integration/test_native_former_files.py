"""Files replaced before the probes load: the processes still running them are probed.

A process started from a binary that an upgrade then replaced runs the
deleted old file; a load of the probes after that (an agent restart, a
reload) attached to the new file only, and the old process's calls went
uncounted while the window said watched. Now the load finds the deleted file
through /proc and probes it too, each call once. And a file replaced between
the load's look and its attach is probed once, not twice.

The real source on the real kernel, with BCC; skips with detect.py's reason
elsewhere, or without gcc. The harness here (Probes, the USDT program) serves
test_native_usdt_follow.py and test_native_overlay_rewrite.py too.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from stellaops_runtime.contracts.events import EventKind
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import Report
from stellaops_runtime.native.events import Decoder
from stellaops_runtime.native.session import run_session
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue
from tests.integration.test_native_replaced_binary import SYMBOL, build, report
from tests.native_app import ask, installed, replace, serve, stop

pytestmark = pytest.mark.bpf
__all__ = ["report"]  # the module's fixture, used here

USDT_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((section(".probes"))) volatile unsigned short h7_app_hit_semaphore = 0;
#define H7_PROBE(a) __asm__ __volatile__ (                                              \
    "990: nop\n"                                                                        \
    ".pushsection .note.stapsdt,\"?\",\"note\"\n"                                       \
    ".balign 4\n"                                                                       \
    ".4byte 992f-991f, 994f-993f, 3\n"                                                  \
    "991: .asciz \"stapsdt\"\n"                                                         \
    "992: .balign 4\n"                                                                  \
    "993: .8byte 990b\n"                                                                \
    ".8byte _.stapsdt.base\n"                                                           \
    ".8byte h7_app_hit_semaphore\n"                                                     \
    ".asciz \"h7_app\"\n"                                                               \
    ".asciz \"hit\"\n"                                                                  \
    ".asciz \"ARGS\"\n"                                                                 \
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
PADDING
static int fire(int n) {
    int fired = 0;
    for (int i = 0; i < n; i++) if (h7_app_hit_semaphore) { H7_PROBE((long)i); fired++; }
    return fired;
}
int main(int argc, char **argv) {
    int n;
    if (argc > 1) { printf("%d\n", fire(atoi(argv[1]))); return 0; }
    while (scanf("%d", &n) == 1) { printf("%d\n", fire(n)); fflush(stdout); }
    return 0;
}
"""


def build_usdt(d: Path, name: str, *, padding: int = 0, args: str = "8@%0") -> Path:
    """The USDT program; ``padding`` functions before it move every address of the file."""
    pad = "".join(f"__attribute__((used, noinline)) int h7_pad{i}(int x) {{ return x * {i + 3}; }}\n"
                  for i in range(padding))  # fmt: skip
    return build(d, name, USDT_PROGRAM.replace("PADDING", pad).replace("ARGS", args))


class Probes:
    """The real source in-process; uprobe calls (of ``symbol``) and USDT hits counted per (pid, module)."""

    def __init__(self, cfg: NativeConfig, report: Report, symbol: str = SYMBOL) -> None:
        self.symbol = symbol
        self.queue = EventQueue(100_000)
        self.src = NativeProbeSource(
            cfg, queue=self.queue, kernel_source=report.kernel_source, ring_buffer=report.ok("ring buffer")
        )
        self.decoder = Decoder(
            node_name="h7", targets=cfg.uprobes, usdt_targets=cfg.usdt,
            wall_minus_monotonic_ns=time.time_ns() - time.monotonic_ns(),
        )  # fmt: skip
        self.calls: Counter[tuple[int, str]] = Counter()
        self.hits: Counter[tuple[int, str]] = Counter()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Probes:
        self.task = asyncio.create_task(self.src.run(self.stop))
        await asyncio.wait_for(self.src.ready.wait(), 60)
        assert self.src.stats.connected, self.src.stats.last_error
        return self

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 60)

    def drain(self) -> None:
        for payload, received in self.queue.take(len(self.queue)):
            ev = self.decoder.decode(payload, received_ns=received)
            if ev is None:
                continue
            if ev.kind is EventKind.UPROBE and ev.function_name == self.symbol:
                self.calls[(ev.process.pid, ev.module)] += 1
            elif ev.kind is EventKind.USDT and ev.function_name == "h7_app:hit":
                self.hits[(ev.process.pid, ev.module)] += 1

    async def until(self, pred, what: str, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, (
                f"timed out waiting for {what}: {self.calls} {self.hits} {self.src.stats}"
            )
            await asyncio.sleep(0.05)
            self.drain()

    async def looks(self, n: int) -> None:
        """Wait until the source has looked at the targets' files ``n`` more times (about 1 s each)."""
        start = self.src._follow_ns
        seen = 0
        last = start
        deadline = time.monotonic() + 60
        while seen < n:
            assert time.monotonic() < deadline, "the source stopped looking at its targets"
            await asyncio.sleep(0.05)
            if self.src._follow_ns != last:
                last, seen = self.src._follow_ns, seen + 1
        self.drain()


def ask_usdt(proc: subprocess.Popen[str], n: int) -> int:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{n}\n")
    proc.stdin.flush()
    return int(proc.stdout.readline())


@pytest.fixture(autouse=True)
def whole_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The load reads every process for former files (a loaded machine may pass the load's time
    for the scan, whose rest then runs a second later; tests/unit/test_native_former_scan.py)."""
    from stellaops_runtime.native import loader

    monkeypatch.setattr(loader, "LOAD_SCAN_SECONDS", None)


@pytest.fixture
def gcc(report: Report) -> None:
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")


async def test_a_process_running_a_file_replaced_before_the_load_is_probed(
    tmp_path: Path, report: Report, gcc: None
) -> None:
    built, path = installed(tmp_path, build)
    old = await asyncio.to_thread(serve, path)
    try:
        replace(path, build(built, "v2"))  # the old process now runs a deleted file
        cfg = NativeConfig(exec_events=False, user_stacks=False, uprobes=(UprobeTarget(str(path), SYMBOL),))
        p = await Probes(cfg, report).start()
        try:
            await asyncio.to_thread(ask, old, 3)
            fresh = await asyncio.to_thread(subprocess.run, [str(path), "2"])
            await p.until(
                lambda: p.calls[(old.pid, str(path))] == 3 and sum(p.calls.values()) == 5,
                "the old process's calls and the new file's",
            )
            await p.looks(2)  # nothing more comes: each call once
            assert p.calls[(old.pid, str(path))] == 3 and sum(p.calls.values()) == 5, p.calls
            assert fresh.returncode == 0
            assert p.src.stats.former == 1 and p.src.stats.failed == []
            assert p.src.take_unwatched() == []  # every file a process ran was probed
        finally:
            await p.close()
        # `probes run`'s engine: the same, and its summary says so
        res = await run_session(cfg, seconds=1.0, report=report, during=lambda: ask(old, 4))
        assert res.summary()["former"] == 1 and res.failed == [], res.summary()
        assert [e.process.pid for e in res.events if e.function_name == SYMBOL] == [old.pid] * 4
    finally:
        await asyncio.to_thread(stop, old)


async def test_a_file_renamed_away_before_a_reload_is_probed_by_it(
    tmp_path: Path, report: Report, gcc: None
) -> None:
    """``mv app app.old`` and a new ``app`` while the probes were stopped (a reload, a switch back
    from Tetragon): the old process maps ``app.old``, linked, nothing says it was the target's; the
    source's next load knows it by the identity its first load probed."""
    built, path = installed(tmp_path, build)
    old = await asyncio.to_thread(serve, path)
    try:
        cfg = NativeConfig(exec_events=False, user_stacks=False, uprobes=(UprobeTarget(str(path), SYMBOL),))
        p = await Probes(cfg, report).start()
        await asyncio.to_thread(ask, old, 2)
        await p.until(lambda: p.calls[(old.pid, str(path))] == 2, "the first load's calls")
        await p.close()
        path.rename(path.with_name("app.old"))
        shutil.copy2(build(built, "v2"), path)
        p.stop = asyncio.Event()
        p.task = asyncio.create_task(p.src.run(p.stop))  # the same source loads again
        try:
            await p.until(lambda: p.src.stats.connects == 2 and p.src.stats.connected, "the second load")
            await asyncio.to_thread(ask, old, 3)
            await p.until(lambda: p.calls[(old.pid, str(path))] == 5, "the renamed file's calls")
            assert p.src.stats.former == 1 and p.src.stats.failed == [], p.src.stats
            assert p.src.take_unwatched() == []
        finally:
            await p.close()
    finally:
        await asyncio.to_thread(stop, old)


async def test_a_file_replaced_between_the_look_and_the_attach_counts_each_call_once(
    tmp_path: Path, report: Report, gcc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load looked at the file, then attached by path: a replacement in between put the probes
    on the new file, which the next look took for a new file and probed again (each call twice).
    Now the load attaches through the descriptor of the file it looked at."""
    from stellaops_runtime.native.probes import uprobes

    built, path = installed(tmp_path, build)
    new = build(built, "v2")
    real = uprobes.attach

    def replaced_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        replace(path, new)  # the upgrade lands just as the probes attach
        return real(*args, **kwargs)

    monkeypatch.setattr(uprobes, "attach", replaced_first)
    cfg = NativeConfig(exec_events=False, user_stacks=False, uprobes=(UprobeTarget(str(path), SYMBOL),))
    p = await Probes(cfg, report).start()
    try:
        await p.until(lambda: p.src.stats.followed == 1, "the new file followed")
        run = await asyncio.to_thread(subprocess.run, [str(path), "3"])
        assert run.returncode == 0
        await p.until(lambda: sum(p.calls.values()) >= 3, "the new file's calls")
        await p.looks(2)
        assert list(p.calls.values()) == [3], p.calls  # one process, each of its 3 calls once
    finally:
        await p.close()
