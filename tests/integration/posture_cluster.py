"""What the operator's posture tests put in kmock, and a pod's posture read back.

test_operator_posture_in_force.py, test_operator_native_omitted_posture.py and
test_operator_probe_config_full.py each wrote these out: ObservationNodes of a
Tetragon and a native node (created, then their status, as the agent does),
the RuntimeObserver's spec, the policies that together pass the probe
ConfigMap's 1 MiB, and the (annotation, reason, level labels) of a pod.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from stellaops_runtime.contracts.crds import (
    API_VERSION,
    NODE_KIND,
    OBSERVE_DEEP_LABEL,
    OBSERVE_LABEL,
    POLICY_KIND,
    POSTURE_ANNOTATION,
    POSTURE_REASON_ANNOTATION,
)
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, obj

CAPS = {
    "btf": True,
    "bpfPermitted": True,
    "tracepoints": True,
    "uprobes": True,
    "kprobes": True,
    "usdt": True,
    "tetragon": {"reachable": True, "address": "unix:///t.sock", "version": "v1.7.0"},
}
MEDIUM = [f"m{i}" for i in range(4)]  # ~170 KB each: together they fit
BIG = "big"  # ~440 KB: with the others, past 1 MiB; it is the one left out


def observation_node(name: str, source: str) -> dict[str, Any]:
    """A node's ObservationNode, its heartbeat now; a native node cannot reach Tetragon."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict[str, Any] = {"source": source, "heartbeatTime": now, "capabilities": CAPS, "policies": []}
    if source == "native":
        status |= {"maxPosture": "EbpfDeep", "capabilities": CAPS | {"tetragon": {"reachable": False}}}
    return obj(API_VERSION, NODE_KIND, name, spec={"nodeName": name}, status=status)


async def add_nodes(c: Cluster, nodes: Iterable[tuple[str, str]]) -> None:
    """Each (node, source): the Node, and its ObservationNode as the agent writes it."""
    for node, source in nodes:
        await c.create(obj("v1", "Node", node))
        on = observation_node(node, source)  # as the agent does it: create, then the status
        await c.create(on)
        await c.patch(r.OBSERVATION_NODES, node, {"status": on["status"]}, status=True)


def observer_spec(agent_namespace: str) -> dict[str, Any]:
    return {
        "agentNamespace": agent_namespace,
        "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
        "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
    }


def symbols_policy(name: str, symbols: int) -> dict[str, Any]:
    """A policy of pods ``app: name`` with ``symbols`` uprobe symbols (its probe entry's size)."""
    fn = {
        "binaryPath": f"/usr/lib/lib{name}.so",
        "symbols": [f"{name}_function_{j:06d}" for j in range(symbols)],
    }
    return {"podSelector": {"matchLabels": {"app": name}}, "maxLevel": "EbpfDeep", "functions": [fn]}


async def add_past_full_policies(c: Cluster, namespace: str) -> None:
    """The MEDIUM policies, which fit in the probe ConfigMap together, and BIG, which then does not."""
    for name, symbols in [*((m, 8_000) for m in MEDIUM), (BIG, 20_000)]:
        spec = symbols_policy(name, symbols)
        await c.create(obj(API_VERSION, POLICY_KIND, name, namespace=namespace, spec=spec))


def pod_posture(cluster: Cluster, name: str, namespace: str) -> tuple[str, str, set[str]]:
    """(posture annotation, reason, the operator's level labels) of a pod."""
    meta = (cluster.stored(r.PODS, name, namespace) or {}).get("metadata") or {}
    ann, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    ours = {k for k in labels if k in (OBSERVE_LABEL, OBSERVE_DEEP_LABEL)}
    return str(ann.get(POSTURE_ANNOTATION) or ""), str(ann.get(POSTURE_REASON_ANNOTATION) or ""), ours
