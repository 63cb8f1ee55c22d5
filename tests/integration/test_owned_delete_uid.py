"""An owned object to delete, replaced by one of ours since it was read, is deleted, not "not ours".

A policy's reconcile deletes the Tetragon objects it no longer renders, each with the uid the
operator last saw as a precondition (``preconditions.uid``), so an object someone else made under
that name in between is never deleted. When the object was deleted and made again as it was
(a backup restore, a GitOps re-create of our own object) before kopf indexed the new one, the API
server refuses that delete (409, "the UID in the precondition (...) does not match the UID in
record (...)"), and the refusal was read as "replaced by another object": the policy went Degraded
with reason ``NotOwned`` and a Warning Event although every object named is ours, until the index
caught up. ``delete_owned``
now reads the live object on that refusal and decides on it, once, as ``apply`` does: gone is
done, ours is deleted under its own uid, another's is refused as not ours and left alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.crds import API_VERSION, MANAGED_BY, POLICY_KIND, TETRAGON_API_VERSION
from stellaops_runtime.controller.ownership import NOT_OWNED_REASON, POLICY_ANNOTATION
from stellaops_runtime.controller.patches import for_create
from stellaops_runtime.controller.reconcile import (
    INDEX_CHILDREN,
    INDEX_NAMESPACES,
    INDEX_OWNED,
    INDEX_POLICIES,
    Reconciler,
)
from stellaops_runtime.controller.state import obj_key
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, obj

SPEC = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "ActiveTracing", "syscalls": ["connect"]}
ENTRY = f"{POLICY_KIND}/shop/web"
OLD = "stellaops-web-old"  # an object the policy rendered once and renders no more


def _old_object(policy_uid: str, *, ours: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": OLD, "namespace": "shop"}
    if ours:
        meta["labels"] = {MANAGED_BY[0]: MANAGED_BY[1]}
        meta["annotations"] = {POLICY_ANNOTATION: ENTRY}
        ref = {
            "apiVersion": API_VERSION,
            "kind": POLICY_KIND,
            "name": "web",
            "uid": policy_uid,
            "controller": True,
        }
        meta["ownerReferences"] = [ref]
    return for_create(
        {
            "apiVersion": TETRAGON_API_VERSION,
            "kind": "TracingPolicyNamespaced",
            "metadata": meta,
            "spec": {"tracepoints": []},
        }
    )


def _reasons(cluster: Cluster) -> set[str]:
    live = cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") or {}
    return {c["reason"] for c in (live.get("status") or {}).get("conditions") or ()}


@pytest.mark.parametrize("restored", ["ours", "another's"])
async def test_a_stale_object_replaced_before_the_index_saw_it_is_decided_on_live(
    tmp_path: Path, restored: str
) -> None:
    async with Cluster(tmp_path) as cluster:
        await cluster.create(obj("v1", "Namespace", "shop"))
        policy = await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace="shop", spec=SPEC))
        uid = policy["metadata"]["uid"]
        seen = await cluster.create(_old_object(uid, ours=True))
        key = obj_key(seen)
        reconciler = Reconciler(kube=cluster.kube)
        reconciler.bind(
            {
                INDEX_POLICIES: {(POLICY_KIND, "shop", "web"): [policy]},
                INDEX_NAMESPACES: {"shop": [{}]},
                INDEX_OWNED: {key: [seen]},
                INDEX_CHILDREN: {("policy", ENTRY): [key], ("uid", uid): [key]},
            }
        )
        # Deleted and made again under its name before kopf indexed the new one.
        await cluster.delete(r.TRACING_POLICIES_NAMESPACED, OLD, namespace="shop")
        again = await cluster.create(_old_object(uid, ours=restored == "ours"))
        assert again["metadata"]["uid"] != seen["metadata"]["uid"]
        try:
            await reconciler.reconcile_policy(POLICY_KIND, "shop", "web")
            error = ""
        except RuntimeError as e:
            error = str(e)
        if restored == "ours":
            assert NOT_OWNED_REASON not in _reasons(cluster), f"our own object read as not ours: {error}"
            assert error == ""
            assert cluster.stored(r.TRACING_POLICIES_NAMESPACED, OLD, "shop") is None, (
                "our stale object stayed"
            )
        else:
            assert NOT_OWNED_REASON in _reasons(cluster) and "not labelled" in error
            live = cluster.stored(r.TRACING_POLICIES_NAMESPACED, OLD, "shop")
            assert live is not None and live["metadata"]["uid"] == again["metadata"]["uid"], (
                "another's was deleted"
            )
