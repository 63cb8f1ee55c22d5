"""What every probe shares: output channel, counters, and the in-kernel filters.

Filtering happens before an event costs anything in user space (the seed's
signal pipeline, stage 1):

- cgroup allow map: with ``cgroup_allow`` set, only those cgroup ids pass;
- per-cgroup token bucket: ``rate_per_second`` tokens a second, at most
  ``burst`` held, for syscall and uprobe events (exec events are lifecycle and
  never limited);
- sampling: 1 in ``syscall_sample_every`` syscall events is emitted;
- period (a policy's ``rateLimit``, as Tetragon applies it): per thread and
  probe (syscall number, uprobe target), one event per period; the others
  are dropped until the period since the last one passed is over.

Every decision is counted per probe kind in a per-CPU array (records.COUNTERS),
so ``seen == cgroup_filtered + period_limited + rate_limited + sampled_out +
lost + emitted``.

Stacks: taken with ``bpf_get_stack`` straight into the record (kernel 4.18+,
the same release as ``bpf_get_current_cgroup_id``, which every probe uses, so
every kernel that loads these programs has it). A stacked record is built in a
per-CPU scratch copy (``stella_scratch_<kind>``, too big for the BPF stack),
the kernel frames first and the user frames right after them, and only the
bytes used are output (tracepoint programs never interleave on one CPU: the
kernel runs one at a time there, its ``bpf_prog_active``). Uprobe programs may be preempted midway on newer
kernels, so with the ring buffer their records are reserved there whole
(private to the call; the reader cuts them to the frames walked) instead.
There is no stack-trace map: nothing fills up on a long-running node and no
record can name another stack's frames. A walk that fails or finds no frame
counts ``stack_lost`` of the kind; the event is emitted all the same.
"""

from __future__ import annotations

from stellaops_runtime.native import records
from stellaops_runtime.native.config import MAX_CGROUPS, NativeConfig, effective_burst

TOKEN = 1_000_000_000  # one token in bucket units (rate * elapsed_ns adds units)


# Kinds whose programs may be preempted midway (uprobes: run with only migration disabled on newer
# kernels); their stacked records are reserved in the ring buffer, not built in a shared scratch copy.
PREEMPTIBLE_KINDS = (records.KIND_UPROBE,)


def stack_slots(cfg: NativeConfig, kind: int) -> tuple[int, int]:
    """(kernel, user) addresses a record of ``kind`` has room for: ``stack_depth`` for each stack
    some probe of that kind may take, 0 for the others."""
    d = cfg.stack_depth
    if kind == records.KIND_SYSCALL:
        return d * bool(cfg.kernel_stack_syscalls), d * bool(cfg.user_stack_syscalls)
    if kind == records.KIND_TCP:
        return d * cfg.tcp_stacks() * cfg.tcp_kernel_stacks, d * cfg.tcp_stacks() * cfg.tcp_user_stacks
    if kind == records.KIND_UPROBE:
        return 0, d * bool(cfg.uprobes and cfg.user_stacks)
    return 0, 0


def c_source(cfg: NativeConfig, *, ring_buffer: bool) -> str:
    out = [
        "#ifndef __always_inline\n#define __always_inline inline __attribute__((always_inline))\n#endif\n",
        # ``v`` at most ``max``, bounded in the very register the next use takes (see emit_end_stacked).
        '#define STELLA_CLAMP(v, max) ({ u64 _v = (v); asm volatile("" : "+r"(_v)); '
        'if (_v > (max)) _v = (max); asm volatile("" : "+r"(_v)); _v; })\n',
        f"#define STELLA_NUM_COUNTERS {len(records.COUNTERS)}\n",
    ]
    out.append(f"BPF_PERCPU_ARRAY(stella_counters, u64, {records.NUM_KINDS * len(records.COUNTERS)});\n")
    if ring_buffer:
        out.append(f"BPF_RINGBUF_OUTPUT(stella_events, {cfg.ring_buffer_pages});\n")
    else:
        out.append("BPF_PERF_OUTPUT(stella_events);\n")
    out.append(f"BPF_HASH(stella_cgroup_allow, u64, u8, {MAX_CGROUPS});\n")
    out.append("struct stella_bucket { u64 tokens; u64 last_ns; };\n")
    out.append('BPF_TABLE("lru_hash", u64, struct stella_bucket, stella_buckets, 16384);\n')
    out.append("BPF_PERCPU_ARRAY(stella_sample, u64, 1);\n")
    for kind in records.STACK_KINDS:
        kernel, user = stack_slots(cfg, kind)
        if kernel + user and not (ring_buffer and kind in PREEMPTIBLE_KINDS):
            name = records.c_struct_name(kind, stacked=True)
            out.append(f"BPF_PERCPU_ARRAY(stella_scratch_{records.KIND_NAMES[kind]}, struct {name}, 1);\n")
    periods = bool(cfg.syscall_periods or cfg.uprobe_periods)
    out.append("struct stella_period_key { u32 tid; u32 kind; u32 id; u32 pad; };\n")
    out.append('BPF_TABLE("lru_hash", struct stella_period_key, u64, stella_periods, 65536);\n')
    burst = effective_burst(cfg)
    out.append(
        f"""
static __always_inline void stella_count(u32 kind, u32 what) {{
    u32 idx = kind * STELLA_NUM_COUNTERS + what;
    u64 *c = stella_counters.lookup(&idx);
    if (c) *c += 1;
}}

/* 1 when the event may be emitted; every refusal is counted. ``id``: the probe within its kind
   (syscall number, uprobe target) for the period filter, which ``period_ns`` 0 turns off. */
static __always_inline int stella_admit_p(u32 kind, u64 cg, int limited, int sampled, u32 id,
                                          u64 period_ns) {{
    stella_count(kind, {records.C_SEEN});
#if {int(bool(cfg.cgroup_allow))}
    if (!stella_cgroup_allow.lookup(&cg)) {{ stella_count(kind, {records.C_CGROUP}); return 0; }}
#endif
#if {int(periods)}
    if (period_ns) {{
        struct stella_period_key pk = {{ .tid = (u32)bpf_get_current_pid_tgid(), .kind = kind, .id = id }};
        u64 t = bpf_ktime_get_ns();
        u64 *last = stella_periods.lookup(&pk);
        if (last && t - *last < period_ns) {{ stella_count(kind, {records.C_PERIOD}); return 0; }}
        stella_periods.update(&pk, &t);
    }}
#endif
#if {int(cfg.syscall_sample_every > 1)}
    if (sampled) {{
        u32 zero = 0;
        u64 *n = stella_sample.lookup(&zero);
        if (n) {{
            u64 v = *n;
            *n = v + 1;
            if (v % {cfg.syscall_sample_every}) {{ stella_count(kind, {records.C_SAMPLED}); return 0; }}
        }}
    }}
#endif
#if {int(cfg.rate_per_second > 0)}
    if (limited) {{
        u64 now = bpf_ktime_get_ns();
        u64 cap = {burst}ULL * {TOKEN}ULL;
        struct stella_bucket *b = stella_buckets.lookup(&cg);
        if (!b) {{
            struct stella_bucket fresh = {{ .tokens = cap - {TOKEN}ULL, .last_ns = now }};
            stella_buckets.update(&cg, &fresh);
            return 1;
        }}
        u64 elapsed = now - b->last_ns;
        u64 tokens = b->tokens;
        if (elapsed >= cap / {cfg.rate_per_second}ULL) tokens = cap;
        else tokens += elapsed * {cfg.rate_per_second}ULL;
        if (tokens > cap) tokens = cap;
        b->last_ns = now;
        if (tokens < {TOKEN}ULL) {{
            b->tokens = tokens;
            stella_count(kind, {records.C_RATE});
            return 0;
        }}
        b->tokens = tokens - {TOKEN}ULL;
    }}
#endif
    return 1;
}}

static __always_inline int stella_admit(u32 kind, u64 cg, int limited, int sampled) {{
    return stella_admit_p(kind, cg, limited, sampled, 0, 0);
}}

static __always_inline void stella_header(void *rec, u32 kind, u64 cg) {{
    struct stella_exec *h = rec;  /* every record starts with the same header */
    u64 id = bpf_get_current_pid_tgid();
    h->kind = kind;
    h->flags = 0;
    h->reserved = 0;
    h->pid = id >> 32;
    h->tid = (u32)id;
    h->uid = (u32)bpf_get_current_uid_gid();
    h->ktime_ns = bpf_ktime_get_ns();
    h->cgroup_id = cg;
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
}}
"""
    )
    return "".join(out)


def emit_begin(struct_name: str, var: str, kind: int, *, ring_buffer: bool) -> str:
    """C statements that give ``var`` (a pointer to a record) or return after counting a loss."""
    if ring_buffer:
        return (
            f"    struct {struct_name} *{var} =\n"
            f"        stella_events.ringbuf_reserve(sizeof(struct {struct_name}));\n"
            f"    if (!{var}) {{ stella_count({kind}, {records.C_LOST}); return 0; }}\n"
        )
    # Perf buffer: the record lives on the BPF stack (all records are < 512 bytes).
    return f"    struct {struct_name} {var}_buf = {{}};\n    struct {struct_name} *{var} = &{var}_buf;\n"


def emit_end(struct_name: str, var: str, kind: int, *, ring_buffer: bool, ctx: str = "ctx") -> str:
    """Submit the record (``ctx``: the program's context argument, ``args`` in a TRACEPOINT_PROBE)."""
    if ring_buffer:
        return (
            f"    stella_events.ringbuf_submit({var}, 0);\n    stella_count({kind}, {records.C_EMITTED});\n"
        )
    return (
        f"    if (stella_events.perf_submit({ctx}, {var}, sizeof(struct {struct_name})) < 0)\n"
        f"        stella_count({kind}, {records.C_LOST});\n"
        f"    else\n"
        f"        stella_count({kind}, {records.C_EMITTED});\n"
    )


def emit_begin_stacked(kind: int, var: str, *, reserve: bool = False) -> str:
    """C statements that give ``var``, the kind's per-CPU scratch record (see the module docstring).

    ``reserve`` (ring buffer only): room for the whole record reserved in the ring buffer instead,
    for programs that may be preempted midway (uprobes on newer kernels run with only migration
    disabled): a scratch copy shared per CPU could then be overwritten by another task's event.
    """
    struct_name = records.c_struct_name(kind, stacked=True)
    if reserve:
        return emit_begin(struct_name, var, kind, ring_buffer=True)
    name = records.KIND_NAMES[kind]
    return (
        "    u32 stella_zero = 0;\n"
        f"    struct {struct_name} *{var} = stella_scratch_{name}.lookup(&stella_zero);\n"
        f"    if (!{var}) {{ stella_count({kind}, {records.C_LOST}); return 0; }}\n"
    )


def take_stacks(var: str, kind: int, *, ctx: str, kernel: str, user: str, cfg: NativeConfig) -> str:
    """C statements walking the stacks into scratch record ``var`` and setting its counts and flag.

    ``kernel`` and ``user`` are C conditions ("1", "0" or a test); for "0" no
    code is generated. The kernel frames go to the start of ``addrs``, the
    user frames right after them. A walk that fails or finds nothing leaves
    that count 0 and is counted as ``stack_lost`` of ``kind``.
    """
    kslots, uslots = stack_slots(cfg, kind)
    out = [
        f"    {var}->flags |= {records.FLAG_STACKS};\n",
        "    u32 stella_kn = 0, stella_un = 0;\n",
    ]
    if kernel != "0" and kslots:
        out.append(
            f"    if ({kernel}) {{\n"
            f"        long r = bpf_get_stack({ctx}, &{var}->addrs[0], {kslots * 8}, 0);\n"
            f"        if (r > 0) stella_kn = (u32)r / 8; else stella_count({kind}, {records.C_STACK_LOST});\n"
            "    }\n"
            f"    stella_kn = STELLA_CLAMP(stella_kn, {kslots});\n"
        )
    if user != "0" and uslots:
        out.append(
            f"    if ({user}) {{\n"
            f"        u64 at = STELLA_CLAMP(stella_kn, {kslots});\n"
            f"        long r = bpf_get_stack({ctx}, &{var}->addrs[at], {uslots * 8}, BPF_F_USER_STACK);\n"
            f"        if (r > 0) stella_un = (u32)r / 8; else stella_count({kind}, {records.C_STACK_LOST});\n"
            "    }\n"
            f"    stella_un = STELLA_CLAMP(stella_un, {uslots});\n"
        )
    out.append(f"    {var}->user_n = stella_un;\n    {var}->kernel_n = stella_kn;\n")
    out.append(f"    {var}->stack_pad = 0;\n")
    return "".join(out)


def emit_end_stacked(kind: int, var: str, *, ring_buffer: bool, ctx: str, reserve: bool = False) -> str:
    """Output the used part of scratch record ``var``: its fixed fields and the frames walked.

    ``reserve``: ``var`` is a reserved ring buffer record (emit_begin_stacked): submitted whole;
    the reader cuts it to the frames its counts say (records.record_size)."""
    name = records.c_struct_name(kind, stacked=True)
    if reserve:
        return emit_end(name, var, kind, ring_buffer=True)
    # STELLA_CLAMP's empty asm statements keep clang from checking the bound on one copy of the
    # size and passing another: the verifier must see the very register it is given bounded.
    size = (
        f"    u64 stella_size = STELLA_CLAMP(__builtin_offsetof(struct {name}, addrs)\n"
        f"        + (u64)(stella_kn + stella_un) * 8, sizeof(struct {name}));\n"
    )
    if ring_buffer:
        out = f"    long stella_rc = stella_events.ringbuf_output({var}, stella_size, 0);\n"
    else:
        out = f"    long stella_rc = stella_events.perf_submit({ctx}, {var}, stella_size);\n"
    return (
        size
        + out
        + f"    if (stella_rc < 0) stella_count({kind}, {records.C_LOST});\n"
        + f"    else stella_count({kind}, {records.C_EMITTED});\n"
    )
