"""A probed binary replaced on disk while the probes run: both files' calls are counted.

A uprobe sits on a file's inode. Before the fix, a binary replaced at its
path (a package upgrade renames a new file over the old one) kept its probe
on the old file only: every process started from the new file called the
function unseen, for as long as the probes ran, with the node reporting its
uprobes attached. The real source (NativeProbeSource) on the real kernel:

- a process started before the replacement, still running the old file, keeps
  being counted;
- processes started from the new file are counted once the source has looked
  (it looks about once a second), each call once, under the same path;
- the span between the last look that found the old file and the attach to
  the new one is queued as unwatched (the switch marks it as a gap);
- a file put where none was at the load is probed too; a new file without the
  symbol is reported in ``failed``, and the old file's processes still count.

Skips, with detect.py's reason, where BCC cannot run (or without gcc).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stellaops_runtime.contracts.events import EventKind
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import Report
from stellaops_runtime.native.events import Decoder
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue
from tests.native_app import ask, compile_c, installed, native_report, replace, serve

pytestmark = pytest.mark.bpf

SYMBOL = "h8_repl"
PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((noipa)) int h8_repl(int x) { return x + 1; }
__attribute__((noipa)) int h8_other(int x) { return x + 2; }
int main(int argc, char **argv) {
    long s = 0; int n;
    if (argc > 1) { for (int i = 0; i < atoi(argv[1]); i++) s += h8_repl(i); return s == -1; }
    while (scanf("%d", &n) == 1) {  /* a long-running process: calls on request */
        for (int i = 0; i < n; i++) s += h8_repl(i);
        printf("done\n"); fflush(stdout);
        if (s == -1) return 1;
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def report() -> Report:
    return native_report(Posture.EBPF_DEEP, "native uprobes")


def build(d: Path, name: str, source: str = PROGRAM) -> Path:
    return compile_c(d, name, source)


class Probes:
    """The real source in-process, its records decoded as they arrive."""

    def __init__(self, cfg: NativeConfig, report: Report) -> None:
        self.queue = EventQueue(100_000)
        self.src = NativeProbeSource(
            cfg, queue=self.queue, kernel_source=report.kernel_source, ring_buffer=report.ok("ring buffer")
        )
        self.decoder = Decoder(
            node_name="h8", targets=cfg.uprobes, wall_minus_monotonic_ns=time.time_ns() - time.monotonic_ns()
        )
        self.calls: Counter[tuple[int, str]] = Counter()  # (pid, module) -> calls seen

    def drain(self) -> None:
        for payload, received in self.queue.take(len(self.queue)):
            ev = self.decoder.decode(payload, received_ns=received)
            if ev is not None and ev.kind is EventKind.UPROBE and ev.function_name == SYMBOL:
                self.calls[(ev.process.pid, ev.module)] += 1

    async def until(self, pred, what: str, timeout: float = 20.0) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.calls} {self.src.stats}"
            await asyncio.sleep(0.05)
            self.drain()


@pytest.fixture
async def probes_of(report: Report) -> AsyncIterator:
    running: list[tuple[asyncio.Event, asyncio.Task]] = []

    async def start(cfg: NativeConfig) -> Probes:
        p = Probes(cfg, report)
        stop = asyncio.Event()
        running.append((stop, asyncio.create_task(p.src.run(stop))))
        await asyncio.wait_for(p.src.ready.wait(), 60)
        assert p.src.stats.connected, p.src.stats.last_error
        return p

    yield start
    for stop, task in running:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_replaced_binary_is_followed_and_its_old_processes_still_count(
    tmp_path: Path, probes_of
) -> None:
    built, path = installed(tmp_path, build)
    new = build(built, "v2")
    p: Probes = await probes_of(NativeConfig(exec_events=False, user_stacks=False,
                                             uprobes=(UprobeTarget(str(path), SYMBOL),)))  # fmt: skip
    old = await asyncio.to_thread(serve, path)
    try:
        await asyncio.to_thread(ask, old, 2)
        await p.until(lambda: p.calls[(old.pid, str(path))] == 2, "the old process's first calls")
        replace(path, new)
        replaced_ns = time.time_ns()  # a look that began before this may still have seen the old file

        # fresh processes from the new file, one call each, until the probes follow it
        fresh: list[int] = []
        deadline = time.monotonic() + 20
        seen_pid = 0
        while not seen_pid:
            assert time.monotonic() < deadline, "calls from the new file were never seen"
            proc = await asyncio.to_thread(subprocess.Popen, [str(path), "1"])
            await asyncio.to_thread(proc.wait)
            fresh.append(proc.pid)
            await asyncio.sleep(0.2)
            p.drain()
            seen_pid = next((pid for pid in fresh if p.calls[(pid, str(path))]), 0)
        assert p.calls[(seen_pid, str(path))] == 1  # each call once, under the path probed
        newer = await asyncio.to_thread(subprocess.Popen, [str(path), "4"])
        await asyncio.to_thread(newer.wait)
        await asyncio.to_thread(ask, old, 5)  # the old file's process: its probe stayed
        await p.until(
            lambda: p.calls[(newer.pid, str(path))] == 4 and p.calls[(old.pid, str(path))] == 7,
            "the new and the old process's calls",
        )
    finally:
        if old.stdin is not None:
            old.stdin.close()
        old.wait(10)
    assert p.src.stats.followed == 1
    spans = p.src.take_unwatched()
    assert len(spans) == 1, spans
    start, end = spans[0]
    assert start <= replaced_ns <= end  # the new file's processes were unwatched until then
    await asyncio.sleep(1.5)  # another look: the same file is not probed twice
    p.drain()
    assert p.src.stats.followed == 1 and p.src.take_unwatched() == []
    assert p.src.stats.failed == []


async def test_a_file_put_where_none_was_is_probed_and_one_without_the_symbol_is_reported(
    tmp_path: Path, probes_of
) -> None:
    built = tmp_path / "built"
    built.mkdir()
    app = build(built, "app")
    other = build(built, "other", PROGRAM.replace("h8_repl", "h8_renamed"))
    later = tmp_path / "later"  # not there at the load
    kept = tmp_path / "kept"
    shutil.copy2(app, kept)
    targets = (UprobeTarget(str(later), SYMBOL), UprobeTarget(str(kept), SYMBOL))
    cfg = NativeConfig(exec_events=False, user_stacks=False, uprobes=targets)
    p: Probes = await probes_of(cfg)
    assert [label for label, _ in p.src.stats.failed] == [f"{later}:{SYMBOL}"]
    old = await asyncio.to_thread(serve, kept)
    try:
        replace(later, app)
        replace(kept, other)  # the new file lacks the function
        await p.until(lambda: p.src.stats.followed == 1, "the new file followed")
        run = await asyncio.to_thread(subprocess.run, [str(later), "3"], check=True)
        assert run.returncode == 0
        await asyncio.to_thread(ask, old, 2)
        await p.until(lambda: p.calls[(old.pid, str(kept))] == 2, "the old file's calls")
        await p.until(
            lambda: sum(n for (_, m), n in p.calls.items() if m == str(later)) == 3, "later's calls"
        )
    finally:
        if old.stdin is not None:
            old.stdin.close()
        old.wait(10)
    failed = dict(p.src.stats.failed)
    assert failed == {f"{kept}:{SYMBOL}": f"symbol {SYMBOL} not found in the new file at {kept}"}
    assert f"uprobe {later}:{SYMBOL}" in p.src.stats.attached


async def test_the_switch_marks_the_unwatched_spans_as_node_wide_gaps_and_loses_none() -> None:
    """What the source queued (take_unwatched) becomes a gap; one whose mark failed is marked later."""
    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.agent.source_switch import SourceSwitch
    from stellaops_runtime.contracts.config import parse_config
    from stellaops_runtime.contracts.hotsymbols import NODE_WIDE

    s = 1_000_000_000
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
    pipe = Pipeline(cfg, node_name="h8-node")
    fail = [True]

    async def flaky(fn, *args):  # type: ignore[no-untyped-def]
        if fail[0]:
            fail[0] = False
            raise RuntimeError("the pipeline thread is busy")
        return fn(*args)

    sw = SourceSwitch(cfg, queue=EventQueue(10), pipeline=pipe, in_pipeline=flaky)
    sw.bcc = NativeProbeSource(NativeConfig(), queue=EventQueue(10), kernel_source="", ring_buffer=True)
    sw.bcc.stats.unwatched = [(121 * s, 122 * s), (130 * s, 131 * s)]
    with pytest.raises(RuntimeError):
        await sw._mark_native_drops()
    assert len(sw.bcc.stats.unwatched) == 2  # put back
    await sw._mark_native_drops()
    assert sw.bcc.stats.unwatched == []
    (row,) = pipe.gaps.drain([])
    assert (row.image_digest, row.node_name, row.source) == (NODE_WIDE, "h8-node", "none")
    assert (row.gap_start_ns // s, row.gap_end_ns // s) == (121, 131)
