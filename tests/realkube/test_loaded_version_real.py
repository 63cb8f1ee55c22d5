"""On the real kube-apiserver (v1.20): Ready only when the node reports the Tetragon object version written.

The agent copies the object and generation Tetragon loaded into its
ObservationNode's ``status.policies[]`` (``objectUid``/``objectGeneration``).
The real server must keep both (a structural schema prunes every field it
does not declare, silently), and the real operator, under its ServiceAccount,
must count the node for a policy only while they are those of its Tetragon
object: here the node's heartbeat is stamped 2099 (an agent clock far
ahead), which the time rule alone took as a report made after every write.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from tests.realkube.controlplane import (
    ControlPlane,
    OperatorProcess,
    start_operator_as_service_account,
    wait_for,
)

pytestmark = pytest.mark.realkube

NS, NODE, POLICY = "loaded-version", "node-lv", "web"
TP = f"stellaops-{POLICY}"
CILIUM = "cilium.io/v1alpha1"


def _true(o: dict[str, Any] | None) -> tuple[int, str] | None:
    """(observedGeneration, the True condition among Ready/Progressing/Degraded) of a current status."""
    status = (o or {}).get("status") or {}
    for c in status.get("conditions") or ():
        if c["type"] in ("Ready", "Progressing", "Degraded") and c["status"] == "True":
            return int(status.get("observedGeneration") or 0), str(c["type"])
    return None


def _report(cp: ControlPlane, tp: dict[str, Any]) -> None:
    """The node's agent reports Tetragon's list: the policy ENABLED, naming the object version it loaded."""
    assert cp.admin is not None
    entry = {
        "name": TP,
        "namespace": NS,
        "state": "ENABLED",
        "objectUid": tp["metadata"]["uid"],
        "objectGeneration": tp["metadata"]["generation"],
    }
    status = {
        "source": "tetragon",
        "maxPosture": "FullInstrumentation",
        "heartbeatTime": "2099-01-01T00:00:00Z",  # an agent clock far ahead of the operator's
        "capabilities": {"btf": True, "uprobes": True, "tetragon": {"reachable": True}},
        "policies": [entry],
    }
    cp.admin.patch(API_VERSION, crds.NODE_KIND, NODE, {"status": status}, subresource="status")


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    admin = control_plane.admin
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
    op = start_operator_as_service_account(
        control_plane, Path(tmp_path_factory.mktemp("lv")), name="lv-operator"
    )
    try:
        yield op
    finally:
        op.stop()
        admin.delete(API_VERSION, POLICY_KIND, POLICY, NS)
        admin.delete(API_VERSION, crds.NODE_KIND, NODE)  # later modules must not count this node
        admin.delete("v1", "Node", NODE)


def test_ready_follows_the_reported_object_version(
    control_plane: ControlPlane, operator: OperatorProcess
) -> None:
    admin = control_plane.admin
    assert admin is not None
    spec = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "maxLevel": "ActiveTracing",
        "syscalls": ["execve"],
    }
    admin.create(
        {
            "apiVersion": API_VERSION,
            "kind": POLICY_KIND,
            "metadata": {"name": POLICY, "namespace": NS},
            "spec": spec,
        }
    )
    first = wait_for(lambda: admin.get(CILIUM, "TracingPolicyNamespaced", TP, NS), what="the Tetragon object")
    _report(control_plane, first)
    node = admin.get(API_VERSION, crds.NODE_KIND, NODE)
    (entry,) = node["status"]["policies"]
    assert (entry["objectUid"], entry["objectGeneration"]) == (first["metadata"]["uid"], 1)  # not pruned
    wait_for(
        lambda: _true(admin.get(API_VERSION, POLICY_KIND, POLICY, NS)) == (1, "Ready"), what="generation 1"
    )

    # A new spec: the Tetragon object's generation moves on, the node still names the first.
    admin.patch(API_VERSION, POLICY_KIND, POLICY, {"spec": {"syscalls": ["execve", "connect"]}}, NS)
    second = wait_for(
        lambda: (
            (tp := admin.get(CILIUM, "TracingPolicyNamespaced", TP, NS))["metadata"]["generation"] == 2 and tp
        ),
        what="the Tetragon object rewritten",
    )
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    wait_for(
        lambda: _true(admin.get(API_VERSION, POLICY_KIND, POLICY, NS)) == (2, "Progressing"),
        what="generation 2 held while the node names generation 1",
    )
    rollout = admin.get(API_VERSION, POLICY_KIND, POLICY, NS)["status"]["rollout"]
    assert (rollout["nodesRunning"], rollout["nodesPending"]) == (0, 1)

    _report(control_plane, second)  # Tetragon reloaded
    wait_for(
        lambda: _true(admin.get(API_VERSION, POLICY_KIND, POLICY, NS)) == (2, "Ready"), what="generation 2"
    )
    assert operator.alive(), operator.text()[-4000:]
