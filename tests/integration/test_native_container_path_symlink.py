"""A target named by a container's path (``/proc/<pid>/root/...``) whose file there is a symlink.

The agent names a container's file through ``/proc/<pid>/root``; the kernel
follows an absolute symlink met past that magic link from the *agent's* root.
So a container whose ``/usr/bin/app`` is (or is made) a link to
``/opt/tool/app`` had the agent look at, and probe, the agent's (the node's)
``/opt/tool/app``: the container's own processes, running its own file, went
uncounted with nothing said, while a node process running the other file was
counted as the container's function. Now the file is opened inside that root
(canonical/rootopen.py, as PURL targets are), at the load and at every look: the
container's own file is probed. A real chrooted process and BCC; skips elsewhere.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import Report
from tests.integration.test_native_former_files import Probes, gcc
from tests.integration.test_native_purl import PROGRAM, Chrooted, _gcc
from tests.integration.test_native_replaced_binary import report

pytestmark = pytest.mark.bpf
__all__ = ["gcc", "report"]  # the fixtures, used here


async def test_a_container_paths_absolute_symlink_is_followed_inside_the_container(
    tmp_path: Path, report: Report, gcc: None
) -> None:
    if not shutil.which("chroot"):
        pytest.skip("chroot is not installed")
    decoy = tmp_path / "node-tool"  # the node's file at the link's target path
    root = tmp_path / "root"  # the container
    (root / "usr/bin").mkdir(parents=True)
    inner = root / str(decoy).lstrip("/")
    inner.parent.mkdir(parents=True)
    _gcc(PROGRAM, inner)  # the container's own file at that path
    _gcc(PROGRAM.replace("x * 3", "x * 7"), decoy)  # another file, the node's
    (root / "usr/bin/stella_purl_target").symlink_to(decoy)  # absolute: the container's own
    c = Chrooted(root)  # runs /usr/bin/stella_purl_target -> (in the container) its own file
    p: Probes | None = None
    try:
        target = UprobeTarget(f"/proc/{c.pid}/root/usr/bin/stella_purl_target", "stella_pkg_fn")
        p = await Probes(NativeConfig(exec_events=False, uprobes=(target,)), report, "stella_pkg_fn").start()
        c.calls(3)
        node = await asyncio.to_thread(  # the node's file: not the container's function
            subprocess.run, [str(decoy)], input="2\n", capture_output=True, text=True, timeout=30
        )
        assert node.returncode == 0 and node.stdout.startswith("ready"), node
        await p.until(lambda: p.calls[(c.pid, target.binary)] == 3, "the container's own calls")
        await p.looks(2)
        assert sum(p.calls.values()) == 3, p.calls
        assert p.src.stats.failed == [] and p.src.take_unwatched() == []
        # an upgrade in the container points the link elsewhere: its own new file is followed
        decoy2 = tmp_path / "node-tool-2"
        _gcc(PROGRAM.replace("x * 3", "x * 9"), decoy2)  # the node's, again
        _gcc(PROGRAM.replace("x * 3", "x * 11"), root / str(decoy2).lstrip("/"))
        link = root / "usr/bin/stella_purl_target.new"
        link.symlink_to(decoy2)
        link.rename(root / "usr/bin/stella_purl_target")
        await p.until(lambda: p.src.stats.followed == 1, "the container's new file followed")
        fresh = Chrooted(root)
        try:
            fresh.calls(4)
        finally:
            fresh.stop()
        await p.until(lambda: p.calls[(fresh.pid, target.binary)] == 4, "the new file's calls")
        assert p.src.stats.failed == [], p.src.stats.failed
    finally:
        c.stop()
        if p is not None:
            await p.close()
