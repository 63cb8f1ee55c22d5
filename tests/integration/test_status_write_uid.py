"""A status is written only onto the object it was computed for (a uid precondition), on kmock.

The reconciler reads a policy (or a RuntimeObserver) from kopf's index, computes its status and
writes it to the status subresource by name. A policy deleted and made again under its name
between that read and the write (``kubectl replace --force``, a GitOps tool's re-create) took the
dead policy's status: a new policy whose spec is invalid read "valid, rendered, rolling out"
with the dead policy's Tetragon objects listed, until its own event was reconciled. A merge patch
naming the uid is no precondition there: for a custom resource's ``/status`` the API server copies
the stored object's metadata over the patched one before it validates, so ``metadata.uid`` is
dropped, not checked (tests/realkube/test_status_write_uid_real.py; the emulator does the same).
The status write is a JSON patch whose first operation tests ``/metadata/uid``; a refusal for a
replaced object writes nothing and is no error: the new object's own event reconciles it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from stellaops_runtime.controller.reconcile import INDEX_NAMESPACES, INDEX_POLICIES, Reconciler
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, obj

VALID = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "ActiveTracing", "syscalls": ["connect"]}
INVALID = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "NoSuchLevel"}


def _policy(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": POLICY_KIND,
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": spec,
    }


async def test_a_policy_replaced_between_read_and_status_write_never_gets_the_dead_policys_status(
    tmp_path: Path,
) -> None:
    async with Cluster(tmp_path) as cluster:
        await cluster.create(obj("v1", "Namespace", "shop"))
        old = await cluster.create(_policy(VALID))
        reconciler = Reconciler(kube=cluster.kube)
        policies: dict[Any, list[dict[str, Any]]] = {(POLICY_KIND, "shop", "web"): [old]}
        reconciler.bind({INDEX_POLICIES: policies, INDEX_NAMESPACES: {"shop": [{}]}})
        # Deleted and made again, now with an invalid spec, before the status computed for the old one lands.
        await cluster.delete(r.OBSERVATION_POLICIES, "web", namespace="shop")
        new = await cluster.create(_policy(INVALID))
        assert new["metadata"]["uid"] != old["metadata"]["uid"]
        await reconciler.reconcile_policy(POLICY_KIND, "shop", "web")  # refused: no error
        live = cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") or {}
        assert live["metadata"]["uid"] == new["metadata"]["uid"]
        assert not live.get("status"), f"the dead policy's status on the new one: {live.get('status')}"
        assert reconciler.stats.writes["status ObservationPolicy"] == 0

        # The new policy's own event: its own status (Stalled: the spec is invalid), under its own uid.
        policies[(POLICY_KIND, "shop", "web")] = [old, new]
        await reconciler.reconcile_policy(POLICY_KIND, "shop", "web")
        live = cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") or {}
        stalled = {c["type"]: c for c in live["status"]["conditions"]}["Stalled"]
        assert stalled["status"] == "True" and live["status"]["tetragonPolicies"] == []
        assert reconciler.stats.writes["status ObservationPolicy"] == 1


async def test_a_status_computed_on_a_stale_copy_is_written_onto_the_live_status(tmp_path: Path) -> None:
    """A JSON patch is not idempotent as the merge patch was: ``remove`` of a key that is gone fails.

    Two status writes before the first one's watch event (the policy made and at once edited into an
    invalid spec) leave the index one write behind when that event arrives: the reconcile it triggers
    computes against the first status, and its ``remove`` of a key the second write already dropped
    was refused (422) and raised, a failed reconcile retried with backoff. The write is made again
    against the live status.
    """
    async with Cluster(tmp_path) as cluster:
        await cluster.create(obj("v1", "Namespace", "shop"))
        made = await cluster.create(_policy(VALID))
        reconciler = Reconciler(kube=cluster.kube)
        policies: dict[Any, list[dict[str, Any]]] = {(POLICY_KIND, "shop", "web"): [made]}
        reconciler.bind({INDEX_POLICIES: policies, INDEX_NAMESPACES: {"shop": [{}]}})
        await reconciler.reconcile_policy(POLICY_KIND, "shop", "web")  # the first status: rendered
        first = (cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") or {})["status"]
        assert "rollout" in first
        # Edited before the first status landed: kopf's index has the edit, without that status.
        edited = await cluster.patch(r.OBSERVATION_POLICIES, "web", {"spec": INVALID}, namespace="shop")
        policies[(POLICY_KIND, "shop", "web")] = [{k: v for k, v in edited.items() if k != "status"}]
        await reconciler.reconcile_policy(POLICY_KIND, "shop", "web")  # Stalled: rollout removed
        assert "rollout" not in (cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") or {})["status"]
        # The first status's watch event arrives: the index is one write behind the live status.
        policies[(POLICY_KIND, "shop", "web")] = [edited]
        await reconciler.reconcile_policy(POLICY_KIND, "shop", "web")  # no error
        live = (cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") or {})["status"]
        assert "rollout" not in live
        assert {c["type"]: c["status"] for c in live["conditions"]}["Stalled"] == "True"
