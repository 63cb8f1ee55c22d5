"""Operator benchmark: reconcile 1,000 pods and 100 policies with real kopf against kmock, on one core.

The cluster (kmock's emulator over HTTP, with the tests' API-server
bookkeeping from tests/integration/kubeharness.py) holds 10 namespaces, 20
nodes with ObservationNodes, 1,000 pods (100 per namespace, 10 apps of 10
pods) and 100 ObservationPolicies (one per app). Per run:

- **baseline**: kopf with our handlers and indexes but reconciles switched
  off: the time to list, watch and index the same objects (what kopf costs
  before the operator does any work);
- **first pass**: a fresh operator until the cluster is converged (every pod
  annotated, every policy rendered and its status written): wall time to the
  last write, and the API writes it took, by kind;
- **second pass**: a resync of every key on the converged cluster: the time
  to reconcile all of them again, and the writes (must be 0);
- **restart**: a new operator process on the converged cluster: writes (must be 0).

The emulator runs in the same process and on the same core as the operator,
so the times include the API server's side of every request. Medians over
``runs``; the ratio is first pass / baseline from the same run.

    .venv/bin/python bench/operator_bench.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stellaops_runtime.contracts.crds import API_VERSION, NODE_KIND, POLICY_KIND, POSTURE_ANNOTATION  # noqa: E402
from stellaops_runtime.controller.reconcile import INDEX_PODS, INDEX_POLICIES  # noqa: E402
from stellaops_runtime.kube import resources as r  # noqa: E402
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj  # noqa: E402

NAMESPACES = 10
APPS_PER_NAMESPACE = 10
PODS_PER_APP = 10
NODES = 20
PODS = NAMESPACES * APPS_PER_NAMESPACE * PODS_PER_APP
POLICIES = NAMESPACES * APPS_PER_NAMESPACE
QUIET_S = 0.5


def pin_one_core() -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {cpu})
    return cpu


def _seed(cluster: Cluster) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    caps = {
        "kernelVersion": "6.1.0-18-amd64", "btf": True, "bpfPermitted": True, "tracepoints": True,
        "uprobes": True, "kprobes": True, "usdt": True, "ringBuffer": True,
        "tetragon": {"reachable": True, "address": "unix:///var/run/tetragon/tetragon.sock",
                     "version": "v1.7.0"},
    }  # fmt: skip
    objs = [obj("v1", "Namespace", f"ns-{n}") for n in range(NAMESPACES)]
    for n in range(NODES):
        status = {"source": "tetragon", "heartbeatTime": now, "capabilities": caps, "policies": []}
        objs.append(obj("v1", "Node", f"node-{n}"))
        objs.append(obj(API_VERSION, NODE_KIND, f"node-{n}", spec={"nodeName": f"node-{n}"}, status=status))
    for n in range(NAMESPACES):
        for a in range(APPS_PER_NAMESPACE):
            spec = {
                "podSelector": {"matchLabels": {"app": f"app-{a}"}},
                "maxLevel": "EbpfDeep" if a % 2 else "ActiveTracing",
                "syscalls": ["execve", "connect", "openat"],
            }
            objs.append(obj(API_VERSION, POLICY_KIND, f"app-{a}", namespace=f"ns-{n}", spec=spec))
            for p in range(PODS_PER_APP):
                i = (n * APPS_PER_NAMESPACE + a) * PODS_PER_APP + p
                objs.append(
                    obj(
                        "v1",
                        "Pod",
                        f"app-{a}-{p}",
                        namespace=f"ns-{n}",
                        labels={"app": f"app-{a}"},
                        spec={
                            "nodeName": f"node-{i % NODES}",
                            "containers": [{"name": "c", "image": "busybox"}],
                        },
                    )
                )
    for o in objs:  # stored directly: no watcher runs yet, and kmock's request path is O(objects)
        cluster.put(o)


def _converged(cluster: Cluster) -> bool:
    pods = cluster.listed(r.PODS)
    if len(pods) != PODS or any(
        POSTURE_ANNOTATION not in (p["metadata"].get("annotations") or {}) for p in pods
    ):
        return False
    pols = cluster.listed(r.OBSERVATION_POLICIES)
    return len(pols) == POLICIES and all((p.get("status") or {}).get("observedGeneration") for p in pols)


async def _until_quiet(cluster: Cluster, op: OperatorRun, t0: float, *, converged: bool = False) -> float:
    """Seconds from ``t0`` to the operator's last write, once it is idle and quiet for QUIET_S
    (and, with ``converged``, the cluster is in its final state)."""
    last_count = cluster.mark()
    last_change = time.perf_counter()
    done = not converged
    while True:
        await asyncio.sleep(0.01)
        count = cluster.mark()
        now = time.perf_counter()
        if count != last_count:
            last_count, last_change = count, now
        if not done and len(op.reconciler.scheduler) == 0:
            done = _converged(cluster)
        if done and len(op.reconciler.scheduler) == 0 and now - last_change >= QUIET_S:
            return max(0.0, last_change - t0)


def _by_kind(writes: list[str]) -> dict[str, int]:
    kinds: collections.Counter[str] = collections.Counter()
    for w in writes:
        method, path = w.split(" ", 1)
        parts = path.strip("/").split("/")
        if parts[-1] == "status":
            kinds[f"{method} {parts[-3]}/status"] += 1
        elif method == "POST":
            kinds[f"{method} {parts[-1]}"] += 1
        else:
            kinds[f"{method} {parts[-2]}"] += 1
    return dict(sorted(kinds.items()))


async def _one_run(tmp: Path) -> dict[str, Any]:
    async with Cluster(tmp) as cluster:
        _seed(cluster)
        config = fast_config(cluster, coalesce_seconds=0.2)

        # baseline: kopf lists, watches and indexes everything; no reconcile
        base = OperatorRun(cluster, config, reconcile=False)
        t0 = time.perf_counter()
        async with base:
            while True:
                idx = base.reconciler.indexes
                if len(idx.get(INDEX_PODS) or ()) == PODS and len(idx.get(INDEX_POLICIES) or ()) == POLICIES:
                    break
                await asyncio.sleep(0.005)
            baseline = time.perf_counter() - t0
        assert not cluster.writes(), "the baseline must not write"

        mark = cluster.mark()
        t0 = time.perf_counter()
        async with OperatorRun(cluster, config) as op:
            first = await _until_quiet(cluster, op, t0, converged=True)
            writes = cluster.writes(mark)
            rejected = cluster.writes(mark, rejected=True)
            assert _converged(cluster), "the first pass did not converge"
            stats = dict(op.reconciler.stats.writes)

            mark = cluster.mark()
            runs_before = op.reconciler.scheduler.stats.runs
            keys = PODS + POLICIES + NODES  # every pod, policy and node is one key
            t1 = time.perf_counter()
            op.call(op.reconciler.resync)
            while op.reconciler.scheduler.stats.runs - runs_before < keys or len(op.reconciler.scheduler):  # noqa: ASYNC110
                await asyncio.sleep(0.002)  # the scheduler lives on the operator's thread: poll it
            second_time = time.perf_counter() - t1
            await _until_quiet(cluster, op, t1)
            second = cluster.writes(mark)
        mark = cluster.mark()
        t2 = time.perf_counter()
        async with OperatorRun(cluster, config) as again:
            await _until_quiet(cluster, again, t2)
            restart_time = time.perf_counter() - t2 - QUIET_S
            restart = cluster.writes(mark)
    return {
        "baseline_s": baseline,
        "first_pass_s": first,
        "first_pass_writes": len(writes),
        "first_pass_writes_by_kind": _by_kind(writes),
        "first_pass_rejected_by_kind": _by_kind(rejected),
        "operator_writes_by_kind": stats,
        "second_pass_s": second_time,
        "second_pass_writes": len(second),
        "restart_s": restart_time,
        "restart_writes": len(restart),
    }


def run(*, runs: int = 3) -> dict[str, Any]:
    cpu = pin_one_core()
    logging.getLogger("kopf").setLevel(logging.WARNING)
    results = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix=f"operator-bench-{i}-") as tmp:
            results.append(asyncio.run(_one_run(Path(tmp))))

    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in results))

    out: dict[str, Any] = {
        "cpu": cpu,
        "runs": runs,
        "pods": PODS,
        "policies": POLICIES,
        "nodes": NODES,
        "baseline_kopf_index_s": med("baseline_s"),
        "first_pass_s": med("first_pass_s"),
        "first_pass_writes": med("first_pass_writes"),
        "second_pass_s": med("second_pass_s"),
        "second_pass_writes": max(r["second_pass_writes"] for r in results),
        "restart_s": med("restart_s"),
        "restart_writes": max(r["restart_writes"] for r in results),
        "first_pass_vs_baseline": med("first_pass_s") / med("baseline_s") if med("baseline_s") else None,
        "first_pass_writes_by_kind": results[-1]["first_pass_writes_by_kind"],
        "first_pass_rejected_by_kind": results[-1]["first_pass_rejected_by_kind"],
    }
    return out


def format_table(res: dict[str, Any]) -> str:
    rows = [
        (
            "cluster",
            f"{res['pods']} pods, {res['policies']} policies, {res['nodes']} nodes (cpu {res['cpu']})",
        ),
        ("baseline: kopf list+watch+index", f"{res['baseline_kopf_index_s']:.2f} s"),
        (
            "first pass to converged",
            f"{res['first_pass_s']:.2f} s ({res['first_pass_vs_baseline']:.1f}x baseline)",
        ),
        ("first pass API writes", f"{res['first_pass_writes']:.0f}"),
        ("second pass (resync) writes", f"{res['second_pass_writes']} in {res['second_pass_s']:.2f} s"),
        ("restarted operator writes", f"{res['restart_writes']} in {res['restart_s']:.2f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"operator benchmark (medians of {res['runs']} runs)"]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    lines.append("  first-pass writes by kind (applied):")
    lines += [f"    {k}: {v}" for k, v in res["first_pass_writes_by_kind"].items()]
    lines.append("  first-pass writes the server rejected (kopf's resourceVersion-guarded retries):")
    lines += [f"    {k}: {v}" for k, v in res["first_pass_rejected_by_kind"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(runs=args.runs)
    print(format_table(result))
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
