"""A probed file renamed away before an agent restart: the new agent still probes the old processes.

``mv app app.old`` and a new ``app``: a process started from the old file maps
``app.old``, a linked file under another name. The source knew it by the
identity its earlier loads probed, but a restarted agent starts a new source,
which knew nothing: the old process's calls went uncounted while the windows
said watched. Now the identities are kept beside the spool
(native/known_files.py) and the new source reads them. The real source on the
real kernel, with BCC (skips elsewhere, or without gcc).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import Report
from stellaops_runtime.native.source import NativeProbeSource
from tests.integration.test_native_former_files import Probes, gcc, whole_scan
from tests.integration.test_native_replaced_binary import SYMBOL, build, report
from tests.native_app import ask, installed, serve
from tests.native_app import stop as stop_proc

pytestmark = pytest.mark.bpf
__all__ = ["gcc", "report", "whole_scan"]  # the fixtures, used here


def _source(cfg: NativeConfig, report: Report, state: Path) -> Probes:
    """The harness with a source of its own, as a new agent's: it reads the kept files at its start."""
    p = Probes(cfg, report)
    p.src = NativeProbeSource(
        cfg, queue=p.queue, kernel_source=report.kernel_source, ring_buffer=report.ok("ring buffer"),
        known_path=str(state),
    )  # fmt: skip
    return p


async def test_a_file_renamed_away_before_a_restart_is_probed_by_the_new_agent(
    tmp_path: Path, report: Report, gcc: None
) -> None:
    built, path = installed(tmp_path, build)
    state = tmp_path / "spool.native-files"
    old = await asyncio.to_thread(serve, path)
    try:
        cfg = NativeConfig(exec_events=False, user_stacks=False, uprobes=(UprobeTarget(str(path), SYMBOL),))
        first = await _source(cfg, report, state).start()
        try:
            await asyncio.to_thread(ask, old, 2)
            await first.until(lambda: first.calls[(old.pid, str(path))] == 2, "the first agent's calls")
        finally:
            await first.close()
        kept = json.loads(state.read_text())["paths"]
        assert list(kept) == [str(path)] and len(kept[str(path)]) == 1, kept
        path.rename(path.with_name("app.old"))  # while no agent runs
        shutil.copy2(build(built, "v2"), path)
        second = await _source(cfg, report, state).start()  # a new agent: a new source
        try:
            await asyncio.to_thread(ask, old, 3)
            fresh = await asyncio.to_thread(ask_fresh, path)
            await second.until(
                lambda: second.calls[(old.pid, str(path))] == 3 and sum(second.calls.values()) == 5,
                "the renamed file's calls and the new file's",
            )
            await second.looks(2)  # nothing more: each call once
            assert sum(second.calls.values()) == 5, second.calls
            assert fresh == 0
            assert second.src.stats.former == 1 and second.src.stats.failed == [], second.src.stats
            assert second.src.take_unwatched() == [] and second.src.stats.known_errors == 0
        finally:
            await second.close()
        assert len(json.loads(state.read_text())["paths"][str(path)]) == 2  # both files kept now
    finally:
        await asyncio.to_thread(stop_proc, old)


def ask_fresh(path: Path) -> int:
    return subprocess.run([str(path), "2"], check=False).returncode
