"""ObservationPolicy / ClusterObservationPolicy through the real operator (kopf) against kmock over HTTP.

Create, update, delete; the Tetragon objects that result compared with what
the renderer produces for the same input; drift restored; invalid specs;
and no write at all when nothing changed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import (
    API_VERSION,
    CLUSTER_POLICY_KIND,
    POLICY_KIND,
    parse_policy_spec,
)
from stellaops_runtime.controller.patches import APPLIED_FIELDS_ANNOTATION, SPEC_WRITTEN_ANNOTATION
from stellaops_runtime.controller.render_policy import render_policy
from stellaops_runtime.controller.settings import FINALIZER
from stellaops_runtime.kube import resources as r
from tests.crd_schema import errors, load_crd, validator_for
from tests.integration.kubeharness import Cluster, OperatorRun, obj, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
TETRAGON_CRDS = REPO / "tests" / "fixtures" / "tetragon" / "crds" / "v1.7.0"
OUR_CRDS = REPO / "manifests" / "crds"
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp")

WEB_SPEC: dict[str, Any] = {
    "podSelector": {"matchLabels": {"app": "web"}},
    "maxLevel": "EbpfDeep",
    "syscalls": ["execve", "connect"],
}


def assert_applied_on_no_node(pol: dict[str, Any] | None) -> None:
    """Rendered and applied without error, in a cluster with no ObservationNode: Progressing.

    (It used to say Ready, "0/0 nodes running": a Ready that rested on no node at all.)
    """
    assert pol is not None
    progressing = condition(pol, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "NoNodeRunning")
    assert "0/0 nodes running" in progressing["message"]
    assert [condition(pol, t)["status"] for t in ("Ready", "Degraded", "Stalled")] == ["False"] * 3


def strip_server(o: dict[str, Any]) -> dict[str, Any]:
    """An object as rendered: without the server's bookkeeping and our applied-fields record."""
    if not o:
        return {}
    o = json.loads(json.dumps(o))
    meta = o["metadata"]
    for k in SERVER_FIELDS:
        meta.pop(k, None)
    ann = meta.get("annotations") or {}
    ann.pop(APPLIED_FIELDS_ANNOTATION, None)
    ann.pop(SPEC_WRITTEN_ANNOTATION, None)  # when the operator last wrote the spec
    if not ann:
        meta.pop("annotations", None)
    o.pop("status", None)
    return o


def condition(o: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((o or {}).get("status") or {}).get("conditions") or ():
        if c["type"] == type_:
            return c
    return {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", "stellaops-system"))
        await c.create(obj("v1", "Namespace", "shop", labels={"tier": "prod"}))
        await c.create(obj("v1", "Namespace", "lab", labels={"tier": "dev"}))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        await op.settle()
        yield op


async def _policy(cluster: Cluster, name: str, spec: dict, *, namespace: str | None = "shop") -> dict:
    kind = POLICY_KIND if namespace else CLUSTER_POLICY_KIND
    return await cluster.create(obj(API_VERSION, kind, name, namespace=namespace, spec=spec))


def _expected(stored_policy: dict, kind: str) -> list[dict]:
    meta = stored_policy["metadata"]
    spec = parse_policy_spec(stored_policy["spec"], cluster=kind == CLUSTER_POLICY_KIND)
    return render_policy(
        kind=kind, name=meta["name"], namespace=meta.get("namespace"), uid=meta["uid"], spec=spec
    ).tracing_policies


async def test_policy_renders_tetragon_objects_and_status(cluster: Cluster, operator: OperatorRun) -> None:
    await _policy(cluster, "web", WEB_SPEC)
    await operator.settle()
    pol = cluster.stored(r.OBSERVATION_POLICIES, "web", "shop")
    assert pol is not None
    expected = _expected(pol, POLICY_KIND)
    stored = cluster.listed(r.TRACING_POLICIES_NAMESPACED, "shop")
    assert [strip_server(o) for o in stored] == expected  # byte for byte, as rendered
    # the real API server's rules kmock does not enforce
    assert stored[0]["metadata"]["ownerReferences"][0]["uid"] == pol["metadata"]["uid"]
    tetragon = validator_for(load_crd(TETRAGON_CRDS / "cilium.io_tracingpoliciesnamespaced.yaml"))
    assert errors(tetragon, strip_server(stored[0])) == []
    status = pol["status"]
    assert status["observedGeneration"] == pol["metadata"]["generation"] == 1
    # applied, but this cluster has no ObservationNode: no node runs it, so not Ready (Ready is
    # read as "watched" by kubectl wait, Argo CD and Flux) but Progressing, NoNodeRunning
    assert_applied_on_no_node(pol)
    assert status["tetragonPolicies"] == [expected[0]["metadata"]["name"]]
    ours = validator_for(load_crd(OUR_CRDS / "observationpolicies.yaml"))
    assert errors(ours, pol) == []
    assert FINALIZER in pol["metadata"]["finalizers"]


async def test_update_renders_again_and_observed_generation_follows(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await _policy(cluster, "shop-tls", WEB_SPEC | {"podSelector": {"matchLabels": {"app": "tls"}}})
    await operator.settle()
    functions = [
        {"binaryPath": "/usr/lib/x86_64-linux-gnu/libssl.so.3", "symbols": ["SSL_read", "SSL_write"]},
        {"purl": "pkg:deb/debian/openssl@3.0.11?arch=amd64", "symbols": ["SSL_do_handshake"]},
    ]
    await cluster.patch(
        r.OBSERVATION_POLICIES, "shop-tls", {"spec": {"functions": functions}}, namespace="shop"
    )
    await operator.settle()
    pol = cluster.stored(r.OBSERVATION_POLICIES, "shop-tls", "shop")
    assert pol is not None and pol["metadata"]["generation"] == 2
    assert pol["status"]["observedGeneration"] == 2
    assert all(c["observedGeneration"] == 2 for c in pol["status"]["conditions"])
    expected = _expected(pol, POLICY_KIND)
    assert len(expected) == 2  # syscalls + uprobes
    names = {o["metadata"]["name"] for o in expected}
    stored = [
        o for o in cluster.listed(r.TRACING_POLICIES_NAMESPACED, "shop") if o["metadata"]["name"] in names
    ]
    assert sorted((strip_server(o) for o in stored), key=lambda o: o["metadata"]["name"]) == sorted(
        expected, key=lambda o: o["metadata"]["name"]
    )
    unresolved = pol["status"]["unresolvedFunctions"]
    assert [u["purl"] for u in unresolved] == ["pkg:deb/debian/openssl@3.0.11?arch=amd64"]
    assert "5105" in unresolved[0]["message"]

    # dropping the functions again deletes the uprobe object
    await cluster.patch(r.OBSERVATION_POLICIES, "shop-tls", {"spec": {"functions": None}}, namespace="shop")
    await operator.settle()
    left = {o["metadata"]["name"] for o in cluster.listed(r.TRACING_POLICIES_NAMESPACED, "shop")}
    assert left & names == {expected[0]["metadata"]["name"]} or len(left & names) == 1
    pol = cluster.stored(r.OBSERVATION_POLICIES, "shop-tls", "shop")
    assert pol is not None and pol["status"]["observedGeneration"] == 3
    assert pol["status"]["unresolvedFunctions"] == []


async def test_cluster_policy_renders_a_cluster_scoped_tracing_policy(
    cluster: Cluster, operator: OperatorRun
) -> None:
    spec = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
        "maxLevel": "ActiveTracing",
        "syscalls": ["openat"],
    }
    await _policy(cluster, "everything-shop", spec, namespace=None)
    await operator.settle()
    pol = cluster.stored(r.CLUSTER_OBSERVATION_POLICIES, "everything-shop")
    assert pol is not None
    expected = _expected(pol, CLUSTER_POLICY_KIND)
    stored = [strip_server(cluster.stored(r.TRACING_POLICIES, o["metadata"]["name"]) or {}) for o in expected]
    assert stored == expected
    tetragon = validator_for(load_crd(TETRAGON_CRDS / "cilium.io_tracingpolicies.yaml"))
    assert all(errors(tetragon, o) == [] for o in stored)
    assert_applied_on_no_node(pol)


async def test_invalid_spec_is_stalled_with_an_event_and_renders_nothing(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await _policy(cluster, "typo", WEB_SPEC | {"syscalls": ["exceve"]})
    await _policy(cluster, "fine", WEB_SPEC | {"podSelector": {"matchLabels": {"app": "fine"}}})
    await operator.settle()
    bad = cluster.stored(r.OBSERVATION_POLICIES, "typo", "shop")
    assert condition(bad, "Ready") | {"lastTransitionTime": None} == condition(bad, "Ready") | {
        "status": "False",
        "lastTransitionTime": None,
    }
    stalled = condition(bad, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "UnknownSyscall"
    assert "exceve" in stalled["message"]
    assert not [
        o for o in cluster.listed(r.TRACING_POLICIES_NAMESPACED, "shop") if "typo" in o["metadata"]["name"]
    ]
    events = [e for e in cluster.listed(r.EVENTS, "shop") if e["involvedObject"]["name"] == "typo"]
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "UnknownSyscall")]
    # the valid neighbour is unaffected
    assert_applied_on_no_node(cluster.stored(r.OBSERVATION_POLICIES, "fine", "shop"))

    # fixing it renders it, and no second event is posted
    await cluster.patch(r.OBSERVATION_POLICIES, "typo", {"spec": {"syscalls": ["execve"]}}, namespace="shop")
    await operator.settle()
    fixed = cluster.stored(r.OBSERVATION_POLICIES, "typo", "shop")
    assert_applied_on_no_node(fixed)
    assert condition(fixed, "Stalled")["status"] == "False"
    assert [
        o
        for o in cluster.listed(r.TRACING_POLICIES_NAMESPACED, "shop")
        if o["metadata"]["name"] == "stellaops-typo"
    ]
    assert len([e for e in cluster.listed(r.EVENTS, "shop") if e["involvedObject"]["name"] == "typo"]) == 1


async def test_drift_is_restored(cluster: Cluster, operator: OperatorRun) -> None:
    await _policy(cluster, "drift", WEB_SPEC | {"podSelector": {"matchLabels": {"app": "drift"}}})
    await operator.settle()
    name = "stellaops-drift"
    original = strip_server(cluster.stored(r.TRACING_POLICIES_NAMESPACED, name, "shop") or {})

    await cluster.patch(
        r.TRACING_POLICIES_NAMESPACED,
        name,
        {"spec": {"podSelector": {"matchLabels": {"app": "x"}}}},
        namespace="shop",
    )
    await wait_for(
        lambda: strip_server(cluster.stored(r.TRACING_POLICIES_NAMESPACED, name, "shop") or {}) == original,
        what="edited TracingPolicyNamespaced restored",
    )
    await cluster.delete(r.TRACING_POLICIES_NAMESPACED, name, namespace="shop")
    await wait_for(
        lambda: strip_server(cluster.stored(r.TRACING_POLICIES_NAMESPACED, name, "shop") or {}) == original,
        what="deleted TracingPolicyNamespaced re-created",
    )
    await operator.settle()


async def test_delete_removes_what_it_owned(cluster: Cluster, operator: OperatorRun) -> None:
    await _policy(cluster, "gone", WEB_SPEC | {"podSelector": {"matchLabels": {"app": "gone"}}})
    await operator.settle()
    assert cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-gone", "shop") is not None
    await cluster.delete(r.OBSERVATION_POLICIES, "gone", namespace="shop")
    await wait_for(
        lambda: cluster.stored(r.OBSERVATION_POLICIES, "gone", "shop") is None, what="policy released"
    )
    assert cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-gone", "shop") is None


async def test_unchanged_reconcile_writes_nothing(cluster: Cluster, operator: OperatorRun) -> None:
    await operator.settle()
    mark = cluster.mark()
    operator.call(operator.reconciler.resync)
    await operator.settle()
    assert cluster.writes(mark) == []


async def test_restarted_operator_writes_nothing(cluster: Cluster, operator: OperatorRun) -> None:
    await operator.settle()
    await operator.stop()  # the last test of the module: a fresh process sees everything converged
    mark = cluster.mark()
    async with OperatorRun(cluster) as second:
        await second.settle(quiet=0.5)
        assert second.reconciler.scheduler.stats.runs > 0  # it did look at everything
    assert cluster.writes(mark) == []
