"""The operator's pure core on one core: posture for 1,000 pods x 100 policies, rendering, rollout folding.

The reconcile benchmark measures the whole operator against an API server;
this one isolates the CPU work that does not touch it, so a slow reconcile can
be told apart from slow transforms. Baselines measured in the same run:

- posture: ``compute_posture`` for every pod against 100 policies, against
  the bare label-selector matching of the same pod/policy pairs (the work no
  posture rule can avoid);
- rendering: ``render_policy`` of 100 policies (Tetragon objects + probe
  entries) and the probe ConfigMap, against canonical JSON serialization of
  the same output (the cost of merely writing the result down);
- rollout: ``fold_rollout`` of 100 policies over 1,000 ObservationNodes
  through one shared ``index_nodes`` index, against folding each policy
  from the raw nodes (what a caller without the index pays).

Run: ``.venv/bin/python bench/operator_pure_bench.py`` (medians of 5 runs).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from stellaops_runtime.contracts.crds import CLUSTER_POLICY_KIND, POLICY_KIND, parse_policy_spec
from stellaops_runtime.controller.naming import canonical_json
from stellaops_runtime.controller.posture import (
    compute_posture,
    node_capabilities,
    policy_selects,
    policy_view,
)
from stellaops_runtime.controller.render_policy import probe_entry_key, render_policy, render_probe_configmap
from stellaops_runtime.controller.rollout import fold_rollout, index_nodes

PODS = 1_000
POLICIES = 100
NODES = 1_000
NAMESPACES = 20
LEVELS = ("ActiveTracing", "EbpfDeep", "Passive", "FullInstrumentation")
NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def _policies() -> list[tuple[str, str | None, str, Any]]:
    out = []
    for i in range(POLICIES):
        cluster = i % 5 == 0
        spec = {
            "podSelector": {
                "matchLabels": {"app": f"app-{i % 50}"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}],
            },
            "maxLevel": LEVELS[i % len(LEVELS)],
            "syscalls": ["execve", "openat", "connect", "accept4", "open"][: 1 + i % 5],
            "functions": [
                {"binaryPath": f"/usr/lib/x86_64-linux-gnu/lib{i}.so.1", "symbols": ["f_read", "f_write"]},
                {"purl": f"pkg:deb/debian/lib{i}@1.0.{i}?arch=amd64", "symbols": ["g_open"]},
            ],
            "stackTraces": {"kernel": i % 2 == 0, "user": True},
            "rateLimit": "1m",
        }
        if cluster:
            spec["namespaceSelector"] = {"matchLabels": {"env": "prod"}}
        kind = CLUSTER_POLICY_KIND if cluster else POLICY_KIND
        namespace = None if cluster else f"ns-{i % NAMESPACES}"
        out.append((kind, namespace, f"policy-{i}", parse_policy_spec(spec, cluster=cluster)))
    return out


def _pods() -> list[dict[str, Any]]:
    return [
        {
            "namespace": f"ns-{i % NAMESPACES}",
            "labels": {"app": f"app-{i % 50}", "tier": ("front", "back", "batch")[i % 3], "pod": str(i)},
            "annotations": {"stellaops.io/observe-level": "ebpf-deep"} if i % 7 == 0 else {},
        }
        for i in range(PODS)
    ]


def _nodes(tetragon_names: list[tuple[str | None, str]]) -> list[dict[str, Any]]:
    states = ("ENABLED", "ENABLED", "ENABLED", "LOADING", "LOAD_ERROR")
    out = []
    for n in range(NODES):
        out.append(
            {
                "metadata": {"name": f"node-{n}"},
                "status": {
                    "source": "tetragon",
                    "heartbeatTime": "2026-11-24T09:59:50Z",
                    "capabilities": {"uprobes": True, "tetragon": {"reachable": True}},
                    "policies": [
                        {"name": name, "namespace": ns or "", "state": states[(n + j) % len(states)]}
                        for j, (ns, name) in enumerate(tetragon_names)
                    ],
                },
            }
        )
    return out


def _median(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(*, runs: int) -> dict[str, Any]:
    pin_one_core()
    policies = _policies()
    views = [policy_view(kind=k, namespace=ns, name=name, spec=spec) for k, ns, name, spec in policies]
    pods = _pods()
    ns_labels = {f"ns-{i}": {"env": "prod" if i % 2 else "dev"} for i in range(NAMESPACES)}
    node = node_capabilities(
        {"status": {"source": "tetragon", "capabilities": {"uprobes": True, "tetragon": {"reachable": True}}}}
    )

    def postures() -> None:
        for pod in pods:
            compute_posture(
                annotations=pod["annotations"],
                pod_labels=pod["labels"],
                namespace=pod["namespace"],
                namespace_labels=ns_labels[pod["namespace"]],
                policies=views,
                node=node,
            )

    def matching_only() -> None:
        for pod in pods:
            for v in views:
                policy_selects(
                    v,
                    pod_labels=pod["labels"],
                    namespace=pod["namespace"],
                    namespace_labels=ns_labels[pod["namespace"]],
                )

    rendered = [
        render_policy(kind=k, name=name, namespace=ns, uid=f"uid-{name}", spec=spec)
        for k, ns, name, spec in policies
    ]

    def render_all() -> None:
        out = [
            render_policy(kind=k, name=name, namespace=ns, uid=f"uid-{name}", spec=spec)
            for k, ns, name, spec in policies
        ]
        render_probe_configmap(
            name="stellaops-probes-default",
            namespace="stellaops-system",
            entries={
                probe_entry_key(kind=k, namespace=ns, name=name): r.probe_entry
                for (k, ns, name, _), r in zip(policies, out, strict=True)
            },
            owner=None,
        )

    def serialize_only() -> None:
        canonical_json([r.tracing_policies for r in rendered])
        canonical_json([r.probe_entry for r in rendered])

    tetragon_names = [
        (ns, o["metadata"]["name"])
        for (_, ns, _, _), r in zip(policies, rendered, strict=True)
        for o in r.tracing_policies
    ]
    nodes = _nodes(tetragon_names)

    def fold_all() -> None:
        reports = index_nodes(nodes, now=NOW, stale_after_seconds=90)
        for (_, ns, _, _), r in zip(policies, rendered, strict=True):
            fold_rollout(
                tetragon_policies=[(ns, o["metadata"]["name"]) for o in r.tracing_policies],
                nodes=nodes,
                now=NOW,
                stale_after_seconds=90,
                reports=reports,
            )

    def fold_unindexed() -> None:
        for (_, ns, _, _), r in zip(policies, rendered, strict=True):
            fold_rollout(
                tetragon_policies=[(ns, o["metadata"]["name"]) for o in r.tracing_policies],
                nodes=nodes,
                now=NOW,
                stale_after_seconds=90,
            )

    posture_s = _median(postures, runs)
    match_s = _median(matching_only, runs)
    render_s = _median(render_all, runs)
    serialize_s = _median(serialize_only, runs)
    fold_s = _median(fold_all, runs)
    unindexed_s = _median(fold_unindexed, max(1, runs // 5))  # slow: fewer runs
    return {
        "runs": runs,
        "pods": PODS,
        "policies": POLICIES,
        "nodes": NODES,
        "posture_all_pods_ms": posture_s * 1e3,
        "posture_per_pod_us": posture_s / PODS * 1e6,
        "selector_matching_ms": match_s * 1e3,
        "posture_vs_matching_ratio": posture_s / match_s,
        "render_all_policies_ms": render_s * 1e3,
        "render_per_policy_us": render_s / POLICIES * 1e6,
        "serialize_ms": serialize_s * 1e3,
        "render_vs_serialize_ratio": render_s / serialize_s,
        "rollout_fold_all_policies_ms": fold_s * 1e3,
        "rollout_fold_per_policy_ms": fold_s / POLICIES * 1e3,
        "rollout_unindexed_ms": unindexed_s * 1e3,
        "rollout_unindexed_vs_indexed_ratio": unindexed_s / fold_s,
    }


def main() -> None:
    r = run(runs=5)
    print(f"operator pure core, one core, medians of {r['runs']} runs")
    print(f"{'measure':<52}{'value':>12}")
    rows = [
        (f"posture, {PODS} pods x {POLICIES} policies (ms)", r["posture_all_pods_ms"]),
        ("  per pod (us)", r["posture_per_pod_us"]),
        ("  baseline: selector matching only (ms)", r["selector_matching_ms"]),
        ("  ratio posture / matching", r["posture_vs_matching_ratio"]),
        (f"render {POLICIES} policies + probe ConfigMap (ms)", r["render_all_policies_ms"]),
        ("  per policy (us)", r["render_per_policy_us"]),
        ("  baseline: canonical JSON of the output (ms)", r["serialize_ms"]),
        ("  ratio render / serialize", r["render_vs_serialize_ratio"]),
        (f"fold rollout, {POLICIES} policies x {NODES} nodes (ms)", r["rollout_fold_all_policies_ms"]),
        ("  per policy (ms)", r["rollout_fold_per_policy_ms"]),
        ("  baseline: each policy from raw nodes (ms)", r["rollout_unindexed_ms"]),
        ("  ratio raw / indexed", r["rollout_unindexed_vs_indexed_ratio"]),
    ]
    for name, value in rows:
        print(f"{name:<52}{value:>12.2f}")


if __name__ == "__main__":
    main()
