"""A policy's ``binaryPath`` whose node path is an absolute symlink is probed in the node's file.

The agent reaches the node's files through ``/proc/1/root``; the kernel
follows an absolute symlink met there from the agent's own root. Before the
fix, ``/usr/bin/app -> /opt/app`` on the node was looked up as ``/opt/app`` of
the agent's image: not found (the function reported as failed), or another
file of the same name probed in its place, whose calls never come. On the real
kernel, with a directory standing in for the node's root: the probe attaches
to the node's file and each call is counted once, under the path the policy
gave. Skips, with detect.py's reason, where BCC cannot run (or without gcc).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.contracts.events import EventKind
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.detect import detect
from stellaops_runtime.native.policy_config import API_VERSION, KIND, read_probe_config
from stellaops_runtime.native.session import run_session

pytestmark = pytest.mark.bpf

PROGRAM = r"""
#include <stdlib.h>
__attribute__((noipa)) int h8_linked(int x) { return x * 5; }
int main(int argc, char **argv) {
    long s = 0;
    for (int i = 0; i < atoi(argv[1]); i++) s += h8_linked(i);
    return s == -1;
}
"""


def test_an_absolute_symlink_in_the_nodes_root_is_followed_there(tmp_path: Path) -> None:
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=str(Path(".cache/native").resolve()))
    if rep.posture < Posture.EBPF_DEEP:
        pytest.skip(f"native uprobes cannot run here: {rep.missing}")
    if not shutil.which("gcc"):
        pytest.skip("gcc is not installed")
    node = tmp_path / "node"
    (node / "usr" / "bin").mkdir(parents=True)
    (node / "h8-opt").mkdir()
    (tmp_path / "p.c").write_text(PROGRAM)
    real = node / "h8-opt" / "app"
    subprocess.run(["gcc", "-O1", "-o", str(real), str(tmp_path / "p.c")], check=True)
    (node / "usr" / "bin" / "app").symlink_to("/h8-opt/app")  # absolute: inside the node's root
    doc = {
        "apiVersion": API_VERSION, "kind": KIND,
        "policies": {"ObservationPolicy/ns/p": {"functions": [{"binaryPath": "/usr/bin/app",
                                                                "symbols": ["h8_linked"]}]}},
    }  # fmt: skip
    (tmp_path / "probes.json").write_text(json.dumps(doc))
    res = read_probe_config(
        str(tmp_path / "probes.json"), NativeConfig(exec_events=False), host_root=str(node)
    )
    n = 6

    def workload() -> None:
        subprocess.run([str(real), str(n)], check=True)

    got = asyncio.run(run_session(res.config, seconds=1.0, report=rep, during=workload))
    assert not got.error, got.error
    assert got.failed == [], got.failed
    evs = [e for e in got.events if e.kind is EventKind.UPROBE and e.function_name == "h8_linked"]
    assert len(evs) == n
    assert {e.module for e in evs} == {f"{node}/usr/bin/app"}  # the path the policy gave, in the node
