"""TCP state changes through the ``sock:inet_sock_set_state`` tracepoint, each with the socket's owner.

Many transitions run in softirq or timer context (a SYN-ACK arriving, a FIN,
a retransmit timeout), where the "current" task is whatever the CPU was
interrupted in: taking its pid would file a connection under an unrelated
process and container. So the owner is only taken where the transition is
the socket's own task acting in a system call, and remembered per socket:

- ``connect()``: any -> SYN_SENT; ``listen()``: any -> LISTEN;
- ``close()``/``shutdown()``: ESTABLISHED -> FIN_WAIT1, CLOSE_WAIT -> LAST_ACK,
  LISTEN -> CLOSE.

Every other transition carries the remembered owner, or none: then pid, uid,
cgroup and comm are zero and the record's flag says unattributed (an
accepted socket, until its task closes it). A socket reaching CLOSE is
forgotten; a new child socket (-> SYN_RECV) forgets what a freed socket at
the same address left. Filters: the cgroup allow map and the token bucket
apply to the owner's cgroup; unattributed records have cgroup 0.
"""

from __future__ import annotations

from typing import Any

from stellaops_runtime.native import records
from stellaops_runtime.native.probes.prelude import emit_begin, emit_end

TRACEPOINT = "sock:inet_sock_set_state"

# Linux's TCP states (include/net/tcp_states.h), the tracepoint's oldstate/newstate values.
TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
    7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
}  # fmt: skip
_S = {name: n for n, name in TCP_STATES.items()}
AF_INET, AF_INET6 = 2, 10


def c_source(*, ring_buffer: bool) -> str:
    k = records.KIND_TCP
    s = _S
    local = (
        f"(new == {s['SYN_SENT']} || new == {s['LISTEN']}"
        f" || (old == {s['ESTABLISHED']} && new == {s['FIN_WAIT1']})"
        f" || (old == {s['CLOSE_WAIT']} && new == {s['LAST_ACK']})"
        f" || (old == {s['LISTEN']} && new == {s['CLOSE']}))"
    )
    return (
        "struct stella_tcp_owner { u32 pid; u32 tid; u32 uid; u32 pad; u64 cgroup_id; char comm[16]; };\n"
        'BPF_TABLE("lru_hash", u64, struct stella_tcp_owner, stella_tcp_owners, 65536);\n'
        "TRACEPOINT_PROBE(sock, inet_sock_set_state) {\n"
        "    u64 sk = (u64)args->skaddr;\n"
        "    int old = args->oldstate, new = args->newstate;\n"
        "    struct stella_tcp_owner own = {};\n"
        "    u8 flags = 0;\n"
        f"    if {local} {{\n"
        "        u64 id = bpf_get_current_pid_tgid();\n"
        "        own.pid = id >> 32;\n"
        "        own.tid = (u32)id;\n"
        "        own.uid = (u32)bpf_get_current_uid_gid();\n"
        "        own.cgroup_id = bpf_get_current_cgroup_id();\n"
        "        bpf_get_current_comm(&own.comm, sizeof(own.comm));\n"
        "        flags = 1;\n"
        f"        if (new != {s['CLOSE']}) stella_tcp_owners.update(&sk, &own);\n"
        "    } else {\n"
        f"        if (new == {s['SYN_RECV']}) stella_tcp_owners.delete(&sk);\n"
        "        struct stella_tcp_owner *o = stella_tcp_owners.lookup(&sk);\n"
        "        if (o) { own = *o; flags = 1; }\n"
        "    }\n"
        f"    if (new == {s['CLOSE']}) stella_tcp_owners.delete(&sk);\n"
        f"    if (!stella_admit({k}, own.cgroup_id, 1, 0)) return 0;\n"
        + emit_begin("stella_tcp", "e", k, ring_buffer=ring_buffer)
        + f"    e->kind = {k};\n"
        "    e->flags = flags;\n"
        "    e->reserved = 0;\n"
        "    e->pid = own.pid;\n"
        "    e->tid = own.tid;\n"
        "    e->uid = own.uid;\n"
        "    e->ktime_ns = bpf_ktime_get_ns();\n"
        "    e->cgroup_id = own.cgroup_id;\n"
        "    __builtin_memcpy(&e->comm, &own.comm, sizeof(e->comm));\n"
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
        "    }\n" + emit_end("stella_tcp", "e", k, ring_buffer=ring_buffer, ctx="args") + "    return 0;\n}\n"
    )


def attach(b: Any) -> list[tuple[str, str]]:
    """TRACEPOINT_PROBE attaches itself when BCC loads the program: nothing to do, nothing failed."""
    del b
    return []
