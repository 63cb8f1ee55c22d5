"""What native probes can do on this node, and the posture that allows: a report, never an exception.

Each check looks at the kernel itself (a map or program actually created, a
tracefs format actually read), not at a version number, and each missing piece
comes with a sentence saying what it costs and how to get it. The posture is
the highest level all of whose needs are met:

- Passive: BPF programs load, BCC compiles, ``sched:sched_process_exec`` exists;
- ActiveTracing: plus ``raw_syscalls:sys_enter``;
- EbpfDeep: plus uprobes and stacks: ``bpf_get_stack`` in a tracepoint
  program (the probes carry stacks in their records with it, probes/prelude.py)
  and, still checked, a stack-trace map;
- FullInstrumentation: plus USDT (uprobes whose semaphores the kernel sets:
  ``ref_ctr_offset``, kernel 4.20+).
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from typing import Any

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native import bpfsys, headershim
from stellaops_runtime.native.bccimport import load_bcc

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
PMU_DIR = "/sys/bus/event_source/devices"
BTF_PATH = "/sys/kernel/btf/vmlinux"

EXEC_TRACEPOINT = "sched/sched_process_exec"
SYSCALL_TRACEPOINT = "raw_syscalls/sys_enter"
TCP_TRACEPOINT = "sock/inet_sock_set_state"


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str  # what was found, or why not and what it costs

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(slots=True)
class Report:
    kernel: str
    machine: str
    checks: list[Check] = field(default_factory=list)
    posture: Posture = Posture.NONE
    tracefs: str = ""  # where tracefs is mounted ('' when not)
    kernel_source: str = ""  # the header tree BCC compiles against (real or our shim)
    missing: list[str] = field(default_factory=list)  # what keeps the posture from the next level

    def ok(self, name: str) -> bool:
        return any(c.name == name and c.ok for c in self.checks)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "machine": self.machine,
            "posture": str(self.posture),
            "tracefs": self.tracefs,
            "kernelSource": self.kernel_source,
            "checks": [c.to_dict() for c in self.checks],
            "missing": list(self.missing),
        }


def find_tracefs(*, mount: bool = False) -> tuple[str, str]:
    """(tracefs directory, '') or ('', why not); with ``mount`` tries to mount it first."""
    for d in TRACEFS_DIRS:
        if os.path.isdir(os.path.join(d, "events")):
            return d, ""
    if mount:
        try:
            r = subprocess.run(
                ["mount", "-t", "tracefs", "nodev", TRACEFS_DIRS[0]],
                capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as e:
            return "", f"tracefs is not mounted and mounting it failed: {e}"
        if r.returncode == 0 and os.path.isdir(os.path.join(TRACEFS_DIRS[0], "events")):
            return TRACEFS_DIRS[0], ""
        return "", f"tracefs is not mounted and mounting it failed: {r.stderr.strip() or r.returncode}"
    return "", (
        f"tracefs is not mounted (mount -t tracefs nodev {TRACEFS_DIRS[0]}; in a pod, mount the "
        "host's /sys/kernel/tracing): no tracepoint or uprobe can be attached"
    )


def _tracepoint(tracefs: str, name: str) -> Check:
    label = "tracepoint " + name.replace("/", ":")
    if not tracefs:
        return Check(label, False, "tracefs unavailable")
    path = os.path.join(tracefs, "events", name, "format")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            f.read(1)
    except OSError as e:
        return Check(label, False, f"{path}: {e.strerror or e}: the kernel lacks this tracepoint")
    return Check(label, True, path)


def _pmu(kind: str, tracefs: str) -> Check:
    pmu = os.path.join(PMU_DIR, kind, "type")
    if os.path.isfile(pmu):
        return Check(f"{kind}s", True, f"perf PMU {kind} ({pmu})")
    legacy = os.path.join(tracefs, f"{kind}_events") if tracefs else ""
    if legacy and os.path.exists(legacy):
        return Check(f"{kind}s", True, f"tracefs {legacy}")
    config = "CONFIG_UPROBE_EVENTS" if kind == "uprobe" else "CONFIG_KPROBES / CONFIG_KPROBE_EVENTS"
    return Check(f"{kind}s", False, f"no {kind} PMU and no {kind}_events: kernel built without {config}")


def detect(*, mount_tracefs: bool = False, compile_test: bool = False, cache_dir: str = "") -> Report:
    """Every check, the posture they allow, and what is missing for the next level.

    ``compile_test`` compiles and loads a tracepoint program through BCC (about
    half a second): the only proof that BCC works with the header tree it got.
    """
    rep = Report(kernel=platform.release(), machine=platform.machine())
    add = rep.checks.append
    ok, why = bpfsys.load_trivial_tracepoint_program()
    add(Check("bpf syscall", ok, "a tracepoint program loads" if ok else f"{why}: needs CAP_BPF+CAP_PERFMON "
              "or CAP_SYS_ADMIN and CONFIG_BPF_SYSCALL"))  # fmt: skip
    add(Check("btf", os.path.isfile(BTF_PATH), BTF_PATH if os.path.isfile(BTF_PATH) else
              f"{BTF_PATH} missing (CONFIG_DEBUG_INFO_BTF): not needed by BCC, noted for CO-RE"))  # fmt: skip
    rb_ok, rb_why = bpfsys.create_map(bpfsys.MAP_RINGBUF, 0, 0, 1 << 16)
    add(Check("ring buffer", rb_ok, "BPF_MAP_TYPE_RINGBUF" if rb_ok else f"{rb_why}: perf buffer is used"))
    pb_ok, pb_why = bpfsys.create_map(bpfsys.MAP_PERF_EVENT_ARRAY, 4, 4, 1)
    add(Check("perf buffer", pb_ok, "BPF_MAP_TYPE_PERF_EVENT_ARRAY" if pb_ok else pb_why))
    gs_ok, gs_why = bpfsys.load_get_stack_program()
    add(Check("bpf_get_stack", gs_ok, "a tracepoint program calling bpf_get_stack loads" if gs_ok else
              f"{gs_why}: no stacks (the helper is in kernel 4.18+)"))  # fmt: skip
    tracefs, why = find_tracefs(mount=mount_tracefs)
    rep.tracefs = tracefs
    add(Check("tracefs", bool(tracefs), tracefs or why))
    for tp in (EXEC_TRACEPOINT, SYSCALL_TRACEPOINT, TCP_TRACEPOINT):
        add(_tracepoint(tracefs, tp))
    add(_pmu("uprobe", tracefs))
    add(_pmu("kprobe", tracefs))
    ref = os.path.join(PMU_DIR, "uprobe", "format", "ref_ctr_offset")
    if not rep.ok("uprobes"):
        add(Check("usdt", False, "needs uprobes"))
    elif not os.path.isfile(ref):
        add(Check("usdt", False, f"no {ref} (kernel < 4.20): USDT probes guarded by a semaphore cannot be "
                  "enabled for every process"))  # fmt: skip
    elif not headershim.supported_machine():
        add(Check("usdt", False, f"USDT arguments are decoded for x86_64 only, not {rep.machine}"))
    else:
        add(Check("usdt", True, f"uprobe PMU with semaphores ({ref})"))
    real = headershim.real_headers()
    add(Check("kernel headers", bool(real), real or (
        f"no headers for {rep.kernel} in /lib/modules: BCC compiles against our own minimal header tree "
        "(enough for tracepoints and uprobes)" if headershim.supported_machine() else
        f"no headers for {rep.kernel} and no built-in header tree for {rep.machine}")))  # fmt: skip
    bcc, bcc_why = load_bcc()
    add(Check("bcc", bcc is not None, getattr(bcc, "__file__", "") if bcc is not None else bcc_why))
    if real:
        rep.kernel_source = real
    elif headershim.supported_machine() and cache_dir:
        try:
            rep.kernel_source = str(headershim.ensure(cache_dir))
        except OSError as e:
            add(Check("header tree", False, f"cannot write the header tree under {cache_dir}: {e}"))
    if compile_test:
        add(_compile_check(bcc, rep))
    rep.posture, rep.missing = posture_of(rep, compile_checked=compile_test)
    return rep


def _compile_check(bcc: Any, rep: Report) -> Check:
    if bcc is None:
        return Check("bcc compile", False, "BCC is not importable")
    if not rep.ok(f"tracepoint {EXEC_TRACEPOINT.replace('/', ':')}"):
        return Check("bcc compile", False, "no sched:sched_process_exec tracepoint to compile against")
    from stellaops_runtime.native.loader import MAX_DIAGNOSTICS, captured_output, compile_env

    text = "TRACEPOINT_PROBE(sched, sched_process_exec) { return args->pid < 0; }\n"
    diagnostics: list[str] = []
    try:
        with compile_env(rep.kernel_source), captured_output(diagnostics):
            b = bcc.BPF(text=text.encode())
            b.cleanup()
    except Exception as e:  # BCC raises bare Exception with clang's errors on stderr
        detail = " ".join(" ".join(diagnostics).split())[-MAX_DIAGNOSTICS:]
        return Check("bcc compile", False, f"BCC could not compile a tracepoint program: {e}: {detail}")
    return Check(
        "bcc compile", True, f"compiled and attached against {rep.kernel_source or 'default headers'}"
    )


def posture_of(rep: Report, *, compile_checked: bool) -> tuple[Posture, list[str]]:
    """The highest posture whose needs are all met, and what the next level lacks."""
    levels: list[tuple[Posture, list[str]]] = [
        (
            Posture.PASSIVE,
            ["bpf syscall", "bcc", "tracefs", "tracepoint sched:sched_process_exec"]
            + (["bcc compile"] if compile_checked else []),
        ),
        (Posture.ACTIVE_TRACING, ["tracepoint raw_syscalls:sys_enter"]),
        (Posture.EBPF_DEEP, ["uprobes", "bpf_get_stack"]),
        (Posture.FULL_INSTRUMENTATION, ["usdt"]),
    ]
    posture = Posture.NONE
    if not rep.kernel_source and not rep.ok("kernel headers") and not headershim.supported_machine():
        return posture, ["kernel headers: none installed and no built-in header tree for " + rep.machine]
    for level, needs in levels:
        lacking = [n for n in needs if not rep.ok(n)]
        if lacking:
            why = [f"{n}: {c.detail}" if (c := rep.check(n)) else n for n in lacking]
            return posture, [f"{level} needs " + "; ".join(why)]
        posture = level
    return posture, []
