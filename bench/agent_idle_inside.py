"""The idle agent seen from inside (issue 13): its allocator's figures and, optionally, Python's.

bench/agent_idle_breakdown.py reads the agent's mappings from outside; what the anonymous part is
made of needs the process itself. With ``--inside`` that script starts the agent with a
``sitecustomize.py`` (written here into the run's directory, first on ``PYTHONPATH``; the agent's
own code is unchanged) that, on ``SIGUSR2``, writes a JSON line to a file:

- jemalloc's ``stats.*`` (``allocated``: the bytes the program holds; ``active``: the pages its
  slabs and extents take; ``metadata``: jemalloc's own; ``resident``, ``mapped``, ``retained``),
  in MB, when the process runs under jemalloc (agent/jemalloc.py), read with ``mallctl``;
- the count of modules and of objects the cyclic collector tracks;
- with ``--traced`` (``PYTHONTRACEMALLOC=1``: every Python allocation is traced from the first
  one, which itself costs memory, so RSS is not comparable then): the bytes Python holds and
  the source lines that allocated most of them (``<frozen importlib._bootstrap_external>``'s
  ``get_code`` is the unmarshalled code objects; ``_bootstrap``'s ``_call_with_frames_removed``
  the module bodies' functions, classes and tables).

The hook is installed in both processes of the agent's start (before and after its re-exec under
jemalloc); the signal reaches the one running when the agent is ready.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

SITECUSTOMIZE = """
import os, signal

def _stella_bench_dump(signum, frame):
    import ctypes, gc, json, sys, tracemalloc
    out = {"modules": len(sys.modules), "gc_objects": len(gc.get_objects())}
    libc = ctypes.CDLL(None)
    if hasattr(libc, "mallctl"):
        m = libc.mallctl
        epoch = ctypes.c_uint64(1)
        m(b"epoch", None, None, ctypes.byref(epoch), ctypes.c_size_t(8))
        for key in ("allocated", "active", "metadata", "resident", "mapped", "retained"):
            v, size, name = ctypes.c_size_t(0), ctypes.c_size_t(8), ("stats." + key).encode()
            if m(name, ctypes.byref(v), ctypes.byref(size), None, ctypes.c_size_t(0)) == 0:
                out["jemalloc_" + key + "_mb"] = round(v.value / 1048576, 2)
    if tracemalloc.is_tracing():
        out["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 1048576, 2)
        stats = tracemalloc.take_snapshot().statistics("lineno")[:15]
        out["traced_top"] = [
            [round(s.size / 1048576, 3), s.count, f"{s.traceback[0].filename}:{s.traceback[0].lineno}"]
            for s in stats
        ]
    with open(os.environ["STELLA_BENCH_INSIDE_OUT"], "a") as f:
        f.write(json.dumps(out) + "\\n")

signal.signal(signal.SIGUSR2, _stella_bench_dump)
"""


def prepare(tmp: Path, agent_path: str | None, *, traced: bool) -> dict[str, str]:
    """The environment that installs the hook (see the docstring) for an agent run in ``tmp``."""
    site = tmp / "inside-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in (str(site), agent_path) if p),
        "STELLA_BENCH_INSIDE_OUT": str(tmp / "inside.jsonl"),
    }
    if traced:
        env["PYTHONTRACEMALLOC"] = "1"
    return env


def read(pid: int, tmp: Path, timeout: float = 60.0) -> dict[str, Any]:
    """Ask the agent ``pid`` for its figures and return them (waits for the line to be written)."""
    path = tmp / "inside.jsonl"
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return dict(json.loads(path.read_text().splitlines()[-1]))
        time.sleep(0.2)
    raise RuntimeError("the agent wrote no figures (was the hook installed?)")
