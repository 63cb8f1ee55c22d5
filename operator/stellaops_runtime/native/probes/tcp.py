"""TCP state changes through the ``sock:inet_sock_set_state`` tracepoint, counted as Tetragon counts them.

A policy's ``tcpState: true`` renders, on a Tetragon node, a tracepoint that
posts only the transitions a socket's own task makes in a system call
(``contracts/tcp_state.SYSCALL_TRANSITIONS``: connect, listen, close and
shutdown), under the task that made the call. This probe, by default, emits
exactly those: the filter is generated in the kernel program from the same
list, so a connection gives the same events, with the same pids, whichever
source watched the node. A change that is not selected is dropped before any
counter (as Tetragon's selectors drop it), so ``seen`` counts selected
changes only.

``tcp_all_transitions`` (agent setting ``native.tcpAllTransitions``) emits
every change instead. Most of the others run in softirq or timer context (a
SYN-ACK or FIN arriving, a retransmit timeout), where the "current" task is
whatever the CPU was interrupted in; so the owner is taken only from the
selected transitions and remembered per socket, and every other change
carries that remembered owner, or none: pid, uid, cgroup and comm zero and
the record's flag saying unattributed (an accepted socket, until its task
closes it). A socket reaching CLOSE is forgotten; a new child socket
(-> SYN_RECV) forgets what a freed socket at the same address left.

Filters: the cgroup allow map and the token bucket apply to the owner's
cgroup (the caller's, for a selected change); unattributed records have
cgroup 0.

Stacks (``tcp_kernel_stacks``, ``tcp_user_stacks``): taken for the selected
changes only, where the current task is the one making the change in its
system call (the kernel stack runs from the syscall entry down to the state
change, the user stack is the code that called). The other changes run in
softirq or timer context, on whatever task the CPU interrupted: neither of
its stacks belongs to the socket, so those records carry none (no frames,
not counted as lost).
"""

from __future__ import annotations

from typing import Any

from stellaops_runtime.contracts import tcp_state
from stellaops_runtime.native import records
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.probes.prelude import (
    emit_begin,
    emit_begin_stacked,
    emit_end,
    emit_end_stacked,
    take_stacks,
)

TRACEPOINT = f"{tcp_state.SUBSYSTEM}:{tcp_state.EVENT}"
TCP_STATES = tcp_state.TCP_STATES
_S = tcp_state.STATE_NUMBER
AF_INET, AF_INET6 = tcp_state.FAMILY_NUMBER["AF_INET"], tcp_state.FAMILY_NUMBER["AF_INET6"]


def selected_condition() -> str:
    """The C test (on ``old``, ``new``) of the transitions Tetragon is given, from the contract's list."""
    terms = []
    for old, new in tcp_state.SYSCALL_TRANSITIONS:
        if type(new) is not int or (old is not None and type(old) is not int):
            raise ValueError(f"tcp_state.SYSCALL_TRANSITIONS: ({old!r}, {new!r}) is not a state pair")
        terms.append(f"new == {new}" if old is None else f"(old == {old} && new == {new})")
    return "(" + " || ".join(terms) + ")"


def _stacks(cfg: NativeConfig, cond: str) -> str:
    """The stack code of a record (none without TCP stacks); ``cond``: the task is the caller."""
    if not cfg.tcp_stacks():
        return ""
    return take_stacks(
        "e", records.KIND_TCP, ctx="args", cfg=cfg,
        kernel=cond if cfg.tcp_kernel_stacks else "0", user=cond if cfg.tcp_user_stacks else "0",
    )  # fmt: skip


def _begin(cfg: NativeConfig, ring_buffer: bool) -> str:
    k = records.KIND_TCP
    if cfg.tcp_stacks():
        return emit_begin_stacked(k, "e")
    return emit_begin(records.c_struct_name(k, stacked=False), "e", k, ring_buffer=ring_buffer)


def _end(cfg: NativeConfig, ring_buffer: bool) -> str:
    k = records.KIND_TCP
    if cfg.tcp_stacks():
        return emit_end_stacked(k, "e", ring_buffer=ring_buffer, ctx="args")
    return emit_end(records.c_struct_name(k, stacked=False), "e", k, ring_buffer=ring_buffer, ctx="args")


def _fields(cfg: NativeConfig, ring_buffer: bool) -> str:
    """Fill and submit record ``e`` from the tracepoint's fields (the header is set by the caller)."""
    return (
        "    e->oldstate = old;\n"
        "    e->newstate = new;\n"
        "    e->sport = args->sport;\n"
        "    e->dport = args->dport;\n"
        "    e->family = args->family;\n"
        "    e->protocol = args->protocol;\n"
        "    __builtin_memset(&e->saddr, 0, sizeof(e->saddr));\n"
        "    __builtin_memset(&e->daddr, 0, sizeof(e->daddr));\n"
        f"    if (args->family == {AF_INET6}) {{\n"
        "        bpf_probe_read_kernel(&e->saddr, 16, args->saddr_v6);\n"
        "        bpf_probe_read_kernel(&e->daddr, 16, args->daddr_v6);\n"
        "    } else {\n"
        "        bpf_probe_read_kernel(&e->saddr, 4, args->saddr);\n"
        "        bpf_probe_read_kernel(&e->daddr, 4, args->daddr);\n"
        "    }\n" + _end(cfg, ring_buffer) + "    return 0;\n}\n"
    )


def _selected_source(cfg: NativeConfig, ring_buffer: bool) -> str:
    """Only the selected transitions, each under the task making it (Tetragon's rendering)."""
    k = records.KIND_TCP
    return (
        "TRACEPOINT_PROBE(sock, inet_sock_set_state) {\n"
        "    int old = args->oldstate, new = args->newstate;\n"
        f"    if (!{selected_condition()}) return 0;\n"
        "    u64 cg = bpf_get_current_cgroup_id();\n"
        f"    if (!stella_admit({k}, cg, 1, 0)) return 0;\n"
        + _begin(cfg, ring_buffer)
        + f"    stella_header(e, {k}, cg);\n"
        f"    e->flags = {records.FLAG_TCP_ATTRIBUTED};\n" + _stacks(cfg, "1") + _fields(cfg, ring_buffer)
    )


def _all_source(cfg: NativeConfig, ring_buffer: bool) -> str:
    """Every transition; the owner from the selected ones, remembered per socket for the others."""
    k = records.KIND_TCP
    s = _S
    return (
        "struct stella_tcp_owner { u32 pid; u32 tid; u32 uid; u32 pad; u64 cgroup_id; char comm[16]; };\n"
        'BPF_TABLE("lru_hash", u64, struct stella_tcp_owner, stella_tcp_owners, 65536);\n'
        "TRACEPOINT_PROBE(sock, inet_sock_set_state) {\n"
        "    u64 sk = (u64)args->skaddr;\n"
        "    int old = args->oldstate, new = args->newstate;\n"
        "    struct stella_tcp_owner own = {};\n"
        "    u8 flags = 0;\n"
        "    int caller = 0;  /* the current task makes this change: its stacks are the change's */\n"
        f"    if {selected_condition()} {{\n"
        "        caller = 1;\n"
        "        u64 id = bpf_get_current_pid_tgid();\n"
        "        own.pid = id >> 32;\n"
        "        own.tid = (u32)id;\n"
        "        own.uid = (u32)bpf_get_current_uid_gid();\n"
        "        own.cgroup_id = bpf_get_current_cgroup_id();\n"
        "        bpf_get_current_comm(&own.comm, sizeof(own.comm));\n"
        f"        flags = {records.FLAG_TCP_ATTRIBUTED};\n"
        f"        if (new != {s['CLOSE']}) stella_tcp_owners.update(&sk, &own);\n"
        "    } else {\n"
        f"        if (new == {s['SYN_RECV']}) stella_tcp_owners.delete(&sk);\n"
        "        struct stella_tcp_owner *o = stella_tcp_owners.lookup(&sk);\n"
        f"        if (o) {{ own = *o; flags = {records.FLAG_TCP_ATTRIBUTED}; }}\n"
        "    }\n"
        f"    if (new == {s['CLOSE']}) stella_tcp_owners.delete(&sk);\n"
        f"    if (!stella_admit({k}, own.cgroup_id, 1, 0)) return 0;\n"
        + _begin(cfg, ring_buffer)
        + f"    e->kind = {k};\n"
        "    e->flags = flags;\n"
        "    e->reserved = 0;\n"
        "    e->pid = own.pid;\n"
        "    e->tid = own.tid;\n"
        "    e->uid = own.uid;\n"
        "    e->ktime_ns = bpf_ktime_get_ns();\n"
        "    e->cgroup_id = own.cgroup_id;\n"
        "    __builtin_memcpy(&e->comm, &own.comm, sizeof(e->comm));\n"
        + _stacks(cfg, "caller")
        + _fields(cfg, ring_buffer)
    )


def c_source(cfg: NativeConfig, *, ring_buffer: bool) -> str:
    """The probe's C text: Tetragon's selection, or every transition with ``cfg.tcp_all_transitions``."""
    if cfg.tcp_all_transitions:
        return _all_source(cfg, ring_buffer)
    return _selected_source(cfg, ring_buffer)


def attach(b: Any) -> list[tuple[str, str]]:
    """TRACEPOINT_PROBE attaches itself when BCC loads the program: nothing to do, nothing failed."""
    del b
    return []
