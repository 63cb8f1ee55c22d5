"""Process exec through the ``sched:sched_process_exec`` tracepoint.

The tracepoint fires after the new image is in place, with the path the
kernel resolved (``filename``) and the pid; comm is already the new one.
Exec events are filtered by cgroup only: they are the lifecycle every other
event is read against, so they are never rate limited or sampled.
"""

from __future__ import annotations

from typing import Any

from stellaops_runtime.native import records
from stellaops_runtime.native.probes.prelude import emit_begin, emit_end

TRACEPOINT = "sched:sched_process_exec"


def c_source(*, ring_buffer: bool) -> str:
    k = records.KIND_EXEC
    return (
        "TRACEPOINT_PROBE(sched, sched_process_exec) {\n"
        "    u64 cg = bpf_get_current_cgroup_id();\n"
        f"    if (!stella_admit({k}, cg, 0, 0)) return 0;\n"
        + emit_begin("stella_exec", "e", k, ring_buffer=ring_buffer)
        + f"    stella_header(e, {k}, cg);\n"
        "    e->old_pid = args->old_pid;\n"
        "    e->pad = 0;\n"
        "    TP_DATA_LOC_READ_STR(&e->filename, filename, sizeof(e->filename));\n"
        + emit_end("stella_exec", "e", k, ring_buffer=ring_buffer, ctx="args")
        + "    return 0;\n}\n"
    )


def attach(b: Any) -> list[tuple[str, str]]:
    """TRACEPOINT_PROBE attaches itself when BCC loads the program: nothing to do, nothing failed."""
    del b
    return []
