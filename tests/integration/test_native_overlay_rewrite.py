"""A probed binary on overlayfs rewritten in place: a copy-up the probes cannot see.

A uprobe sits on the real file under an overlay (the lower layer's, for a file
of the image). Writing the file in the merged view (``cp`` over it, a build
writing its output in place) copies it up: new processes run the upper
layer's file, while the path keeps its device and inode number. The source
looked only at those and said nothing: the new processes' calls were missed
under a window said watched (reproduced: 5 calls, none counted, no gap). Now a
change of contents at the same inode is reported in ``failed`` and every read
of the counters is an unwatched span until the next load.

Needs root and overlayfs (skips with the reason), BCC (detect.py's reason) and gcc.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import Report
from tests.integration.test_native_former_files import Probes
from tests.integration.test_native_replaced_binary import SYMBOL, build, report

pytestmark = pytest.mark.bpf
__all__ = ["report"]  # the module's fixture, used here


@pytest.fixture
def overlay(tmp_path: Path, report: Report):  # type: ignore[no-untyped-def]
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    dirs = {n: tmp_path / n for n in ("lower", "upper", "work", "merged")}
    for d in dirs.values():
        d.mkdir()
    build(dirs["lower"], "app")
    opts = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
    mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(dirs["merged"])],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"overlayfs cannot be mounted here: {mounted.stderr.strip()}")
    try:
        yield dirs
    finally:
        subprocess.run(["umount", "-l", str(dirs["merged"])], check=False)


async def test_a_copy_up_under_the_probes_is_a_gap_not_a_silence(
    tmp_path: Path, report: Report, overlay: dict[str, Path]
) -> None:
    path = overlay["merged"] / "app"
    other = build(tmp_path, "v2")
    cfg = NativeConfig(exec_events=False, user_stacks=False, uprobes=(UprobeTarget(str(path), SYMBOL),))
    p = await Probes(cfg, report).start()
    try:
        first = await asyncio.to_thread(subprocess.run, [str(path), "3"])
        assert first.returncode == 0
        await p.until(lambda: sum(p.calls.values()) == 3, "the lower file's calls")
        ino = path.stat().st_ino
        await asyncio.to_thread(shutil.copyfile, other, path)  # in place: copied up
        assert path.stat().st_ino == ino and (overlay["upper"] / "app").exists()
        await p.until(lambda: p.src.stats.failed, "the rewrite reported")
        ((label, why),) = p.src.stats.failed
        assert label == f"{path}:{SYMBOL}" and why.startswith(f"{path} was rewritten in place"), why
        p.src.take_unwatched()
        await p.looks(2)
        assert len(p.src.take_unwatched()) >= 2  # a gap at every look: nobody says watched
    finally:
        await p.close()
