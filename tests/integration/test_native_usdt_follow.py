"""USDT targets whose binary is replaced: followed while the probes run, found at a load.

A USDT target's binary replaced while the probes ran was not followed:
processes started from the new file were unseen until a reload, under a
window said watched. Now the programs compiled at the load are attached to
the new file's probe sites when they read their arguments the same way; when
they do not, the target is reported and every look is an unwatched span (a
gap) until the next load. A process still running a deleted former file at a
load is probed too, or (its sites differing) a gap while it runs. And a
process started before the load is seen (the kernel raises its semaphore).

The real source on the real kernel with BCC (the harness of
test_native_former_files.py); skips with detect.py's reason elsewhere, or
without gcc.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.native.config import NativeConfig, UsdtTarget
from stellaops_runtime.native.detect import Report
from tests.integration.test_native_former_files import Probes, ask_usdt, build_usdt, gcc, whole_scan
from tests.integration.test_native_replaced_binary import report
from tests.native_app import installed, replace, serve, stop

pytestmark = pytest.mark.bpf
__all__ = ["gcc", "report", "whole_scan"]  # the fixtures used here


async def test_a_usdt_target_replaced_while_the_probes_run_is_followed(
    tmp_path: Path, report: Report, gcc: None
) -> None:
    built, path = installed(tmp_path, build_usdt)
    new = build_usdt(built, "v2", padding=40)
    cfg = NativeConfig(exec_events=False, usdt=(UsdtTarget(str(path), "h7_app", "hit"),))
    p = await Probes(cfg, report).start()
    try:
        old = await asyncio.to_thread(serve, path)
        try:
            assert await asyncio.to_thread(ask_usdt, old, 2) == 2
            replace(path, new)
            await p.until(lambda: p.src.stats.followed == 1, "the new file followed")
            run = await asyncio.to_thread(subprocess.run, [str(path), "7"], capture_output=True, text=True)
            assert run.stdout == "7\n"  # the kernel raised the new file's semaphore: it is probed
            assert await asyncio.to_thread(ask_usdt, old, 3) == 3  # the old file keeps its probe
            await p.until(lambda: sum(p.hits.values()) == 12, "every hit of both files")
            await p.looks(2)
            assert p.hits[(old.pid, str(path))] == 5 and sum(p.hits.values()) == 12, p.hits
        finally:
            await asyncio.to_thread(stop, old)
        assert p.src.stats.failed == []
        assert len(p.src.take_unwatched()) == 1  # until the look that attached the new file
    finally:
        await p.close()


async def test_a_usdt_file_replaced_before_the_load_and_one_whose_sites_differ(
    tmp_path: Path, report: Report, gcc: None
) -> None:
    built, path = installed(tmp_path, build_usdt)
    old = await asyncio.to_thread(serve, path)
    try:
        replace(path, build_usdt(built, "v2", padding=40))
        cfg = NativeConfig(exec_events=False, usdt=(UsdtTarget(str(path), "h7_app", "hit"),))
        p = await Probes(cfg, report).start()
        try:
            # the kernel raised the deleted file's semaphore in the old process when it was probed
            assert await asyncio.to_thread(ask_usdt, old, 4) == 4
            await p.until(lambda: p.hits[(old.pid, str(path))] == 4, "the old process's hits")
            assert p.src.stats.former == 1 and p.src.stats.failed == []
            assert p.src.take_unwatched() == []
            # a new file whose probe reads its argument elsewhere: not probed, reported, a gap
            replace(path, build_usdt(built, "v3", args="-4@%0"))
            await p.until(lambda: p.src.stats.failed, "the refused file reported")
            (label, why) = p.src.stats.failed[0]
            assert label == f"{path}:h7_app:hit" and "arguments differ" in why, why
            await p.looks(3)
            spans = p.src.take_unwatched()
            assert len(spans) >= 3, spans  # every look while its processes may run unseen
        finally:
            await p.close()
    finally:
        await asyncio.to_thread(stop, old)


async def test_a_usdt_process_started_before_the_load_is_seen(
    tmp_path: Path, report: Report, gcc: None
) -> None:
    """The kernel raises the semaphore of every process mapping the file when the probe attaches,
    not only of those started later (docs/native-probes.md said the contrary), and lowers it again
    when the probes close."""
    path = build_usdt(tmp_path, "app")
    old = await asyncio.to_thread(serve, path)
    try:
        assert await asyncio.to_thread(ask_usdt, old, 3) == 0  # no probe: the semaphore is down
        cfg = NativeConfig(exec_events=False, usdt=(UsdtTarget(str(path), "h7_app", "hit"),))
        p = await Probes(cfg, report).start()
        try:
            assert await asyncio.to_thread(ask_usdt, old, 4) == 4
            await p.until(lambda: p.hits[(old.pid, str(path))] == 4, "the earlier process's hits")
        finally:
            await p.close()
        assert await asyncio.to_thread(ask_usdt, old, 2) == 0
    finally:
        await asyncio.to_thread(stop, old)


async def test_a_former_usdt_file_that_cannot_be_probed_is_a_gap_while_its_process_runs(
    tmp_path: Path, report: Report, gcc: None
) -> None:
    built, path = installed(tmp_path, lambda d, name: build_usdt(d, name, args="-4@%0"))
    old = await asyncio.to_thread(serve, path)
    replace(path, build_usdt(built, "v2"))  # the programs are compiled for v2's sites: v1's differ
    cfg = NativeConfig(exec_events=False, usdt=(UsdtTarget(str(path), "h7_app", "hit"),))
    p = await Probes(cfg, report).start()
    try:
        ((label, why),) = p.src.stats.failed
        assert label == f"{path}:h7_app:hit (deleted former file, pid {old.pid})", label
        assert "arguments differ" in why, why
        await p.looks(2)
        assert len(p.src.take_unwatched()) >= 2  # a gap at every look while it runs
        await asyncio.to_thread(stop, old)
        await p.looks(1)  # the look that saw it run last
        p.src.take_unwatched()
        await p.looks(2)
        assert p.src.take_unwatched() == []  # gone: nothing runs unseen
    finally:
        if old.poll() is None:
            await asyncio.to_thread(stop, old)
        await p.close()
