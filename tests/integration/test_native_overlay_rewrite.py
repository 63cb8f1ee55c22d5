"""A probed binary on overlayfs rewritten in place: a copy-up, probed; the upper file rewritten, a gap.

A uprobe sits on the real file under an overlay (the lower layer's, for a file
of the image). Writing the file in the merged view (``cp`` over it, a build
writing its output in place) copies it up: new processes run the upper
layer's file, while the path keeps its device and inode number. The source
looked only at those and said nothing: the new processes' calls were missed
under a window said watched (reproduced: 5 calls, none counted, no gap). A
change of contents at the same inode was then made a gap until the next load;
now the mount's upper layer (``upperdir=`` in mountinfo) tells a copy-up (a new
real file there: probed) from the probed upper file rewritten (a gap).

Needs root and overlayfs (skips with the reason), BCC (detect.py's reason) and gcc.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import Report
from tests.integration.test_native_former_files import Probes
from tests.integration.test_native_replaced_binary import SYMBOL, build, report
from tests.native_app import replace

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


async def _copy_up_probed(p: Probes, path: Path, copy_up: Callable[[], Awaitable[None]]) -> None:
    """3 calls of the lower file counted; ``copy_up()``; the upper file followed (nothing failed) and
    a process of it counted, each call once; the unwatched spans so far taken."""
    first = await asyncio.to_thread(subprocess.run, [str(path), "3"])
    assert first.returncode == 0
    await p.until(lambda: sum(p.calls.values()) == 3, "the lower file's calls")
    await copy_up()
    await p.until(lambda: p.src.stats.followed == 1, "the copied-up file probed")
    assert p.src.stats.failed == []
    second = await asyncio.to_thread(subprocess.run, [str(path), "4"])
    assert second.returncode == 0
    await p.until(lambda: sum(p.calls.values()) == 7, "the upper file's calls")
    await p.looks(2)
    assert sum(p.calls.values()) == 7, p.calls  # each call once
    p.src.take_unwatched()


def _append(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(0, 2)
        f.write(b"\0" * 16)


async def test_a_copy_up_is_probed_and_a_rewrite_of_the_upper_file_is_a_gap(
    tmp_path: Path, report: Report, overlay: dict[str, Path]
) -> None:
    """The upper layer is read from the mount's options: a file copied up since the probes
    attached to the lower one is another real file, probed now (each call once: the old processes
    keep the lower file's probe); a later rewrite of that upper file in place cannot be told from
    the probed one and stays a gap."""
    path = overlay["merged"] / "app"
    other = build(tmp_path, "v2")
    cfg = NativeConfig(exec_events=False, user_stacks=False, uprobes=(UprobeTarget(str(path), SYMBOL),))
    p = await Probes(cfg, report).start()
    try:

        async def cp_over() -> None:
            ino = path.stat().st_ino
            await asyncio.to_thread(shutil.copyfile, other, path)  # in place: copied up
            assert path.stat().st_ino == ino and (overlay["upper"] / "app").exists()

        await _copy_up_probed(p, path, cp_over)
        await asyncio.to_thread(_append, path)  # the upper file itself, rewritten in place
        await p.until(lambda: p.src.stats.failed, "the rewrite reported")
        ((label, why),) = p.src.stats.failed
        assert label == f"{path}:{SYMBOL}" and why.startswith(f"{path} was rewritten in place"), why
        p.src.take_unwatched()
        await p.looks(2)
        assert len(p.src.take_unwatched()) >= 2  # a gap at every look: nobody says watched
        assert p.src.stats.followed == 1
    finally:
        await p.close()


async def test_a_chmod_copy_up_is_probed(tmp_path: Path, report: Report, overlay: dict[str, Path]) -> None:
    """A ``chmod`` in the merged view copies the file up with the same inode number, size and
    modification time: only its change time moves. Its new processes ran the upper file unprobed,
    and nothing looked (the file looked the same). Now a moved change time makes the look ask the
    mount's upper layer, whose new real file is probed (each call once)."""
    path = overlay["merged"] / "app"
    cfg = NativeConfig(exec_events=False, user_stacks=False, uprobes=(UprobeTarget(str(path), SYMBOL),))
    p = await Probes(cfg, report).start()
    try:

        async def chmod() -> None:
            before = path.stat()
            path.chmod(0o700)  # copied up: a file of the upper layer now
            after = path.stat()
            assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
                before.st_ino, before.st_size, before.st_mtime_ns,
            ) and (overlay["upper"] / "app").exists()  # fmt: skip

        await _copy_up_probed(p, path, chmod)
        path.chmod(0o755)  # the upper file's own change time: the same file, still probed
        await p.looks(2)
        assert p.src.stats.failed == [] and p.src.take_unwatched() == [] and p.src.stats.followed == 1
    finally:
        await p.close()


async def test_a_new_file_put_in_the_upper_layer_then_rewritten_is_a_gap_not_probed_twice(
    tmp_path: Path, report: Report, overlay: dict[str, Path]
) -> None:
    """A new file renamed over the path in the merged view lives in the upper layer, and the probe
    followed it there. Rewritten in place later, its real file is the one probed: it was taken for a
    copy-up and attached again (each call of its processes counted twice). It is a gap instead."""
    path = overlay["merged"] / "app"
    cfg = NativeConfig(exec_events=False, user_stacks=False, uprobes=(UprobeTarget(str(path), SYMBOL),))
    p = await Probes(cfg, report).start()
    try:
        await asyncio.to_thread(replace, path, build(tmp_path, "v2"))  # a new file, in the upper layer
        await p.until(lambda: p.src.stats.followed == 1, "the new file probed")
        await asyncio.to_thread(_append, path)  # that upper file itself, rewritten in place
        await p.until(lambda: p.src.stats.failed, "the rewrite reported")
        ((label, why),) = p.src.stats.failed
        assert label == f"{path}:{SYMBOL}" and why.startswith(f"{path} was rewritten in place"), why
        run = await asyncio.to_thread(subprocess.run, [str(path), "4"])
        assert run.returncode == 0
        await p.until(lambda: sum(p.calls.values()) >= 4, "the new file's calls")
        await p.looks(2)
        assert sum(p.calls.values()) == 4 and p.src.stats.followed == 1, p.calls  # each call once
    finally:
        await p.close()
