"""A PURL target's file looked at in every container sharing it (native/follow_shared.py).

The real-overlay, real-BCC cases (a file renamed over, a ``chmod`` copy-up, in
the first container or another) are in tests/integration/test_native_purl_shared.py.
Here, with plain directories as the containers' roots: the plan records every
container sharing a file, a replacement in one is a gap until the probed file
is back or the container is gone, and what a gap ends on.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from stellaops_runtime.native import follow, follow_shared
from stellaops_runtime.native.follow import TargetWatch
from tests.unit.test_native_follow import (
    ScriptedBPF,
    scripted_symbols,  # noqa: F401 (autouse: the address lookup)
)
from tests.unit.test_native_former_scan import _purl_target

LIB = "/usr/lib/libx.so.1"


def test_a_replacement_in_a_sharing_container_is_a_gap_until_the_file_is_back_or_it_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The containers' views stand in for overlay mounts of one layer (a plain directory cannot show
    one inode at two paths without a hard link, whose count moves the change time of both)."""
    first, second = tmp_path / "a", tmp_path / "b"
    t, fd = _purl_target(first, LIB, b"v1 has-symbol")
    second.mkdir()
    t = dataclasses.replace(t, shared=((str(second), LIB),))
    st = os.stat(t.binary)
    probed = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    views = {str(first): probed, str(second): probed}
    monkeypatch.setattr(follow_shared, "look_in", lambda root, module: views[root])
    w = TargetWatch.before_attach((t,))
    bpf = ScriptedBPF("attach")
    try:
        w.attached({t.label()})
        assert w.follow(bpf) == follow.Followed()
        views[str(second)] = (probed[0], probed[1], probed[2], probed[3] + 1)  # a chmod: copied up there
        res = w.follow(bpf)
        ((label, why),) = res.failed
        assert label == t.label() and why.startswith(f"{second}{LIB} was replaced in the container"), why
        assert res.unwatched and res.reload and bpf.calls == []
        again = w.follow(bpf)
        assert again.failed == [] and again.unwatched and not again.reload  # said once, a gap each look
        views[str(second)] = probed  # the probed file back: watched again
        assert w.follow(bpf) == follow.Followed()
        views[str(second)] = (probed[0] + 1, *probed[1:])
        assert w.follow(bpf).unwatched
        views[str(second)] = None  # type: ignore[assignment]
        assert w.follow(bpf).unwatched  # its file gone, the container still there: still a gap
        shutil.rmtree(second)  # the container gone: nothing runs its file
        assert w.follow(bpf) == follow.Followed()
        views[str(first)] = (probed[0], probed[1] + 1, *probed[2:])  # the first container's too
        ((label, why),) = w.follow(bpf).failed
        assert why.startswith(f"{first}{LIB} was replaced in the container")
    finally:
        w.close()
        os.close(fd)


def test_the_plan_records_every_container_sharing_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from stellaops_runtime.native import purl_targets as pt

    key = (7, 100, 5, 6)
    calls = iter([1, 2, 2, 3])

    def resolve(pid, purl, symbols, *, container, proc_root, debug_files):  # type: ignore[no-untyped-def]
        fd = os.open(tmp_path, os.O_RDONLY)
        f = pt.FunctionFile(LIB, f"{proc_root}/{pid}/root{LIB}", 0x10, key)
        return [pt.FunctionReport(container, pid, purl, "f", pt.RESOLVED, files=[f])], {key: fd}

    monkeypatch.setattr(pt, "resolve", resolve)
    plan = pt.PurlProbePlan(proc_root="/proc")
    try:
        for pid in calls:
            plan.add(f"c{pid}", pid, "pkg:deb/debian/x@1", ["f"])
        (t,) = plan.targets()
        assert t.root == "/proc/1/root" and t.shared == (("/proc/2/root", LIB), ("/proc/3/root", LIB))
    finally:
        plan.close()
