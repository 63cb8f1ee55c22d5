"""What the native probes dropped between two reads of their kernel counters.

The probes count in the kernel every event they did not deliver: per probe
kind ``rate_limited`` (the per-cgroup token bucket), ``sampled_out`` (1 in N
syscalls kept) and ``lost`` (no room in the output buffer); the perf buffer's
``lost`` (``perf_buffer``) beyond those; and ``programs.recursion_missed``, runs of our
programs the kernel skipped because another BPF program was running on that
CPU. Each of those is a call that happened and that no count holds, so an
increase between two reads is an observation gap over the time between them
(hotsymbols/gaps.py ``native_drop``), never a silent "not observed".

The perf buffer's own ``lost`` counts the very records the probes counted as
``lost`` under their kind (``perf_submit`` failed for want of room, and the
perf ring counted the same record), reported to the reader later. Summing
both counted each lost record twice (20,000 calls, 13,000 lost, made a gap of
26,000 dropped events), so only what it holds beyond the kinds' ``lost`` is a
drop: nothing on a kernel whose ``perf_submit`` reports the failure (the
probes count it), all of it on one that does not.

Pure: the caller reads the counters and the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Per probe kind (native/records.py KIND_NAMES): the counters that are events not delivered.
# (``period_limited`` is a policy's own rateLimit, which Tetragon applies the same way: not a loss.)
KIND_DROPS = ("rate_limited", "sampled_out", "lost")
PERF_BUFFER = "perf_buffer"  # ProbeSet.counters() entry of the perf buffer's lost records
PROGRAMS = "programs"  # ProbeSet.counters() entry of the programs' recursion misses
RECURSION_MISSED = "recursion_missed"
MAX_PENDING = 1_000  # drops not yet taken by the switch; older ones are merged into the oldest kept

Key = tuple[str, str]  # (probe, counter)


def drop_values(kernel: dict[str, dict[str, int]]) -> dict[Key, int]:
    """The drop counters among a ``ProbeSet.counters()`` reading (others ignored, bad values as 0).

    ``("perf_buffer", "lost")`` is what the perf ring lost beyond the kinds' ``lost``.
    """
    out: dict[Key, int] = {}
    perf_lost = 0
    for probe, counters in kernel.items():
        if not isinstance(counters, dict):
            continue
        if probe == PERF_BUFFER:
            v = counters.get("lost")
            perf_lost = v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0
            continue
        names: tuple[str, ...] = (RECURSION_MISSED,) if probe == PROGRAMS else KIND_DROPS
        for name in names:
            v = counters.get(name)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                out[(probe, name)] = v
    # the perf ring's lost records are the kinds' lost ones (module docstring): only the excess
    beyond = perf_lost - sum(n for (_, c), n in out.items() if c == "lost")
    if beyond > 0:
        out[(PERF_BUFFER, "lost")] = beyond
    return out


def increases(prev: dict[Key, int], cur: dict[Key, int]) -> dict[Key, int]:
    """Per counter, what was dropped since ``prev`` (empty: the first read after the probes attached).

    A value lower than before is a new program whose counters started at zero
    (a reload): all of it is new.
    """
    out: dict[Key, int] = {}
    for key, v in cur.items():
        before = prev.get(key, 0)
        inc = v - before if v >= before else v
        if inc > 0:
            out[key] = inc
    return out


def describe(counts: dict[Key, int]) -> str:
    """``syscall rate_limited 120, perf_buffer lost 3`` (largest first)."""
    return ", ".join(f"{p} {c} {n}" for (p, c), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(slots=True)
class NativeDrop:
    """Events the probes dropped between two counter reads (wall clock ns)."""

    start_ns: int
    end_ns: int
    counts: dict[Key, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def add_pending(pending: list[NativeDrop], drop: NativeDrop) -> None:
    """Queue ``drop``; past MAX_PENDING the two oldest merge (the span widens, no count is lost)."""
    pending.append(drop)
    if len(pending) > MAX_PENDING:
        a, b = pending[0], pending.pop(1)
        a.start_ns, a.end_ns = min(a.start_ns, b.start_ns), max(a.end_ns, b.end_ns)
        for k, n in b.counts.items():
            a.counts[k] = a.counts.get(k, 0) + n
