"""Node capability detection on a directory tree describing a node, and on this machine's kernel."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from stellaops_runtime.agent.capabilities import detect_kernel, kernel_release_tuple


def test_detection_reads_the_node_it_is_given(tmp_path: Path) -> None:
    for p in (
        "sys/kernel/btf/vmlinux",
        "sys/bus/event_source/devices/tracepoint/type",
        "sys/bus/event_source/devices/uprobe/type",
    ):
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_text("1\n")
    facts = detect_kernel(root=tmp_path, release="5.4.0-150-generic", try_bpf=False)
    assert facts | {"notes": ()} == {
        "kernel_version": "5.4.0-150-generic",
        "btf": True,
        "bpf_permitted": False,
        "tracepoints": True,
        "uprobes": True,
        "kprobes": False,
        "usdt": False,  # no ref_ctr_offset: uprobes without semaphores
        "ring_buffer": False,  # 5.4 < 5.8
        "notes": (),
    }
    (tmp_path / "sys/bus/event_source/devices/uprobe/format").mkdir()
    (tmp_path / "sys/bus/event_source/devices/uprobe/format/ref_ctr_offset").write_text("config:32-63\n")
    (tmp_path / "sys/kernel/tracing").mkdir(parents=True)
    (tmp_path / "sys/kernel/tracing/kprobe_events").write_text("")
    facts = detect_kernel(root=tmp_path, release="6.8.0", try_bpf=False)
    assert (facts["usdt"], facts["kprobes"], facts["ring_buffer"]) == (True, True, True)
    assert kernel_release_tuple("garbage") == (0, 0)


def test_bpf_permission_is_measured_not_assumed() -> None:
    code = "from stellaops_runtime.agent.capabilities import bpf_program_load_permitted as f; print(f()[0])"
    as_root = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert as_root.stdout.strip() == "True"  # the test machines are root on a real kernel
    unprivileged = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
         "--bounding-set=-all", sys.executable, "-c", code],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert unprivileged.stdout.strip() == "False"
    assert json.dumps(detect_kernel()["bpf_permitted"]) == "true"
