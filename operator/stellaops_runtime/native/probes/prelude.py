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

Stacks: one stack-trace map (``stella_stacks``, ``stack_map_entries`` buckets)
holds every stack any probe takes, user and kernel alike; it exists only when
some probe takes a stack (``NativeConfig.stack_map``). Ids are not reused
(no BPF_F_REUSE_STACKID): a stack whose bucket holds another one is not
stored, its id is -1 and ``stack_lost`` counts it; the event is emitted all
the same.
"""

from __future__ import annotations

from stellaops_runtime.native import records
from stellaops_runtime.native.config import MAX_CGROUPS, NativeConfig, effective_burst

TOKEN = 1_000_000_000  # one token in bucket units (rate * elapsed_ns adds units)


def c_source(cfg: NativeConfig, *, ring_buffer: bool) -> str:
    out = [
        "#ifndef __always_inline\n#define __always_inline inline __attribute__((always_inline))\n#endif\n",
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
    if cfg.stack_map():
        out.append(f"BPF_STACK_TRACE(stella_stacks, {cfg.stack_map_entries});\n")
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


def take_stacks(var: str, kind: int, *, ctx: str, kernel: str, user: str) -> str:
    """C statements filling the stack ids of record ``var`` (a ``_st`` struct) and its flag.

    ``kernel`` and ``user`` are C conditions ("1", "0" or a test); for "0" no
    code is generated. A stack that cannot be stored leaves its id -1 and is
    counted as ``stack_lost`` of ``kind``; the record is emitted regardless.
    """
    out = [
        f"    {var}->flags |= {records.FLAG_STACK_IDS};\n",
        f"    {var}->user_stack_id = -1;\n",
        f"    {var}->kernel_stack_id = -1;\n",
    ]
    for cond, field, flags in ((kernel, "kernel_stack_id", "0"), (user, "user_stack_id", "BPF_F_USER_STACK")):
        if cond == "0":
            continue
        out.append(
            f"    if ({cond}) {{\n"
            f"        {var}->{field} = stella_stacks.get_stackid({ctx}, {flags});\n"
            f"        if ({var}->{field} < 0) stella_count({kind}, {records.C_STACK_LOST});\n"
            "    }\n"
        )
    return "".join(out)
