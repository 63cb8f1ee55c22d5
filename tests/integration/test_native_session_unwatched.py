"""``probes run``'s engine says when its run was not watched whole.

A session shorter than the former-file scan (a node of thousands of processes:
the load reads for a second, each later look for 0.1 s) ends before every
process was read; a process not read may run a target's former file unprobed
all along. The source marked that span, but the session's summary only counted
``former``: the run looked watched. Now the summary lists the spans
(``unwatched``, ``unwatchedSeconds``) and the CLI warns. The scan's budgets are
set to one process a step here to stand for a large node. Real BCC (skips
elsewhere, or without gcc).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from stellaops_runtime.native import follow, loader
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import Report
from stellaops_runtime.native.session import run_session
from tests.integration.test_native_former_files import gcc
from tests.integration.test_native_replaced_binary import SYMBOL, build, report
from tests.native_app import installed, replace, serve, stop

pytestmark = pytest.mark.bpf
__all__ = ["gcc", "report"]  # the fixtures, used here


@pytest.mark.parametrize("scan", ["cut short", "whole"])
async def test_a_session_ended_before_the_scan_says_it_was_not_watched(
    tmp_path: Path, report: Report, gcc: None, monkeypatch: pytest.MonkeyPatch, scan: str
) -> None:
    short = scan == "cut short"
    monkeypatch.setattr(loader, "LOAD_SCAN_SECONDS", 0.0 if short else None)  # one process, or all
    monkeypatch.setattr(follow, "SCAN_STEP_SECONDS", 0.0)
    monkeypatch.setattr(follow, "STOP_SCAN_SECONDS", 0.0)
    built, path = installed(tmp_path, build)
    old = await asyncio.to_thread(serve, path)
    try:
        replace(path, build(built, "v2"))  # the old process runs a deleted former file
        cfg = NativeConfig(exec_events=False, user_stacks=False, uprobes=(UprobeTarget(str(path), SYMBOL),))
        before = time.time_ns()
        res = await run_session(cfg, seconds=0.3, report=report)
        after = time.time_ns()
    finally:
        await asyncio.to_thread(stop, old)
    s = res.summary()
    assert res.error == "" and res.failed == [], s
    if not short:
        assert s["former"] == 1 and s["unwatched"] == [] and s["unwatchedSeconds"] == 0, s
        return
    assert s["former"] == 0, s  # hundreds of processes listed, a few read
    (span,) = s["unwatched"]
    assert before <= span["startNs"] < span["endNs"] <= after, (before, s, after)
    assert s["unwatchedSeconds"] == round((span["endNs"] - span["startNs"]) / 1e9, 3) > 0
