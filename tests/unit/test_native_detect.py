"""detect.py on this very machine: each check must agree with what the kernel's own config says.

Runs everywhere (no ``bpf`` marker): detection must answer, never raise,
whatever the node lacks. The expected answers are read independently from
/proc/config.gz and the filesystem, not from detect.py.
"""

from __future__ import annotations

import gzip
import os
import platform
import subprocess
import sys

import pytest

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native import detect as detect_mod
from stellaops_runtime.native.bccimport import find_package_dir
from stellaops_runtime.native.detect import detect


def kernel_config() -> dict[str, str]:
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            text = f.read()
    except OSError:
        pytest.skip("/proc/config.gz is not available: the kernel's config cannot be compared")
    out = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> detect_mod.Report:
    return detect(mount_tracefs=True, cache_dir=str(tmp_path_factory.mktemp("shim")))


def test_each_check_matches_the_kernel_config(report: detect_mod.Report) -> None:
    cfg = kernel_config()
    assert report.kernel == platform.release()
    assert (
        report.ok("btf")
        == (cfg.get("CONFIG_DEBUG_INFO_BTF") == "y")
        == os.path.isfile("/sys/kernel/btf/vmlinux")
    )
    assert report.ok("uprobes") == (cfg.get("CONFIG_UPROBE_EVENTS") == "y")
    assert report.ok("kprobes") == (cfg.get("CONFIG_KPROBE_EVENTS") == "y")
    assert report.ok("bpf syscall") == (cfg.get("CONFIG_BPF_SYSCALL") == "y")
    assert report.check("stack trace map") is None  # stacks travel in the records (bpf_get_stack): no map
    major, minor = (int(x) for x in platform.release().split(".")[:2])
    assert report.ok("ring buffer") == ((major, minor) >= (5, 8) and cfg.get("CONFIG_BPF_SYSCALL") == "y")
    headers = os.path.isfile(f"/lib/modules/{platform.release()}/build/include/linux/kconfig.h")
    assert report.ok("kernel headers") == headers
    assert report.ok("tracefs") == (cfg.get("CONFIG_TRACING") == "y")
    assert report.ok("tracepoint sched:sched_process_exec") == (cfg.get("CONFIG_TRACEPOINTS") == "y")
    assert report.ok("tracepoint raw_syscalls:sys_enter") == (cfg.get("CONFIG_FTRACE_SYSCALLS") == "y")
    assert report.ok("bcc") == bool(find_package_dir())
    ref_ctr = os.path.isfile("/sys/bus/event_source/devices/uprobe/format/ref_ctr_offset")
    assert report.ok("usdt") == (cfg.get("CONFIG_UPROBE_EVENTS") == "y" and ref_ctr)


def test_this_machine_facts(report: detect_mod.Report) -> None:
    """The facts of the Firecracker VM the project runs on (kernel 6.18): BTF yes, kprobes no, USDT yes."""
    if "-fc-" not in platform.release():
        pytest.skip(f"not the project's Firecracker VM kernel ({platform.release()})")
    assert report.ok("btf")
    assert not report.ok("kprobes")
    assert "CONFIG_KPROBES" in report.check("kprobes").detail  # type: ignore[union-attr]
    assert report.ok("uprobes") and report.ok("ring buffer") and report.ok("bpf_get_stack")
    assert not report.ok("kernel headers")
    assert "our own minimal header tree" in report.check("kernel headers").detail  # type: ignore[union-attr]
    assert report.ok("usdt")
    if find_package_dir():
        assert report.posture == Posture.FULL_INSTRUMENTATION, report.missing
        assert report.missing == []
    else:
        assert report.posture == Posture.NONE
        assert report.missing[0].startswith("Passive needs bcc")


def test_posture_drops_with_a_clear_message_for_each_missing_piece(report: detect_mod.Report) -> None:
    def without(name: str) -> tuple[Posture, list[str]]:
        r = detect_mod.Report(kernel=report.kernel, machine="x86_64", kernel_source="/x")
        r.checks = [
            detect_mod.Check(
                c.name, c.ok if c.name != name else False, c.detail if c.name != name else "gone"
            )
            for c in report.checks
        ]
        for needed in ("usdt", "bpf syscall", "bcc", "tracefs", "tracepoint sched:sched_process_exec",
                       "tracepoint raw_syscalls:sys_enter", "uprobes", "bpf_get_stack"):  # fmt: skip
            if needed != name and not r.ok(needed):
                r.checks.append(detect_mod.Check(needed, True, "assumed"))
        return detect_mod.posture_of(r, compile_checked=False)

    assert without("usdt") == (Posture.EBPF_DEEP, ["FullInstrumentation needs usdt: gone"])
    assert without("uprobes") == (Posture.ACTIVE_TRACING, ["EbpfDeep needs uprobes: gone"])
    assert without("bpf_get_stack") == (Posture.ACTIVE_TRACING, ["EbpfDeep needs bpf_get_stack: gone"])
    assert without("tracepoint raw_syscalls:sys_enter") == (
        Posture.PASSIVE,
        ["ActiveTracing needs tracepoint raw_syscalls:sys_enter: gone"],
    )
    assert without("bcc") == (Posture.NONE, ["Passive needs bcc: gone"])
    assert without("bpf syscall") == (Posture.NONE, ["Passive needs bpf syscall: gone"])


def test_no_tracefs_is_a_message_not_an_exception(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike
) -> None:
    monkeypatch.setattr(detect_mod, "TRACEFS_DIRS", (str(tmp_path / "none"),))
    rep = detect(mount_tracefs=False)
    assert not rep.ok("tracefs")
    assert "tracefs is not mounted" in rep.check("tracefs").detail  # type: ignore[union-attr]
    assert rep.check("tracepoint sched:sched_process_exec").detail == "tracefs unavailable"  # type: ignore[union-attr]
    assert rep.posture == Posture.NONE
    assert rep.missing[0].startswith("Passive needs tracefs: tracefs is not mounted")


def test_bcc_missing_gives_posture_none_and_says_how_to_install() -> None:
    code = (
        "from stellaops_runtime.native.detect import detect; r = detect(compile_test=True); "
        "print(r.posture); print(r.check('bcc').detail); print(r.check('bcc compile').detail)"
    )
    env = dict(os.environ, STELLA_BCC_PYTHON_DIR="/nonexistent/stella")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    posture, bcc, compiled = out.stdout.splitlines()
    assert posture == "None"
    assert bcc == (
        "BCC's Python binding (bcc/__init__.py) is not in /nonexistent/stella "
        "(Debian: apt-get install python3-bpfcc; it brings libbpfcc)"
    )
    assert compiled == "BCC is not importable"
