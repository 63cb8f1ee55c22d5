"""The syscalls a policy asks for, through ``raw_syscalls:sys_enter`` and an in-kernel number filter.

One tracepoint sees every syscall of every process, so the wanted numbers sit
in an array map (``stella_syscall_want``) checked first, before the cgroup
filter, the token bucket and sampling: an unwanted syscall costs one lookup
and is not even counted as seen.

The map's value is a bit set: ``WANT``, and per syscall whether its events
carry the kernel stack (``KERNEL_STACK``) and the user stack (``USER_STACK``).
The kernel stack is taken at the tracepoint, on the syscall's way in
(``entry_SYSCALL_64`` -> ``do_syscall_64`` and what the kernel runs there
before dispatching): the syscall's own function (``__x64_sys_<name>``, the
event's ``function_name``) has not been called yet. The user stack is the
code that made the call. Both are walked with ``bpf_get_stack`` into the
record itself (probes/prelude.py). Without any stack asked for, the program
has no stack code at all and the records keep their plain size.
"""

from __future__ import annotations

import ctypes
from typing import Any

from stellaops_runtime.contracts.syscalls import X86_64
from stellaops_runtime.native import records
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.probes.prelude import (
    emit_begin,
    emit_begin_stacked,
    emit_end,
    emit_end_stacked,
    take_stacks,
)

TRACEPOINT = "raw_syscalls:sys_enter"
MAX_NR = 512
WANT, KERNEL_STACK, USER_STACK = 1, 2, 4


def c_source(cfg: NativeConfig, *, ring_buffer: bool) -> str:
    k = records.KIND_SYSCALL
    stacked = cfg.syscall_stacks()
    struct_name = records.c_struct_name(k, stacked=stacked)
    stacks = ""
    begin = emit_begin(struct_name, "e", k, ring_buffer=ring_buffer)
    end = emit_end(struct_name, "e", k, ring_buffer=ring_buffer, ctx="args")
    if stacked:
        stacks = take_stacks(
            "e", k, ctx="args", cfg=cfg,
            kernel=f"w & {KERNEL_STACK}" if cfg.kernel_stack_syscalls else "0",
            user=f"w & {USER_STACK}" if cfg.user_stack_syscalls else "0",
        )  # fmt: skip
        begin = emit_begin_stacked(k, "e")
        end = emit_end_stacked(k, "e", ring_buffer=ring_buffer, ctx="args")
    return (
        f"BPF_ARRAY(stella_syscall_want, u8, {MAX_NR});\n"
        f"BPF_ARRAY(stella_syscall_period, u64, {MAX_NR});\n"
        "TRACEPOINT_PROBE(raw_syscalls, sys_enter) {\n"
        "    u32 nr = (u32)args->id;\n"
        "    u8 *want = stella_syscall_want.lookup(&nr);\n"
        "    if (!want || !*want) return 0;\n"
        "    u8 w = *want;\n"
        "    u64 cg = bpf_get_current_cgroup_id();\n"
        "    u64 *period = stella_syscall_period.lookup(&nr);\n"
        f"    if (!stella_admit_p({k}, cg, 1, 1, nr, period ? *period : 0)) return 0;\n"
        + begin
        + f"    stella_header(e, {k}, cg);\n"
        "    e->nr = nr;\n"
        f"    e->sample_every = {cfg.syscall_sample_every};\n" + stacks + end + "    return 0;\n}\n"
    )


def numbers(names: tuple[str, ...]) -> list[int]:
    return sorted({X86_64[n] for n in names if n in X86_64 and X86_64[n] < MAX_NR})


def want_bits(cfg: NativeConfig) -> dict[int, int]:
    """Syscall number -> its ``stella_syscall_want`` value."""
    bits = dict.fromkeys(numbers(cfg.syscalls), WANT)
    for names, bit in ((cfg.kernel_stack_syscalls, KERNEL_STACK), (cfg.user_stack_syscalls, USER_STACK)):
        for nr in numbers(names):
            if nr in bits:
                bits[nr] |= bit
    return bits


def attach(b: Any, cfg: NativeConfig) -> list[tuple[str, str]]:
    """Fill the wanted-number map (the tracepoint itself is attached by BCC at load)."""
    want = b[b"stella_syscall_want"]
    for nr, bits in want_bits(cfg).items():
        want[ctypes.c_int(nr)] = ctypes.c_uint8(bits)
    periods = b[b"stella_syscall_period"]
    for name, seconds in cfg.syscall_periods:
        if name in X86_64 and X86_64[name] < MAX_NR:
            periods[ctypes.c_int(X86_64[name])] = ctypes.c_uint64(seconds * 1_000_000_000)
    return []
