"""A huge invalid ``stellaops.io/observe-level`` value on the real kube-apiserver (v1.20).

The operator explains an invalid level in the pod's own annotation
``stellaops.io/observe-posture-reason``. It used to quote the value whole, and
a pod's annotations share one 256 KiB limit: a value of 150,000 characters
(legal on its own) made every posture patch of that pod 422 Invalid
("metadata.annotations: Too long"), retried forever, so the pod never got
its posture or its level labels (and kept stale ones, had it had any).

Here the value is quoted cut to 64 characters with its length: the pod gets
its posture (None: a value that is not a level fails closed), its opt-out
label and one Warning Event, through the real API server's
validation, with the operator running under the manifests' RBAC.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from tests.realkube.controlplane import (
    ControlPlane,
    OperatorProcess,
    start_operator_as_service_account,
    wait_for,
)
from tests.realkube.test_posture_real import WORKING

pytestmark = pytest.mark.realkube

NS, NODE = "huge-level", "node-huge"
HUGE = "x" * 150_000


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    cp = control_plane
    admin = cp.admin
    assert admin is not None
    admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    admin.create(
        {
            "apiVersion": API_VERSION,
            "kind": crds.NODE_KIND,
            "metadata": {"name": NODE},
            "spec": {"nodeName": NODE},
        }
    )
    status = {**WORKING, "policies": [{"name": "stellaops-huge", "namespace": NS, "state": "ENABLED"}]}
    admin.patch(API_VERSION, crds.NODE_KIND, NODE, {"status": status}, subresource="status")
    wait_for(
        lambda: (admin.get("v1", "ServiceAccount", "default", NS) or {}).get("secrets"),
        what="the namespace's default ServiceAccount",
    )
    op = start_operator_as_service_account(cp, Path(tmp_path_factory.mktemp("huge-op")), name="huge-operator")
    try:
        admin.create(
            {
                "apiVersion": API_VERSION,
                "kind": POLICY_KIND,
                "metadata": {"name": "huge", "namespace": NS},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "h"}},
                    "maxLevel": "ActiveTracing",
                    "syscalls": ["execve"],
                },
            }
        )
        yield op
    finally:
        op.stop()
        admin.delete(API_VERSION, POLICY_KIND, "huge", NS)
        admin.delete(API_VERSION, crds.NODE_KIND, NODE)
        admin.delete("v1", "Node", NODE)


def test_a_huge_invalid_level_still_gets_the_pod_its_posture(
    control_plane: ControlPlane, operator: OperatorProcess
) -> None:
    admin = control_plane.admin
    assert admin is not None
    admin.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "big",
                "namespace": NS,
                "labels": {"app": "h"},
                "annotations": {crds.OBSERVE_LEVEL_ANNOTATION: HUGE},
            },
            "spec": {
                "nodeName": NODE,
                "automountServiceAccountToken": False,
                "containers": [{"name": "c", "image": "busybox"}],
            },
        }
    )

    def posture() -> tuple[str, str, str]:
        meta = (admin.get("v1", "Pod", "big", NS) or {}).get("metadata") or {}
        ann, labels = meta.get("annotations") or {}, meta.get("labels") or {}
        return (
            str(ann.get(crds.POSTURE_ANNOTATION) or ""),
            str(ann.get(crds.POSTURE_REASON_ANNOTATION) or ""),
            str(labels.get("stellaops.io/observe") or ""),
        )

    got = wait_for(lambda: posture()[0] and posture(), what="the pod's posture", timeout=60)
    assert operator.alive(), operator.text()[-3000:]
    level, reason, label = got
    assert (level, label) == ("None", "")  # an invalid value fails closed: opted out
    assert reason.startswith(
        f"invalid {crds.OBSERVE_LEVEL_ANNOTATION} '{'x' * 64}'... (150000 characters), not an observe level: "
    )
    assert len(reason) < 1024
    labels = ((admin.get("v1", "Pod", "big", NS) or {}).get("metadata") or {}).get("labels") or {}
    assert labels.get(crds.OBSERVE_OFF_LABEL) == "true"  # the label that tells the agents
    events = [
        e
        for e in admin.list("v1", "Event", NS)
        if e["reason"] == "InvalidObserveLevel" and e["involvedObject"]["name"] == "big"
    ]
    assert len(events) == 1 and "150000 characters" in events[0]["message"]
    assert "Too long" not in operator.text()
