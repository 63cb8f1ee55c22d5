"""A 404 for an object deleted since it was read is not "Tetragon is not installed", on kmock.

A policy's reconcile patches each of its Tetragon objects that differs from its rendering. When
one was deleted between kopf's read and that patch (a user's ``kubectl delete``, a restore), the
API server answers 404 naming the object, and the reconcile read every 404 as a missing CRD: the
policy went Degraded with reason ``TetragonNotInstalled`` ("Tetragon's TracingPolicy CRDs are not
installed") on a cluster where they are, and the object stayed missing until a retry. A kind that
is not served answers a bare "404 page not found" naming nothing (kube-apiserver v1.20,
tests/realkube/test_not_found_real.py); only that is a missing CRD. A patch of an object that is
gone creates it, as a reconcile that had read it gone would have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from stellaops_runtime.controller.reconcile import INDEX_NAMESPACES, INDEX_OWNED, INDEX_POLICIES, Reconciler
from stellaops_runtime.controller.state import obj_key
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, _key, obj

SPEC = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "ActiveTracing", "syscalls": ["connect"]}
TP = "stellaops-web"


def _reasons(cluster: Cluster) -> set[str]:
    live = cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") or {}
    return {c["reason"] for c in (live.get("status") or {}).get("conditions") or ()}


async def _reconcile(reconciler: Reconciler) -> str:
    try:
        await reconciler.reconcile_policy(POLICY_KIND, "shop", "web")
    except RuntimeError as e:  # errors are raised after the status is written (retried with backoff)
        return str(e)
    return ""


async def test_a_tetragon_object_deleted_since_it_was_read_is_created_not_read_as_a_missing_crd(
    tmp_path: Path,
) -> None:
    async with Cluster(tmp_path) as cluster:
        await cluster.create(obj("v1", "Namespace", "shop"))
        policy = await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace="shop", spec=SPEC))
        reconciler = Reconciler(kube=cluster.kube)
        policies: dict[Any, list[dict[str, Any]]] = {(POLICY_KIND, "shop", "web"): [policy]}
        owned: dict[Any, list[dict[str, Any]]] = {}
        reconciler.bind({INDEX_POLICIES: policies, INDEX_NAMESPACES: {"shop": [{}]}, INDEX_OWNED: owned})
        assert await _reconcile(reconciler) == ""
        child = cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, "shop")
        assert child is not None
        owned[obj_key(child)] = [child]  # what kopf indexed

        # The user edits the policy (its object needs a patch) while the object is deleted.
        change = {"spec": {"syscalls": ["connect", "execve"]}}
        edited = await cluster.patch(r.OBSERVATION_POLICIES, "web", change, namespace="shop")
        policies[(POLICY_KIND, "shop", "web")] = [edited]
        await cluster.delete(r.TRACING_POLICIES_NAMESPACED, TP, namespace="shop")
        error = await _reconcile(reconciler)
        assert "TetragonNotInstalled" not in _reasons(cluster), f"a deleted object read as no CRD: {error}"
        assert error == ""
        again = cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, "shop")
        assert again is not None and "execve" in str(again["spec"]), (
            "the deleted object was not created again"
        )


async def test_a_kind_that_is_not_served_still_reads_as_tetragon_not_installed(tmp_path: Path) -> None:
    async with Cluster(tmp_path) as cluster:
        del cluster.api.resources[_key(r.TRACING_POLICIES_NAMESPACED)]  # Tetragon's CRD not installed
        await cluster.create(obj("v1", "Namespace", "shop"))
        policy = await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace="shop", spec=SPEC))
        reconciler = Reconciler(kube=cluster.kube)
        reconciler.bind(
            {INDEX_POLICIES: {(POLICY_KIND, "shop", "web"): [policy]}, INDEX_NAMESPACES: {"shop": [{}]}}
        )
        assert "404" in await _reconcile(reconciler)
        assert "TetragonNotInstalled" in _reasons(cluster)
        assert cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, "shop") is None
