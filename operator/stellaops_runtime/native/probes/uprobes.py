"""Uprobes and uretprobes on the functions a policy lists: calls, latency and the caller's stack.

Each target (binary, symbol) gets its own pair of tiny programs that call a
shared body with the target's index. The entry probe applies the filters and
keeps the time per thread and recursion depth; the return probe emits one
record per completed call with its latency and, with ``user_stacks``, the
caller's user stack, walked there with ``bpf_get_stack`` into the record
(probes/prelude.py). At the return the function's own frame is gone: the
innermost frame is the call site in the direct caller (at the entry, before
the function's frame pointer is pushed, a frame-pointer walk would skip that
caller), then its callers. A call whose thread never returns (killed,
longjmp) emits nothing; its kept entry ages out of the LRU map.

No kernel stack is taken: a uprobe fires in user space, with no system call
or kernel code under way, so there is no kernel path to record.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from stellaops_runtime.canonical.elflayout import ElfError
from stellaops_runtime.native import records
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.probes.prelude import (
    emit_begin,
    emit_begin_stacked,
    emit_end,
    emit_end_stacked,
    take_stacks,
)
from stellaops_runtime.native.symaddr import SymbolNotFound, find_address, where_of


def c_source(cfg: NativeConfig, *, ring_buffer: bool) -> str:
    k = records.KIND_UPROBE
    stacked = cfg.user_stacks
    if stacked:
        reserve = ring_buffer  # see prelude.PREEMPTIBLE_KINDS
        begin = emit_begin_stacked(k, "e", reserve=reserve)
        stacks = take_stacks("e", k, ctx="ctx", kernel="0", user="1", cfg=cfg)
        end = emit_end_stacked(k, "e", ring_buffer=ring_buffer, ctx="ctx", reserve=reserve)
    else:
        begin = emit_begin("stella_uprobe", "e", k, ring_buffer=ring_buffer)
        stacks = ""
        end = emit_end("stella_uprobe", "e", k, ring_buffer=ring_buffer)
    parts = [
        "struct stella_up_key { u64 pid_tgid; u32 target; u32 depth; };\n",
        # the entry's cgroup and uid too: a call still in flight when the probes detach is
        # reported from this (in_flight_records)
        "struct stella_up_start { u64 ts; u64 cg; u32 uid; u32 pad; };\n",
        "struct stella_up_depth_key { u64 pid_tgid; u32 target; u32 pad; };\n",
        'BPF_TABLE("lru_hash", struct stella_up_key, struct stella_up_start, stella_up_starts, 65536);\n',
        'BPF_TABLE("lru_hash", struct stella_up_depth_key, u32, stella_up_depths, 65536);\n',
    ]
    parts.append(
        "static __always_inline int stella_up_enter(struct pt_regs *ctx, u32 target, u64 period_ns) {\n"
        "    u64 cg = bpf_get_current_cgroup_id();\n"
        f"    if (!stella_admit_p({k}, cg, 1, 0, target, period_ns)) return 0;\n"
        "    struct stella_up_depth_key dk = { .pid_tgid = bpf_get_current_pid_tgid(), .target = target };\n"
        "    u32 depth = 0;\n"
        "    u32 *d = stella_up_depths.lookup(&dk);\n"
        "    if (d) depth = *d + 1;\n"
        "    stella_up_depths.update(&dk, &depth);\n"
        "    struct stella_up_key key = { .pid_tgid = dk.pid_tgid, .target = target, .depth = depth };\n"
        "    struct stella_up_start st = { .ts = bpf_ktime_get_ns(), .cg = cg,\n"
        "        .uid = (u32)bpf_get_current_uid_gid() };\n"
        "    stella_up_starts.update(&key, &st);\n"
        "    return 0;\n}\n"
        "static __always_inline int stella_up_return(struct pt_regs *ctx, u32 target) {\n"
        "    struct stella_up_depth_key dk = { .pid_tgid = bpf_get_current_pid_tgid(), .target = target };\n"
        "    u32 *d = stella_up_depths.lookup(&dk);\n"
        "    if (!d) return 0;  /* the entry was filtered out, or came before attach */\n"
        "    u32 depth = *d;\n"
        "    if (depth == 0) stella_up_depths.delete(&dk);\n"
        "    else { u32 up = depth - 1; stella_up_depths.update(&dk, &up); }\n"
        "    struct stella_up_key key = { .pid_tgid = dk.pid_tgid, .target = target, .depth = depth };\n"
        "    struct stella_up_start *st = stella_up_starts.lookup(&key);\n"
        "    if (!st) return 0;\n"
        "    u64 ts = st->ts;\n"
        "    stella_up_starts.delete(&key);\n"
        "    u64 cg = bpf_get_current_cgroup_id();\n" + begin + f"    stella_header(e, {k}, cg);\n"
        "    e->target = target;\n"
        "    e->unused = 0;\n"
        "    e->latency_ns = e->ktime_ns - ts;\n" + stacks + end + "    return 0;\n}\n"
    )
    periods = dict(cfg.uprobe_periods)
    for i, t in enumerate(cfg.uprobes):
        ns = periods.get(t.label(), 0) * 1_000_000_000
        parts.append(
            f"int stella_up_enter_{i}(struct pt_regs *ctx) {{ return stella_up_enter(ctx, {i}, {ns}ULL); }}\n"
            f"int stella_up_return_{i}(struct pt_regs *ctx) {{ return stella_up_return(ctx, {i}); }}\n"
        )
    return "".join(parts)


def resolve(
    cfg: NativeConfig, paths: Mapping[int, str] | None = None, *, debug_files: bool = True
) -> dict[int, int | str]:
    """Target index -> its address, or why it cannot be probed: looked up before anything attaches.

    The lookup reads the file within 1 GiB and 120 s (native/symaddr.py); made while probes already
    attached wrote into a buffer nobody read yet, a slow (hostile) file cost their records. ``paths``:
    target index -> the path to read and attach through instead of the target's own (a descriptor
    native/follow.py holds, so the file attached is the one it looked at)."""
    out: dict[int, int | str] = {}
    for i, t in enumerate(cfg.uprobes):
        path = (paths or {}).get(i, t.binary)
        if not os.path.isfile(path):
            out[i] = f"binary {t.binary} not found"
            continue
        try:  # the address is found here: BCC never reads a symbol table (native/symaddr.py)
            out[i] = find_address(
                path, t.symbol, where=where_of(t.binary, t.root, t.module), debug_files=debug_files
            )
        except SymbolNotFound as e:
            out[i] = f"symbol {t.symbol} not found in {t.binary}{e.hint}"
        except (OSError, ElfError) as e:
            out[i] = f"cannot read symbols of {t.binary}: {str(e).replace(path, t.binary)}"
    return out


def attach(
    b: Any,
    cfg: NativeConfig,
    paths: Mapping[int, str] | None = None,
    resolved: dict[int, int | str] | None = None,
) -> list[tuple[str, str]]:
    """Attach every target at its address (:func:`resolve`'s, looked up now when not given); (label,
    why) for each one that failed. The others keep working."""
    if resolved is None:
        resolved = resolve(cfg, paths)
    failed: list[tuple[str, str]] = []
    for i, t in enumerate(cfg.uprobes):
        label = t.label()
        path = (paths or {}).get(i, t.binary)
        addr = resolved.get(i, f"binary {t.binary} not looked up")
        if isinstance(addr, str):
            failed.append((label, addr))
            continue
        entered = False
        try:
            b.attach_uprobe(name=path.encode(), addr=addr, fn_name=f"stella_up_enter_{i}".encode())
            entered = True
            b.attach_uretprobe(name=path.encode(), addr=addr, fn_name=f"stella_up_return_{i}".encode())
        except Exception as e:
            if entered:
                _detach_entry(b, path, addr)
            failed.append((label, f"attach failed: {str(e).replace(path, t.binary)}"))
    return failed


def _detach_entry(b: Any, path: str, addr: int) -> None:
    with contextlib.suppress(Exception):  # already gone: nothing left to undo
        b.detach_uprobe(name=path.encode(), addr=addr)
