"""On a native node, a policy the probe ConfigMap left out gives its pods no more than Passive.

The native probes load only the policy entries the probe ConfigMap holds
(native/policy_config.py); an entry that does not fit in its 1 MiB is left
out and listed in ``policiesOmitted`` (tests/integration/test_operator_probe_config_full.py).
The operator used to count such a policy in the posture of the pods it selects
on native nodes anyway: ``stellaops.io/observe-posture: EbpfDeep`` and the
deep label for a pod whose probes no agent ran. Now the policy gives those pods
at most Passive, the reason says why, a Tetragon node's pod (its
TracingPolicies are loaded there) keeps its level, and the pods get their
level back once room is made. Through the real operator against kmock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import (
    API_VERSION,
    NODE_KIND,
    OBSERVE_DEEP_LABEL,
    OBSERVE_LABEL,
    OBSERVER_KIND,
    POLICY_KIND,
    POSTURE_ANNOTATION,
    POSTURE_REASON_ANNOTATION,
)
from stellaops_runtime.controller.render_agent import probe_configmap_name
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY, probe_entry_key
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, AGENTS_NS, OBSERVER = "scan", "stellaops-system", "fleet"
NATIVE_NODE, TETRAGON_NODE = "node-n", "node-t"
MEDIUM = [f"m{i}" for i in range(4)]  # ~170 KB each: together they fit
BIG = "big"  # ~440 KB: with the others, past 1 MiB; it is the one left out
CAPS = {
    "btf": True,
    "bpfPermitted": True,
    "tracepoints": True,
    "uprobes": True,
    "kprobes": True,
    "usdt": True,
    "tetragon": {"reachable": True, "address": "unix:///t.sock", "version": "v1.7.0"},
}


def _spec(name: str, symbols: int) -> dict[str, Any]:
    fn = {
        "binaryPath": f"/usr/lib/lib{name}.so",
        "symbols": [f"{name}_function_{j:06d}" for j in range(symbols)],
    }
    return {"podSelector": {"matchLabels": {"app": name}}, "maxLevel": "EbpfDeep", "functions": [fn]}


def _observation_node(name: str, source: str) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict[str, Any] = {"source": source, "heartbeatTime": now, "capabilities": CAPS, "policies": []}
    if source == "native":
        status |= {"maxPosture": "EbpfDeep", "capabilities": CAPS | {"tetragon": {"reachable": False}}}
    return obj(API_VERSION, NODE_KIND, name, spec={"nodeName": name}, status=status)


def _pod(name: str, node: str, app: str) -> dict[str, Any]:
    spec = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    return obj("v1", "Pod", name, namespace=NS, labels={"app": app}, spec=spec)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        for ns in (NS, AGENTS_NS):
            await c.create(obj("v1", "Namespace", ns))
        for node, source in ((NATIVE_NODE, "native"), (TETRAGON_NODE, "tetragon")):
            await c.create(obj("v1", "Node", node))
            on = _observation_node(node, source)  # as the agent does it: create, then the status
            await c.create(on)
            await c.patch(r.OBSERVATION_NODES, node, {"status": on["status"]}, status=True)
        observer = {
            "agentNamespace": AGENTS_NS,
            "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
            "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
        }
        await c.create(obj(API_VERSION, OBSERVER_KIND, OBSERVER, spec=observer))
        for name in MEDIUM:
            await c.create(obj(API_VERSION, POLICY_KIND, name, namespace=NS, spec=_spec(name, 8_000)))
        await c.create(obj(API_VERSION, POLICY_KIND, BIG, namespace=NS, spec=_spec(BIG, 20_000)))
        for pod, node, app in (
            ("big-n", NATIVE_NODE, BIG),
            ("big-t", TETRAGON_NODE, BIG),
            ("m0-n", NATIVE_NODE, "m0"),
        ):
            await c.create(_pod(pod, node, app))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    # Heartbeats written once: they must not go stale (None for that reason) on a slow machine.
    async with OperatorRun(cluster, fast_config(cluster, stale_after_seconds=3600.0)) as op:
        yield op


def _omitted(cluster: Cluster) -> list[str]:
    cm = cluster.stored(r.CONFIGMAPS, probe_configmap_name(OBSERVER), AGENTS_NS) or {}
    raw = (cm.get("data") or {}).get(PROBE_CONFIG_KEY)
    return list(json.loads(raw).get("policiesOmitted") or []) if raw else []


def _posture(cluster: Cluster, name: str) -> tuple[str, str, set[str]]:
    """(posture annotation, reason, the operator's level labels) of a pod."""
    meta = (cluster.stored(r.PODS, name, NS) or {}).get("metadata") or {}
    ann, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    ours = {k for k in labels if k in (OBSERVE_LABEL, OBSERVE_DEEP_LABEL)}
    return str(ann.get(POSTURE_ANNOTATION) or ""), str(ann.get(POSTURE_REASON_ANNOTATION) or ""), ours


async def test_a_policy_left_out_of_the_probe_config_gives_native_pods_passive(
    cluster: Cluster, operator: OperatorRun
) -> None:
    key = probe_entry_key(kind=POLICY_KIND, namespace=NS, name=BIG)
    await wait_for(lambda: _omitted(cluster) == [key], limit_s=60, what="the big policy left out")
    await wait_for(lambda: _posture(cluster, "big-n")[0] == "Passive", limit_s=60, what="big-n at Passive")
    _, reason, labels = _posture(cluster, "big-n")
    assert labels == set(), labels  # no probe selects it: no level label
    assert f"ObservationPolicy/{NS}/{BIG}" in reason and "left out of the agents' probe ConfigMap" in reason
    await wait_for(lambda: _posture(cluster, "m0-n")[0] == "EbpfDeep", limit_s=60, what="m0-n in force")
    # Tetragon nodes load the policy's TracingPolicies: its pod there keeps the level.
    await wait_for(lambda: _posture(cluster, "big-t")[0] == "EbpfDeep", limit_s=60, what="big-t in force")

    # Room is made: the big entry gets in, and its native pod its level.
    for name in MEDIUM[:2]:
        await cluster.delete(r.OBSERVATION_POLICIES, name, namespace=NS)
    await wait_for(lambda: _omitted(cluster) == [], limit_s=60, what="nothing left out")
    await wait_for(lambda: _posture(cluster, "big-n")[0] == "EbpfDeep", limit_s=60, what="big-n back")
    assert _posture(cluster, "big-n")[2] == {OBSERVE_LABEL, OBSERVE_DEEP_LABEL}
    assert "probe ConfigMap" not in _posture(cluster, "big-n")[1]
    await operator.settle(timeout=60)
