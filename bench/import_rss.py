"""What one import costs the idle agent's RSS, in fresh interpreters under its allocator (issue 13).

agent_idle_ab.py compares two checkouts; this script prices a single piece before anyone changes
code for it: each run starts a fresh interpreter under the agent's allocator (jemalloc with the
agent's ``MALLOC_CONF`` where agent/jemalloc.py would re-execute under it), runs the ``--base``
statements (what the agent has loaded by then), reads ``/proc/self/status``, runs the ``--add``
statements (the piece) and reads it again; a control run does the same without the piece. Runs
alternate (with, without, ...), and the medians of the differences are printed as JSON: VmRSS,
RssAnon, RssFile in MB, and the modules the piece added.

Usage::

    .venv/bin/python bench/import_rss.py --add "import sqlite3" --runs 3 \\
        --base "import stellaops_runtime.agent.runner, stellaops_runtime.rpc" \\
        --base "from stellaops_runtime.store import psycopg_import; psycopg_import.load()"
    .venv/bin/python bench/import_rss.py --add "import stellaops_runtime.agent.http"

``--agent-path`` puts another checkout's ``operator/`` first on ``PYTHONPATH``. The default base
is the runner and the agent's gRPC client, stellaops_runtime.rpc (what every agent has loaded
before its store and endpoints; grpcio until session 49, so earlier figures used that base).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("VmRSS", "RssAnon", "RssFile")
DEFAULT_BASE = "import stellaops_runtime.agent.runner, stellaops_runtime.rpc"

CHILD = textwrap.dedent(
    """
    import json, sys

    def status():
        out = {{}}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in FIELDS:
                    out[key] = int(value.split()[0]) / 1024
        return out

    FIELDS = {fields!r}
    for statement in {base!r}:
        exec(statement, {{}})
    before, modules = status(), set(sys.modules)
    if {add_it!r}:
        for statement in {add!r}:
            exec(statement, {{}})
    after = status()
    print(json.dumps({{"delta": {{k: after[k] - before[k] for k in FIELDS}},
                       "added": sorted(set(sys.modules) - modules)}}))
    """
)


def agent_env(agent_path: str | None) -> dict[str, str]:
    """The environment of a child run: the agent's allocator plan, the checkout on PYTHONPATH."""
    sys.path.insert(0, str(ROOT / "operator"))
    from stellaops_runtime.agent import jemalloc

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (agent_path or str(ROOT / "operator"),)))
    planned = jemalloc.plan(env, jemalloc.find_library()).env
    return dict(planned) if planned is not None else env


def one(env: dict[str, str], base: list[str], add: list[str], *, add_it: bool) -> dict[str, object]:
    code = CHILD.format(fields=FIELDS, base=base, add=add, add_it=add_it)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=300
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--add", action="append", required=True, help="a statement of the piece (repeatable)")
    ap.add_argument(
        "--base", action="append", help=f"a statement run first (repeatable; default {DEFAULT_BASE!r})"
    )
    ap.add_argument("--runs", type=int, default=3, help="runs with and without the piece (default 3)")
    ap.add_argument("--agent-path", help="another checkout's operator/ directory")
    args = ap.parse_args(argv)
    base = args.base or [DEFAULT_BASE]
    env = agent_env(args.agent_path)
    with_it: list[dict[str, float]] = []
    without: list[dict[str, float]] = []
    added: list[str] = []
    for _ in range(args.runs):
        got = one(env, base, args.add, add_it=True)
        with_it.append(got["delta"])  # type: ignore[arg-type]
        added = got["added"]  # type: ignore[assignment]
        without.append(one(env, base, args.add, add_it=False)["delta"])  # type: ignore[arg-type]
    out = {
        "allocator": "jemalloc"
        if "LD_PRELOAD" in env and "jemalloc" in env["LD_PRELOAD"]
        else "interpreter's",
        "runs": args.runs,
        "base": base,
        "add": args.add,
        "median_mb": {k: round(statistics.median(d[k] for d in with_it), 2) for k in FIELDS},
        "control_median_mb": {k: round(statistics.median(d[k] for d in without), 2) for k in FIELDS},
        "modules_added": added,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
