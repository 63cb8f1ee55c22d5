"""The real operator on a real kube-apiserver (v1.20), under exactly the manifests' RBAC.

The operator CLI runs as a subprocess with a kubeconfig holding a token of
the ``stellaops-operator`` ServiceAccount (TokenRequest API), the way it
runs in its Deployment. The examples of docs/examples/ are applied (a
RuntimeObserver with its store Secret, an ObservationPolicy, a
ClusterObservationPolicy), with a Node and its ObservationNode, pods the
policy selects and a pod with an invalid observe level. The operator must
render and report them as it does under kmock, restore drift, finalize a
deleted policy, and never be refused: no 403 in its log, and no request of
its ServiceAccount that the API server's audit log records as forbidden.

Then, with the operator stopped, deleting an owner leaves the rest to
kube-controller-manager's garbage collector: the rendered objects carry
owner references, and the agent fleet and Tetragon policies disappear with
their owner.

tests/integration/test_rbac_requests.py evaluates the same rules against
every request the operator makes under kmock; this is the real authorizer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import API_VERSION, CLUSTER_POLICY_KIND, OBSERVER_KIND, POLICY_KIND
from tests.realkube.controlplane import REPO, ControlPlane, OperatorProcess, load_yaml, wait_for

pytestmark = pytest.mark.realkube

OPERATOR_NS, OPERATOR_SA = "stellaops-system", "stellaops-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
AGENT_NS = crds.DEFAULT_AGENT_NAMESPACE
EXAMPLES = REPO / "docs" / "examples"
NODE = "node-a"
CILIUM = "cilium.io/v1alpha1"
DENIED = re.compile(r"\b403\b|Forbidden|forbidden")
# The log line's own time ("2026-12-06 12:16:23,403 INFO ..."): its milliseconds may read 403.
LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")


def condition(o: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((o or {}).get("status") or {}).get("conditions") or ():
        if c["type"] == type_:
            return dict(c)
    return {}


def _true(o: dict[str, Any] | None, *types: str) -> str | None:
    """The first of ``types`` whose condition is True on an up-to-date status, else None."""
    if not o or (o.get("status") or {}).get("observedGeneration") != o["metadata"]["generation"]:
        return None
    return next((t for t in types if condition(o, t).get("status") == "True"), None)


def _pod(name: str, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"app": "web"},
            "annotations": annotations,
        },
        "spec": {
            "nodeName": NODE,  # no kubelet: the pod stays Pending, which the posture does not need
            "automountServiceAccountToken": False,
            "containers": [{"name": "c", "image": "busybox"}],
        },
    }


class Life:
    """What the operator's run left behind, for the assertions."""

    def __init__(self, cp: ControlPlane, op: OperatorProcess) -> None:
        self.cp = cp
        self.op = op
        self.seen: dict[str, Any] = {}


@pytest.fixture(scope="module")
def life(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Life]:
    cp = control_plane
    admin = cp.admin
    assert admin is not None
    token = cp.service_account_token(OPERATOR_NS, OPERATOR_SA)
    kubeconfig = cp.write_kubeconfig(tmp_path_factory.mktemp("operator") / "kubeconfig", token=token)
    op = OperatorProcess(cp, kubeconfig).start()
    life = Life(cp, op)
    try:
        _drive(life)
        yield life
    finally:
        op.stop()
        # Later modules share the control plane: a node left here would count as a node
        # every later policy must roll out to ("1/2 nodes running, 1 pending").
        admin.delete(API_VERSION, crds.NODE_KIND, NODE)
        admin.delete("v1", "Node", NODE)


def _drive(life: Life) -> None:
    """The examples applied and the operator's reactions, each awaited."""
    admin, op, seen = life.cp.admin, life.op, life.seen
    assert admin is not None
    # A node with a working Tetragon, as its agent would report it.
    admin.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        }
    )
    admin.create(
        {
            "apiVersion": API_VERSION,
            "kind": crds.NODE_KIND,
            "metadata": {"name": NODE},
            "spec": {"nodeName": NODE},
        }
    )
    status = {
        "source": "tetragon",
        "heartbeatTime": "2099-01-01T00:00:00Z",
        "capabilities": {"btf": True, "uprobes": True, "tetragon": {"reachable": True}},
    }
    admin.patch(API_VERSION, crds.NODE_KIND, NODE, {"status": status}, subresource="status")

    for name in ("runtimeobserver.yaml", "observationpolicy.yaml", "clusterobservationpolicy.yaml"):
        for doc in load_yaml(EXAMPLES / name):
            admin.apply(doc)
    admin.create(_pod("web-1"))
    admin.create(_pod("web-2", **{crds.OBSERVE_LEVEL_ANNOTATION: "loud"}))

    def alive() -> None:
        assert op.alive(), f"the operator exited:\n{op.text()[-4000:]}"

    def observer() -> Any:
        alive()
        return _true(admin.get(API_VERSION, OBSERVER_KIND, "default"), "Ready", "Progressing")

    seen["observer"] = wait_for(observer, what="the RuntimeObserver Ready or Progressing", timeout=60)
    seen["policy"] = wait_for(
        lambda: _true(admin.get(API_VERSION, POLICY_KIND, "web", "default"), "Ready", "Progressing"),
        what="the ObservationPolicy Ready or Progressing",
    )
    seen["cluster_policy"] = wait_for(
        lambda: _true(admin.get(API_VERSION, CLUSTER_POLICY_KIND, "apps-syscalls"), "Ready", "Progressing"),
        what="the ClusterObservationPolicy Ready or Progressing",
    )
    seen["fleet"] = wait_for(
        lambda: admin.list("apps/v1", "DaemonSet", AGENT_NS, labelSelector=f"{crds.OBSERVER_LABEL}=default"),
        what="the agent DaemonSet",
    )
    seen["tetragon_namespaced"] = wait_for(
        lambda: admin.list(CILIUM, "TracingPolicyNamespaced", "default"), what="namespaced TracingPolicies"
    )
    seen["tetragon_cluster"] = wait_for(lambda: admin.list(CILIUM, "TracingPolicy"), what="TracingPolicies")
    seen["posture"] = wait_for(
        lambda: (
            (admin.get("v1", "Pod", "web-1", "default") or {})["metadata"]
            .get("annotations", {})
            .get(crds.POSTURE_ANNOTATION)
        ),
        what="web-1's posture annotation",
    )
    seen["event"] = wait_for(
        lambda: [
            e
            for e in admin.list("v1", "Event", "default")
            if e["involvedObject"].get("name") == "web-2" and e["type"] == "Warning"
        ],
        what="a Warning Event for web-2's invalid observe level",
    )
    seen["node_labels"] = wait_for(
        lambda: {
            k: v
            for k, v in admin.get("v1", "Node", NODE)["metadata"]["labels"].items()
            if k.startswith("feature.stellaops.io/")
        },
        what="the Node's feature labels",
    )

    # Drift: the operator patches its DaemonSet back and re-creates its ConfigMap.
    ds = seen["fleet"][0]["metadata"]["name"]
    admin.patch("apps/v1", "DaemonSet", ds, {"spec": {"template": {"spec": {"hostPID": False}}}}, AGENT_NS)
    cms = admin.list("v1", "ConfigMap", AGENT_NS, labelSelector=f"{crds.OBSERVER_LABEL}=default")
    assert cms
    admin.delete("v1", "ConfigMap", cms[0]["metadata"]["name"], AGENT_NS)
    wait_for(
        lambda: admin.get("v1", "ConfigMap", cms[0]["metadata"]["name"], AGENT_NS),
        what="ConfigMap re-created",
    )
    wait_for(
        lambda: (
            admin.get("apps/v1", "DaemonSet", ds, AGENT_NS)["spec"]["template"]["spec"].get("hostPID") is True
        ),
        what="the DaemonSet's drift restored",
    )
    # A narrower policy (its uprobes object is deleted), then the policy itself (kopf's finalizer).
    admin.patch(API_VERSION, POLICY_KIND, "web", {"spec": {"maxLevel": "ActiveTracing"}}, "default")
    wait_for(
        lambda: _true(admin.get(API_VERSION, POLICY_KIND, "web", "default"), "Ready", "Progressing"),
        what="the narrowed policy observed",
    )
    admin.delete(API_VERSION, POLICY_KIND, "web", "default")
    wait_for(
        lambda: admin.get(API_VERSION, POLICY_KIND, "web", "default") is None, what="the policy finalized"
    )
    wait_for(
        lambda: not admin.list(CILIUM, "TracingPolicyNamespaced", "default"), what="its Tetragon objects gone"
    )
    alive()


def test_the_operator_reconciles_the_examples_under_the_manifests_rbac(life: Life) -> None:
    seen = life.seen
    assert seen["observer"] in ("Ready", "Progressing")  # no kubelet: the DaemonSet never becomes ready
    assert seen["policy"] and seen["cluster_policy"]
    assert seen["posture"] and seen["event"] and seen["node_labels"]
    # The rendered objects name their owners (kmock does not check owner references; the API server does).
    assert seen["fleet"][0]["metadata"]["ownerReferences"][0]["kind"] == OBSERVER_KIND
    assert seen["tetragon_namespaced"][0]["metadata"]["ownerReferences"][0]["kind"] == POLICY_KIND


def test_no_request_of_the_operator_is_forbidden(life: Life) -> None:
    log = life.op.text()
    assert "Kubernetes API https://127.0.0.1" in log  # it ran against this server, from the kubeconfig
    denied_lines = [line for line in log.splitlines() if DENIED.search(LOG_TIME.sub("", line))]
    assert denied_lines == []
    mine = [e for e in life.cp.audit_events() if e.get("user", {}).get("username") == OPERATOR_USER]
    writes = {(e["verb"], e.get("objectRef", {}).get("resource")) for e in mine}
    # It worked as its ServiceAccount: every kind of write went through the real authorizer.
    for expected in [
        ("create", "daemonsets"),
        ("patch", "daemonsets"),
        ("create", "configmaps"),
        ("create", "serviceaccounts"),
        ("create", "services"),
        ("create", "tracingpoliciesnamespaced"),
        ("create", "tracingpolicies"),
        ("patch", "pods"),
        ("patch", "nodes"),
        ("patch", "runtimeobservers"),  # /status
        ("patch", "observationpolicies"),  # /status and kopf's finalizer
        ("create", "events"),
        ("patch", "clusterkopfpeerings"),
        ("list", "pods"),  # a watch is audited at its end (ResponseComplete), after this test
    ]:
        assert expected in writes, (expected, sorted(writes, key=str))
    forbidden = [
        f"{e['verb']} {e.get('requestURI')} -> {e.get('responseStatus', {}).get('code')}"
        for e in mine
        if e.get("responseStatus", {}).get("code") == 403
        or (e.get("annotations") or {}).get("authorization.k8s.io/decision") == "forbid"
    ]
    assert forbidden == []


def test_garbage_collection_removes_the_rendered_objects(life: Life) -> None:
    """With the operator stopped, only owner references and kube-controller-manager's GC remain."""
    admin = life.cp.admin
    assert admin is not None
    assert life.op.stop() is not None and not life.op.alive()
    selector = {"labelSelector": f"{crds.OBSERVER_LABEL}=default"}
    owned = {
        kind: admin.list(api, kind, AGENT_NS, **selector)
        for api, kind in (
            ("apps/v1", "DaemonSet"),
            ("v1", "ConfigMap"),
            ("v1", "ServiceAccount"),
            ("v1", "Service"),
        )
    }
    assert owned["DaemonSet"] and owned["ConfigMap"], owned
    observer_uid = admin.get(API_VERSION, OBSERVER_KIND, "default")["metadata"]["uid"]
    for kind, objs in owned.items():
        for o in objs:
            assert [ref["uid"] for ref in o["metadata"].get("ownerReferences", [])] == [observer_uid], (
                kind,
                o,
            )
    admin.delete(API_VERSION, OBSERVER_KIND, "default")
    wait_for(
        lambda: all(
            not admin.list(api, kind, AGENT_NS, **selector)
            for api, kind in (
                ("apps/v1", "DaemonSet"),
                ("v1", "ConfigMap"),
                ("v1", "ServiceAccount"),
                ("v1", "Service"),
            )
        ),
        what="the agent fleet garbage-collected",
        timeout=60,
    )

    # The ClusterObservationPolicy carries kopf's finalizer, which nobody removes with the
    # operator down: remove it as an admin would (a JSON patch of /metadata/finalizers).
    rendered = admin.list(CILIUM, "TracingPolicy")
    assert rendered
    cpol = admin.get(API_VERSION, CLUSTER_POLICY_KIND, "apps-syscalls")
    for o in rendered:
        assert o["metadata"]["ownerReferences"][0]["uid"] == cpol["metadata"]["uid"]
    admin.delete(API_VERSION, CLUSTER_POLICY_KIND, "apps-syscalls")
    path = admin.path(API_VERSION, CLUSTER_POLICY_KIND, "apps-syscalls")
    admin.request(
        "PATCH",
        path,
        [{"op": "remove", "path": "/metadata/finalizers"}],
        content_type="application/json-patch+json",
    )
    wait_for(lambda: admin.get(API_VERSION, CLUSTER_POLICY_KIND, "apps-syscalls") is None, what="policy gone")
    wait_for(
        lambda: not admin.list(CILIUM, "TracingPolicy"),
        what="its TracingPolicies garbage-collected",
        timeout=60,
    )
