"""A PURL file shared by two containers of one image, replaced inside the second one.

Two "containers" of one image: two overlay mounts over the same lower layer
(the package's file is the same layer file in both, one uprobe for both), a
chrooted process in each. The plan resolves the function in the first and
finds the same file in the second (one target, or each call counts twice). The
file was looked at for replacements in the first container's root only: an
upgrade inside the second (a new file renamed over it, in that container's
upper layer) ran in its new processes unprobed, with nothing said, until some
later reload. Now each container sharing the file is looked at: the
replacement is listed in ``failed`` naming that container's root, every read
of the counters is a gap until the probes load again, and the switch is asked
to reload (which resolves the package anew in that container).

Real overlayfs, chroot and BCC; skips where any is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellaops_runtime.native import loader
from stellaops_runtime.native import purl_targets as pt
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.detect import Report
from tests.integration.test_native_former_files import Probes
from tests.integration.test_native_purl import PROGRAM, PURL, Chrooted, _gcc, package_root
from tests.integration.test_native_replaced_binary import report

pytestmark = pytest.mark.bpf
__all__ = ["report"]  # the module's fixture, used here
FILE = "usr/bin/stella_purl_target"


@pytest.fixture
def two_containers(tmp_path: Path, report: Report, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """The merged roots of two overlay mounts over one lower layer holding the package."""
    if not shutil.which("gcc") or not shutil.which("chroot"):
        pytest.skip("needs gcc and chroot")
    monkeypatch.setattr(loader, "LOAD_SCAN_SECONDS", None)  # the whole scan at the load
    lower = tmp_path / "lower"
    package_root(lower)
    merged: list[Path] = []
    try:
        for name in ("a", "b"):
            dirs = [tmp_path / f"{name}-{d}" for d in ("upper", "work", "merged")]
            for d in dirs:
                d.mkdir()
            opts = f"lowerdir={lower},upperdir={dirs[0]},workdir={dirs[1]}"
            done = subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o", opts, str(dirs[2])],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                pytest.skip(f"overlayfs cannot be mounted here: {done.stderr.strip()}")
            merged.append(dirs[2])
        yield merged
    finally:
        for m in merged:
            subprocess.run(["umount", "-l", str(m)], check=False)


@pytest.mark.parametrize("how", ["renamed over", "chmod", "chmod in the first"])
async def test_a_replacement_in_the_second_container_sharing_the_file_is_a_gap_and_a_reload(
    tmp_path: Path, report: Report, two_containers: list[Path], how: str
) -> None:
    """``chmod`` alone copies the file up into that container's upper layer: a file of its own."""
    root_a, root_b = two_containers
    a, b = Chrooted(root_a), Chrooted(root_b)
    plan = pt.PurlProbePlan()
    fresh: Chrooted | None = None
    p: Probes | None = None
    try:
        plan.add("ctr-a", a.pid, PURL, ["stella_pkg_fn"])
        plan.add("ctr-b", b.pid, PURL, ["stella_pkg_fn"])
        (target,) = plan.targets()  # the same layer file in both: one probe
        p = await Probes(NativeConfig(exec_events=False, uprobes=(target,)), report, "stella_pkg_fn").start()
        a.calls(2)
        b.calls(3)
        await p.until(lambda: sum(p.calls.values()) == 5, "both containers' calls")
        assert p.src.take_unwatched() == [] and p.src.stats.failed == []
        if how == "chmod in the first":
            root_a, root_b, a, b = root_b, root_a, b, a  # the container the plan resolved it in first
        if how.startswith("chmod"):
            (root_b / FILE).chmod(0o700)
        else:
            new = root_b / (FILE + ".new")  # an upgrade inside the second container
            _gcc(PROGRAM.replace("x * 3", "x * 5"), new)
            new.rename(root_b / FILE)
        await p.looks(2)
        ((label, why),) = p.src.stats.failed
        assert label == target.label(), p.src.stats.failed
        assert why.startswith(f"/proc/{b.pid}/root/{FILE} was replaced in the container"), why
        assert p.src.stats.reload_wanted  # the switch reloads: resolved anew there
        spans = p.src.take_unwatched()
        assert spans, "the replacement was not marked as a gap"
        await p.looks(1)
        assert p.src.take_unwatched(), "not a gap at every look until a reload"
        fresh = Chrooted(root_b)  # runs the new file: no probe on it until a reload
        fresh.calls(4)
        a.calls(1)  # the first container still counts
        await p.until(lambda: p.calls[(a.pid, "/" + FILE)] == 3, "the first container's next call")
        if how == "renamed over":  # the gap was real: the new file's calls were not seen
            assert p.calls[(fresh.pid, "/" + FILE)] == 0, p.calls
    finally:
        for c in (a, b, fresh):
            if c is not None:
                c.stop()
        if p is not None:
            await p.close()
        plan.close()
