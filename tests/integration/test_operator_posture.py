"""Pod posture through the real handlers: every combination of annotation, policy and node capabilities.

The table's expectations come from ``compute_posture`` for the same inputs,
plus a few spelled-out rows that pin the rules down. The operator must write
exactly that (annotations, the level labels, and the observe-off label on a
pod whose annotation opts it out: None, an opt-out spelling such as Off, or
a bad value, which fails closed), post one Event per bad annotation value,
label Nodes with their features, and re-evaluate pods when a policy, an
ObservationNode or a namespace changes.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import (
    API_VERSION,
    CLUSTER_POLICY_KIND,
    FEATURE_LABEL_PREFIX,
    NODE_KIND,
    OBSERVE_LABEL,
    OBSERVE_LEVEL_ANNOTATION,
    OBSERVE_OFF_LABEL,
    POLICY_KIND,
    POSTURE_ANNOTATION,
    POSTURE_REASON_ANNOTATION,
    parse_policy_spec,
)
from stellaops_runtime.controller.node_labels import node_feature_labels
from stellaops_runtime.controller.posture import compute_posture, node_capabilities, policy_view
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, obj, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "apps"
ALL_CAPS = {
    "kernelVersion": "6.1.0-18-amd64",
    "btf": True,
    "bpfPermitted": True,
    "tracepoints": True,
    "uprobes": True,
    "kprobes": False,
    "usdt": True,
    "ringBuffer": True,
    "tetragon": {"reachable": True, "address": "unix:///var/run/tetragon/tetragon.sock", "version": "v1.7.0"},
}
NODES: dict[str, dict[str, Any] | None] = {
    "full": ALL_CAPS,
    "nouprobes": ALL_CAPS | {"uprobes": False, "usdt": False},
    "blind": ALL_CAPS | {"bpfPermitted": False, "tetragon": {"reachable": False, "address": "x:1"}},
    "noagent": None,  # no ObservationNode at all
}
POLICIES = {
    "active": {"maxLevel": "ActiveTracing", "syscalls": ["execve"]},
    "full": {"maxLevel": "FullInstrumentation", "syscalls": ["execve", "openat"]},
}
ANNOTATIONS = {
    "none": None, "passive": "passive", "deep": "EbpfDeep",
    "bogus": "turbo", "off": " none", "spelled": "Off",
}  # fmt: skip
OPTED_OUT = ("off", "spelled", "bogus")  # None, an opt-out spelling, and a bad value (fails closed)
CASES = list(itertools.product(ANNOTATIONS, [*POLICIES, "nopolicy"], NODES))


def pod_name(annotation: str, policy: str, node: str) -> str:
    return f"p-{annotation}-{policy}-{node}"


def observation_node(name: str, caps: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return obj(
        API_VERSION,
        NODE_KIND,
        f"node-{name}",
        spec={"nodeName": f"node-{name}"},
        status={"source": "tetragon", "heartbeatTime": now, "capabilities": caps, "policies": []},
    )


def expected(annotation: str, policy: str, node: str) -> Any:
    views = []
    if policy in POLICIES:
        spec = parse_policy_spec(
            {"podSelector": {"matchLabels": {"policy": policy}}, **POLICIES[policy]}, cluster=False
        )
        views.append(policy_view(kind=POLICY_KIND, namespace=NS, name=policy, spec=spec))
    caps = NODES[node]
    value = ANNOTATIONS[annotation]
    return compute_posture(
        annotations={OBSERVE_LEVEL_ANNOTATION: value} if value else {},
        pod_labels={"policy": policy},
        namespace=NS,
        namespace_labels={},
        policies=views,
        node=node_capabilities(observation_node(node, caps)) if caps is not None else None,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS, labels={"team": "payments"}))
        for node, caps in NODES.items():
            await c.create(obj("v1", "Node", f"node-{node}", labels={"kubernetes.io/os": "linux"}))
            if caps is not None:  # as the agent does it: create, then the status subresource
                on = observation_node(node, caps)
                await c.create(on)
                await c.patch(r.OBSERVATION_NODES, f"node-{node}", {"status": on["status"]}, status=True)
        for policy, spec in POLICIES.items():
            body = {"podSelector": {"matchLabels": {"policy": policy}}, **spec}
            await c.create(obj(API_VERSION, POLICY_KIND, policy, namespace=NS, spec=body))
        for annotation, policy, node in CASES:
            value = ANNOTATIONS[annotation]
            await c.create(
                obj(
                    "v1",
                    "Pod",
                    pod_name(annotation, policy, node),
                    namespace=NS,
                    labels={"policy": policy},
                    annotations={OBSERVE_LEVEL_ANNOTATION: value} if value else {},
                    spec={"nodeName": f"node-{node}", "containers": [{"name": "c", "image": "busybox"}]},
                )
            )
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        # Quiet alone is not enough on a loaded machine: kopf may not have listed every pod yet
        # when the scheduler is first empty. Wait until every pod was decided, then settle.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while loop.time() < deadline:
            metas = [cluster.stored(r.PODS, pod_name(*case), NS) for case in CASES]
            if all(m and POSTURE_ANNOTATION in (m["metadata"].get("annotations") or {}) for m in metas):
                break
            await asyncio.sleep(0.1)
        await op.settle()
        yield op


def _pod(cluster: Cluster, name: str) -> dict[str, Any]:
    pod = cluster.stored(r.PODS, name, NS)
    assert pod is not None
    return pod


@pytest.mark.parametrize(("annotation", "policy", "node"), CASES)
async def test_posture_table(
    cluster: Cluster, operator: OperatorRun, annotation: str, policy: str, node: str
) -> None:
    want = expected(annotation, policy, node)
    meta = _pod(cluster, pod_name(annotation, policy, node))["metadata"]
    assert meta["annotations"][POSTURE_ANNOTATION] == want.posture.value
    assert meta["annotations"][POSTURE_REASON_ANNOTATION] == want.reason
    assert (meta.get("labels", {}).get(OBSERVE_LABEL) == "true") is want.observe_label
    assert OBSERVE_LABEL in meta.get("labels", {}) or not want.observe_label  # removed, never "false"
    ours = {k: v for k, v in meta.get("labels", {}).items() if k.startswith("stellaops.io/")}
    assert ours == want.labels  # level labels, or observe-off for an opted-out pod
    assert (OBSERVE_OFF_LABEL in ours) is (annotation in OPTED_OUT)


@pytest.mark.parametrize(
    ("annotation", "policy", "node", "posture", "label"),
    [
        ("none", "full", "full", "FullInstrumentation", True),  # policies opt pods in
        ("none", "nopolicy", "full", "Passive", False),  # no policy: process events only
        ("deep", "full", "full", "EbpfDeep", True),  # the annotation lowers it
        ("deep", "active", "full", "ActiveTracing", True),  # the policy caps it
        ("deep", "full", "nouprobes", "ActiveTracing", True),  # the node caps it
        ("passive", "full", "full", "Passive", False),
        ("none", "full", "noagent", "None", False),  # no agent on the node
        ("bogus", "active", "full", "None", False),  # a bad value fails closed: opted out
        ("off", "full", "full", "None", False),  # the annotation opts the pod out
        ("spelled", "full", "full", "None", False),  # so does "Off"
    ],
)
async def test_spelled_out_rules(
    cluster: Cluster,
    operator: OperatorRun,
    annotation: str,
    policy: str,
    node: str,
    posture: str,
    label: bool,
) -> None:
    meta = _pod(cluster, pod_name(annotation, policy, node))["metadata"]
    assert meta["annotations"][POSTURE_ANNOTATION] == posture
    assert (meta.get("labels", {}).get(OBSERVE_LABEL) == "true") is label


async def test_invalid_level_gets_one_event_per_pod(cluster: Cluster, operator: OperatorRun) -> None:
    events = [e for e in cluster.listed(r.EVENTS, NS) if e["reason"] == "InvalidObserveLevel"]
    bogus = {pod_name(*c) for c in CASES if c[0] == "bogus"}
    assert sorted(e["involvedObject"]["name"] for e in events) == sorted(bogus)
    assert all(
        e["type"] == "Warning" and "'turbo'" in e["message"] and "opted out (None)" in e["message"]
        for e in events
    )
    operator.call(operator.reconciler.resync)
    await operator.settle()
    assert len([e for e in cluster.listed(r.EVENTS, NS) if e["reason"] == "InvalidObserveLevel"]) == len(
        bogus
    )


async def test_nodes_get_feature_labels(cluster: Cluster, operator: OperatorRun) -> None:
    for node, caps in NODES.items():
        labels = (cluster.stored(r.NODES, f"node-{node}") or {})["metadata"]["labels"]
        ours = {k: v for k, v in labels.items() if k.startswith(FEATURE_LABEL_PREFIX)}
        assert ours == (node_feature_labels(observation_node(node, caps)) if caps else {})
        assert labels["kubernetes.io/os"] == "linux"
    assert (cluster.stored(r.NODES, "node-nouprobes") or {})["metadata"]["labels"][
        FEATURE_LABEL_PREFIX + "max-posture"
    ] == "ActiveTracing"


async def test_unchanged_reconcile_writes_nothing(cluster: Cluster, operator: OperatorRun) -> None:
    mark = cluster.mark()
    operator.call(operator.reconciler.resync)
    await operator.settle()
    assert cluster.writes(mark) == []


async def test_node_capability_change_re_evaluates_its_pods(cluster: Cluster, operator: OperatorRun) -> None:
    name = pod_name("deep", "full", "nouprobes")
    assert _pod(cluster, name)["metadata"]["annotations"][POSTURE_ANNOTATION] == "ActiveTracing"
    await cluster.patch(
        r.OBSERVATION_NODES, "node-nouprobes", {"status": {"capabilities": ALL_CAPS}}, status=True
    )
    await wait_for(
        lambda: _pod(cluster, name)["metadata"]["annotations"][POSTURE_ANNOTATION] == "EbpfDeep",
        what="pod re-evaluated after its node gained uprobes",
    )
    await wait_for(
        lambda: (
            (cluster.stored(r.NODES, "node-nouprobes") or {})["metadata"]["labels"][
                FEATURE_LABEL_PREFIX + "uprobes"
            ]
            == "true"
        ),
        what="node label follows",
    )
    await operator.settle()


async def test_policy_changes_re_evaluate_pods(cluster: Cluster, operator: OperatorRun) -> None:
    name = pod_name("none", "active", "full")
    assert _pod(cluster, name)["metadata"]["annotations"][POSTURE_ANNOTATION] == "ActiveTracing"
    await cluster.patch(r.OBSERVATION_POLICIES, "active", {"spec": {"maxLevel": "EbpfDeep"}}, namespace=NS)
    await wait_for(
        lambda: _pod(cluster, name)["metadata"]["annotations"][POSTURE_ANNOTATION] == "EbpfDeep",
        what="policy raise applied",
    )
    await cluster.delete(r.OBSERVATION_POLICIES, "active", namespace=NS)
    await wait_for(
        lambda: (
            _pod(cluster, name)["metadata"]["annotations"][POSTURE_ANNOTATION] == "Passive"
            and OBSERVE_LABEL not in _pod(cluster, name)["metadata"].get("labels", {})
        ),
        what="policy deletion applied",
    )
    await operator.settle()


async def test_namespace_labels_drive_cluster_policies(cluster: Cluster, operator: OperatorRun) -> None:
    spec = {
        "namespaceSelector": {"matchLabels": {"tracing": "on"}},
        "podSelector": {"matchLabels": {"policy": "nopolicy"}},
        "maxLevel": "ActiveTracing",
        "syscalls": ["connect"],
    }
    await cluster.create(obj(API_VERSION, CLUSTER_POLICY_KIND, "by-namespace", spec=spec))
    await operator.settle()
    name = pod_name("none", "nopolicy", "full")
    assert _pod(cluster, name)["metadata"]["annotations"][POSTURE_ANNOTATION] == "Passive"
    await cluster.patch(r.NAMESPACES, NS, {"metadata": {"labels": {"tracing": "on"}}})
    await wait_for(
        lambda: _pod(cluster, name)["metadata"]["annotations"][POSTURE_ANNOTATION] == "ActiveTracing",
        what="namespace label picked up",
    )
    await operator.settle()


async def test_opt_out_label_follows_the_annotation(cluster: Cluster, operator: OperatorRun) -> None:
    """observe-off is set while the annotation opts the pod out, removed (never "false") otherwise."""
    name = pod_name("off", "full", "full")

    def labels() -> dict[str, str]:
        return _pod(cluster, name)["metadata"].get("labels", {})

    assert labels().get(OBSERVE_OFF_LABEL) == "true" and OBSERVE_LABEL not in labels()
    await cluster.patch(
        r.PODS, name, {"metadata": {"annotations": {OBSERVE_LEVEL_ANNOTATION: "Passive"}}}, namespace=NS
    )
    await wait_for(
        lambda: (
            OBSERVE_OFF_LABEL not in labels()
            and _pod(cluster, name)["metadata"]["annotations"][POSTURE_ANNOTATION] == "Passive"
        ),
        what="opt-out label removed when the annotation opts back in",
    )
    await cluster.patch(
        r.PODS, name, {"metadata": {"annotations": {OBSERVE_LEVEL_ANNOTATION: "NONE"}}}, namespace=NS
    )
    await wait_for(lambda: labels().get(OBSERVE_OFF_LABEL) == "true", what="opt-out label set again")
    await cluster.patch(
        r.PODS, name, {"metadata": {"annotations": {OBSERVE_LEVEL_ANNOTATION: None}}}, namespace=NS
    )
    await wait_for(
        lambda: OBSERVE_OFF_LABEL not in labels() and labels().get(OBSERVE_LABEL) == "true",
        what="annotation removed: the policies opt the pod in again",
    )
    await operator.settle()


async def test_a_hand_set_opt_out_label_without_the_annotation_is_removed(
    cluster: Cluster, operator: OperatorRun
) -> None:
    name = pod_name("passive", "nopolicy", "full")
    await cluster.patch(r.PODS, name, {"metadata": {"labels": {OBSERVE_OFF_LABEL: "true"}}}, namespace=NS)
    await wait_for(
        lambda: OBSERVE_OFF_LABEL not in _pod(cluster, name)["metadata"].get("labels", {}),
        what="the operator removes an opt-out label the annotation does not back",
    )
    await operator.settle()
