"""A pod re-created under the same name is decided afresh, not read through the dead pod's write.

The reconciler remembers each pod write until its watch event comes back
(the read-your-writes overlay, controller/state.py), keyed by the pod's
namespace and name and the labels and annotations the write was based on.
When the watch ends in 410 Gone before that echo, and the pod is deleted and
made again (a StatefulSet's ``web-0``: same name, same template, so the same
labels and annotations) before kopf lists again, the new pod is indexed with
exactly the part the old write was based on. The overlay then answered with
the dead pod as patched: the new pod needed nothing, and never got its
posture annotations or level labels (an opted-in pod no Tetragon policy
selects, for good). The overlay now also holds the pod's uid.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from stellaops_runtime.contracts.crds import API_VERSION, OBSERVE_LABEL, POLICY_KIND, POSTURE_ANNOTATION
from stellaops_runtime.controller.reconcile import (
    INDEX_NAMESPACES,
    INDEX_OBSERVATION_NODES,
    INDEX_PODS,
    INDEX_POLICIES,
    PodSnapshot,
    Reconciler,
)
from stellaops_runtime.kube.resources import OBSERVATION_POLICIES


def _node() -> dict[str, Any]:
    """A node whose agent's own probes deliver ActiveTracing, heart-beating now: made when the test
    runs, not at import (a heartbeat stamped at collection was stale by the time a 19-minute suite
    reached this test, and the node's posture read None)."""
    return {
        "metadata": {"name": "node-a", "uid": "node-uid"},
        "status": {
            "source": "native",
            "maxPosture": "ActiveTracing",
            "heartbeatTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


# A policy selecting the pod at that level.
POLICY = {
    "apiVersion": API_VERSION,
    "kind": POLICY_KIND,
    "metadata": {"name": "web", "namespace": "shop", "uid": "policy-uid", "generation": 1},
    "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "maxLevel": "ActiveTracing",
        "syscalls": ["connect"],
    },
}


class _Api:
    """Records the pod patches the reconciler sends."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    async def patch(
        self, res: Any, *, name: str, namespace: str | None, patch: dict[str, Any], subresource: str = ""
    ) -> dict[str, Any]:
        self.patches.append((namespace or "", name, patch))
        return {}

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        """A status write (a JSON patch: controller/status_write.py); accepted."""
        return {}


def _pod(uid: str) -> PodSnapshot:
    return PodSnapshot.of(
        {
            "metadata": {
                "namespace": "shop",
                "name": "web-0",
                "uid": uid,
                "labels": {"app": "web", "statefulset.kubernetes.io/pod-name": "web-0"},
            },
            "spec": {"nodeName": "node-a"},
        }
    )


def test_a_pod_recreated_in_a_watch_gap_gets_its_posture() -> None:
    api = _Api()
    reconciler = Reconciler(kube=api)  # type: ignore[arg-type]
    pods: dict[Any, list[PodSnapshot]] = {("shop", "web-0"): [_pod("uid-old")]}
    reconciler.bind(
        {
            INDEX_PODS: pods,
            INDEX_NAMESPACES: {"shop": [{}]},
            INDEX_OBSERVATION_NODES: {"node-a": [_node()]},
            INDEX_POLICIES: {(POLICY_KIND, "shop", "web"): [POLICY]},
        }
    )

    asyncio.run(reconciler.reconcile_pod("shop", "web-0"))
    assert len(api.patches) == 1  # the old pod gets its posture
    assert api.patches[0][2]["metadata"]["annotations"][POSTURE_ANNOTATION] == "ActiveTracing"
    assert api.patches[0][2]["metadata"]["labels"] == {OBSERVE_LABEL: "true"}

    # The echo of that write is lost in a watch gap; the pod is deleted and made again, and kopf's
    # re-list indexes the new one (same labels, no annotations) after the dead one.
    pods[("shop", "web-0")] = [_pod("uid-old"), _pod("uid-new")]
    asyncio.run(reconciler.reconcile_pod("shop", "web-0"))
    assert len(api.patches) == 2, "the new pod was never given its posture"
    assert api.patches[1][2]["metadata"]["annotations"][POSTURE_ANNOTATION] == "ActiveTracing"
    assert api.patches[1][2]["metadata"]["labels"] == {OBSERVE_LABEL: "true"}

    # Its own echo comes back: nothing more to write.
    pods[("shop", "web-0")] = [_pod("uid-new").patched(api.patches[1][2])]
    asyncio.run(reconciler.reconcile_pod("shop", "web-0"))
    assert len(api.patches) == 2


def test_a_policy_recreated_in_a_watch_gap_gets_its_status() -> None:
    """The same for a status write: a policy deleted and applied again (a GitOps prune and sync) in
    a watch gap, before the echo of its first status, has no status yet, like the dead one had.
    Read through the dead one's write, its status was never written (Argo CD: no health)."""
    api = _Api()
    reconciler = Reconciler(kube=api)  # type: ignore[arg-type]
    key = (API_VERSION, POLICY_KIND, "shop", "web")
    status = {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "RolledOut", "message": "in force"}],
    }

    async def write(seen: dict[str, Any]) -> bool:
        body = reconciler._resource(key, seen)
        assert body is not None
        return await reconciler._write_status(OBSERVATION_POLICIES, key, seen, body, dict(status), owned=())

    old = {**POLICY, "metadata": {**POLICY["metadata"], "uid": "policy-old"}}
    new = {**POLICY, "metadata": {**POLICY["metadata"], "uid": "policy-new"}}
    assert asyncio.run(write(old))
    assert asyncio.run(write(new)), "the new policy was never given its status"
    assert not asyncio.run(write(new))  # written once: the overlay holds it until the echo
