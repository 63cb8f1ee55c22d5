"""A pod's posture patch lands only on the pod it was decided for (a uid precondition), on kmock.

The reconciler reads a pod from its index, decides its posture and patches it by name. A pod
deleted and made again under that name between the read and the patch (a StatefulSet's
``web-0``) took the dead pod's patch: its posture annotations and level labels, so a new pod
that opts out (``stellaops.io/observe-level: none``) carried ``stellaops.io/observe=true`` and
every rendered Tetragon policy selected it until its own event was reconciled. The patch now
names the uid it was decided for (``metadata.uid`` in the merge patch: the API server answers
422 Invalid for another object, tests/realkube/test_pod_patch_uid_real.py), and that refusal
writes nothing and is no error: the new pod's own event reconciles it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stellaops_runtime.contracts.crds import (
    OBSERVE_LABEL,
    OBSERVE_LEVEL_ANNOTATION,
    POLICY_KIND,
    POSTURE_ANNOTATION,
)
from stellaops_runtime.controller.reconcile import (
    INDEX_NAMESPACES,
    INDEX_OBSERVATION_NODES,
    INDEX_PODS,
    INDEX_POLICIES,
    PodSnapshot,
    Reconciler,
)
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, obj
from tests.unit.test_pod_overlay_uid import POLICY, _node

LABELS = {"app": "web", "statefulset.kubernetes.io/pod-name": "web-0"}


def _pod(annotations: dict[str, str]) -> dict[str, Any]:
    return obj("v1", "Pod", "web-0", namespace="shop", labels=LABELS, annotations=annotations,
               spec={"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}]})  # fmt: skip


async def test_a_pod_replaced_between_read_and_patch_never_gets_the_old_pods_posture(tmp_path: Path) -> None:
    async with Cluster(tmp_path) as cluster:
        await cluster.create(obj("v1", "Namespace", "shop"))
        old = await cluster.create(_pod({}))
        reconciler = Reconciler(kube=cluster.kube)
        pods: dict[Any, list[PodSnapshot]] = {("shop", "web-0"): [PodSnapshot.of(old)]}
        reconciler.bind(
            {
                INDEX_PODS: pods,
                INDEX_NAMESPACES: {"shop": [{}]},
                INDEX_OBSERVATION_NODES: {"node-a": [_node()]},
                INDEX_POLICIES: {(POLICY_KIND, "shop", "web"): [POLICY]},
            }
        )
        # Deleted and made again, opted out, before the patch decided for the old pod lands.
        await cluster.delete(r.PODS, "web-0", namespace="shop")
        new = await cluster.create(_pod({OBSERVE_LEVEL_ANNOTATION: "none"}))
        assert new["metadata"]["uid"] != old["metadata"]["uid"]
        await reconciler.reconcile_pod("shop", "web-0")  # a conflict: no error, nothing written
        meta = (cluster.stored(r.PODS, "web-0", "shop") or {})["metadata"]
        assert OBSERVE_LABEL not in (meta.get("labels") or {}), "the old pod's level label on the new pod"
        assert POSTURE_ANNOTATION not in (meta.get("annotations") or {})
        assert reconciler.stats.writes["pod"] == 0

        # The new pod's own event: its own posture (opted out: None), patched under its own uid.
        pods[("shop", "web-0")] = [PodSnapshot.of(old), PodSnapshot.of(new)]
        await reconciler.reconcile_pod("shop", "web-0")
        meta = (cluster.stored(r.PODS, "web-0", "shop") or {})["metadata"]
        assert meta["annotations"][POSTURE_ANNOTATION] == "None"
        assert OBSERVE_LABEL not in (meta.get("labels") or {})
        assert reconciler.stats.writes["pod"] == 1
