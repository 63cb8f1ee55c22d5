"""Issue 16 on the real kube-apiserver (v1.20): posture, level labels, Tetragon down, namespaces, finalizers.

The operator runs as a subprocess under its ServiceAccount's token (the
manifests' RBAC), as in test_operator_on_real_apiserver.py. What the real
server must show:

- every observe level on real pods: the posture annotations and one level
  label per level reached (``stellaops.io/observe``, ``-deep``, ``-full``),
  an opt-out spelling (``Off``) read as None, and an invalid value read as
  None too (fail closed) with a Warning Event ``InvalidObserveLevel``;
- the node's agent reporting no working source (``source: none``,
  ``maxPosture: None``): every pod drops to None and loses its level
  labels, the node's ``max-posture`` label drops to None, and the policy
  turns Degraded with reason TetragonUnreachable; all of it returns with
  Tetragon;
- a namespace being deleted: nothing is created in it again, so the operator
  logs no 403 from NamespaceLifecycle and the namespace goes;
- a policy invalid under a tightened CRD schema (1.20 has no validation
  ratcheting): the finalizer removal is refused with 422; the operator logs
  an ERROR with the status and the server's message and posts a Warning
  Event; ``finalizers: null`` (merge) and a JSON patch removing
  ``/metadata/finalizers`` alone are refused too; the documented recipe (the
  finalizer removed in the same JSON patch that replaces the spec with
  ``{}``) releases it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from tests.realkube.controlplane import ApiError, ControlPlane, OperatorProcess, wait_for

pytestmark = pytest.mark.realkube

OPERATOR_NS, OPERATOR_SA = "stellaops-system", "stellaops-operator"
NS, NODE, DOOMED = "posture", "node-p", "doomed"
CILIUM = "cilium.io/v1alpha1"
CRD = "observationpolicies.stellaops.io"
LEVEL_LABELS = ("stellaops.io/observe", "stellaops.io/observe-deep", "stellaops.io/observe-full")
# pod -> (annotation, posture, level labels) with a working Tetragon on a node that has everything
PODS: dict[str, tuple[str | None, str, tuple[str, ...]]] = {
    "l-none": ("None", "None", ()),
    "l-passive": ("passive", "Passive", ()),
    "l-active": ("ActiveTracing", "ActiveTracing", LEVEL_LABELS[:1]),
    "l-deep": ("ebpf-deep", "EbpfDeep", LEVEL_LABELS[:2]),
    "l-full": (None, "FullInstrumentation", LEVEL_LABELS),
    "l-off": ("Off", "None", ()),
    "l-invalid": ("turbo", "None", ()),
}
WORKING = {
    "source": "tetragon",
    "maxPosture": "FullInstrumentation",
    "maxPostureReason": "every probe kind is available",
    "heartbeatTime": "2099-01-01T00:00:00Z",
    "capabilities": {
        "btf": True,
        "bpfPermitted": True,
        "tracepoints": True,
        "uprobes": True,
        "kprobes": True,
        "usdt": True,
        "tetragon": {"reachable": True, "address": "unix:///var/run/tetragon/tetragon.sock"},
    },
    "policies": [
        {"name": n, "namespace": NS, "state": "ENABLED"}
        for n in ("stellaops-levels", "stellaops-levels-stacks", "stellaops-levels-uprobes")
    ],
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "TetragonReachable", "message": "Tetragon v1.7.0",
         "lastTransitionTime": "2026-01-01T00:00:00Z"},
    ],
}  # fmt: skip
UNREACHABLE = {
    **WORKING,
    "source": "none",
    "maxPosture": "None",
    "maxPostureReason": "no event source works: Tetragon does not answer",
    "capabilities": {**WORKING["capabilities"], "tetragon": {"reachable": False, "address": "x"}},
    "policies": [],
    "conditions": [
        {"type": "Ready", "status": "False", "reason": "TetragonUnreachable",
         "message": "Tetragon at x does not answer: connection refused",
         "lastTransitionTime": "2026-01-01T00:00:00Z"},
    ],
}  # fmt: skip


def _pod(name: str, annotation: str | None, namespace: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "levels"},
            "annotations": {crds.OBSERVE_LEVEL_ANNOTATION: annotation} if annotation else {},
        },
        "spec": {
            "nodeName": NODE,  # no kubelet: the pod stays Pending, which the posture does not need
            "automountServiceAccountToken": False,
            "containers": [{"name": "c", "image": "busybox"}],
        },
    }


def _policy(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": POLICY_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {"matchLabels": {"app": "levels"}}, **spec},
    }


def _condition(o: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((o or {}).get("status") or {}).get("conditions") or ():
        if c["type"] == type_:
            return dict(c)
    return {}


class Run:
    def __init__(self, cp: ControlPlane, op: OperatorProcess) -> None:
        self.cp, self.op = cp, op
        assert cp.admin is not None
        self.admin = cp.admin

    def alive(self) -> None:
        assert self.op.alive(), f"the operator exited:\n{self.op.text()[-4000:]}"

    def pod_state(self, name: str) -> tuple[str, tuple[str, ...]]:
        meta = (self.admin.get("v1", "Pod", name, NS) or {}).get("metadata") or {}
        labels = meta.get("labels") or {}
        posture = (meta.get("annotations") or {}).get(crds.POSTURE_ANNOTATION, "")
        return posture, tuple(k for k in LEVEL_LABELS if labels.get(k) == "true")

    def report(self, status: dict[str, Any]) -> None:
        self.admin.patch(API_VERSION, crds.NODE_KIND, NODE, {"status": status}, subresource="status")


@pytest.fixture(scope="module")
def run(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
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
    wait_for(
        lambda: (admin.get("v1", "ServiceAccount", "default", NS) or {}).get("secrets"),
        what="the posture namespace's default ServiceAccount",
    )
    token = cp.service_account_token(OPERATOR_NS, OPERATOR_SA)
    kubeconfig = cp.write_kubeconfig(tmp_path_factory.mktemp("posture-op") / "kubeconfig", token=token)
    op = OperatorProcess(cp, kubeconfig, name="posture-operator").start()
    r = Run(cp, op)
    try:
        r.report(WORKING)
        admin.create(
            _policy(
                "levels",
                NS,
                maxLevel="FullInstrumentation",
                syscalls=["execve"],
                functions=[{"binaryPath": "/usr/bin/python3.11", "symbols": ["PyEval_EvalCode"]}],
                stackTraces={"kernel": True},
            )
        )
        for name, (annotation, _, _) in PODS.items():
            admin.create(_pod(name, annotation))
        yield r
    finally:
        op.stop()
        # The control plane is shared by the worker's other test files: a Node left behind here
        # is one more node whose agent never reports, and their policies never become Ready.
        admin.delete(API_VERSION, POLICY_KIND, "levels", NS)
        admin.delete(API_VERSION, crds.NODE_KIND, NODE)
        admin.delete("v1", "Node", NODE)


def test_every_observe_level_on_real_pods(run: Run) -> None:
    want = {name: (posture, labels) for name, (_, posture, labels) in PODS.items()}

    def converged() -> bool:
        run.alive()
        return all(run.pod_state(name) == w for name, w in want.items())

    wait_for(converged, what="posture annotations and level labels on every pod", timeout=60)
    reason = run.admin.get("v1", "Pod", "l-invalid", NS)["metadata"]["annotations"][
        crds.POSTURE_REASON_ANNOTATION
    ]
    assert reason.startswith(f"invalid {crds.OBSERVE_LEVEL_ANNOTATION} 'turbo', not an observe level: ")
    for name in ("l-none", "l-off", "l-invalid"):  # the label that tells the agents
        labels = run.admin.get("v1", "Pod", name, NS)["metadata"]["labels"]
        assert labels.get(crds.OBSERVE_OFF_LABEL) == "true", name
    events = wait_for(
        lambda: [
            e
            for e in run.admin.list("v1", "Event", NS)
            if e["reason"] == "InvalidObserveLevel" and e["involvedObject"]["name"] == "l-invalid"
        ],
        what="an InvalidObserveLevel Event for l-invalid",
    )
    assert events[0]["type"] == "Warning" and "'turbo'" in events[0]["message"]
    assert "opted out (None)" in events[0]["message"]
    assert not any(e["reason"] == "InvalidObserveLevel" and e["involvedObject"]["name"] != "l-invalid"
                   for e in run.admin.list("v1", "Event", NS))  # fmt: skip
    # the rendered parts, as the real server stores them, select by level
    sel = {
        o["metadata"]["name"]: o["spec"]["podSelector"]
        for o in run.admin.list(CILIUM, "TracingPolicyNamespaced", NS)
    }
    assert sel["stellaops-levels"]["matchLabels"] == {"app": "levels", "stellaops.io/observe": "true"}
    assert sel["stellaops-levels"]["matchExpressions"] == [
        {"key": "stellaops.io/observe-deep", "operator": "DoesNotExist"}
    ]
    assert sel["stellaops-levels-uprobes"]["matchLabels"] == {
        "app": "levels",
        "stellaops.io/observe-deep": "true",
    }
    assert sel["stellaops-levels-stacks"]["matchLabels"] == {
        "app": "levels",
        "stellaops.io/observe-deep": "true",
    }
    wait_for(
        lambda: (
            _condition(run.admin.get(API_VERSION, POLICY_KIND, "levels", NS), "Ready").get("status") == "True"
        ),
        what="the policy Ready",
    )


def test_no_working_source_no_posture_then_back(run: Run) -> None:
    run.report(UNREACHABLE)

    def down() -> bool:
        run.alive()
        return all(run.pod_state(name) == ("None", ()) for name in PODS)

    wait_for(down, what="every pod at None without level labels", timeout=60)
    labels = run.admin.get("v1", "Node", NODE)["metadata"]["labels"]
    assert labels["feature.stellaops.io/max-posture"] == "None"
    assert labels["feature.stellaops.io/source"] == "none"

    def degraded_policy() -> dict[str, Any] | None:
        policy = run.admin.get(API_VERSION, POLICY_KIND, "levels", NS)
        return policy if _condition(policy, "Degraded").get("status") == "True" else None

    policy = wait_for(degraded_policy, what="the policy Degraded", timeout=60)
    degraded = _condition(policy, "Degraded")
    assert (
        degraded["reason"] == "TetragonUnreachable"
        and f"{NODE} since 2026-01-01T00:00:00Z" in degraded["message"]
    )
    assert _condition(policy, "Ready")["status"] == "False"
    run.report(WORKING)
    want = {name: (posture, labels) for name, (_, posture, labels) in PODS.items()}
    wait_for(lambda: all(run.pod_state(n) == w for n, w in want.items()), what="pods back", timeout=60)
    wait_for(
        lambda: (
            _condition(run.admin.get(API_VERSION, POLICY_KIND, "levels", NS), "Ready").get("status") == "True"
        ),
        what="the policy Ready again",
    )


def test_nothing_is_recreated_in_a_namespace_being_deleted(run: Run) -> None:
    admin = run.admin
    admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DOOMED}})
    wait_for(
        lambda: (admin.get("v1", "ServiceAccount", "default", DOOMED) or {}).get("secrets"),
        what="the doomed namespace's default ServiceAccount",
    )
    admin.create(_policy("soon-gone", DOOMED, maxLevel="ActiveTracing", syscalls=["execve"]))
    wait_for(lambda: admin.list(CILIUM, "TracingPolicyNamespaced", DOOMED), what="its Tetragon policy")
    before = len(run.op.text())
    admin.delete("v1", "Namespace", DOOMED)
    wait_for(lambda: admin.get("v1", "Namespace", DOOMED) is None, what="the namespace gone", timeout=90)
    run.alive()
    log = run.op.text()[before:]
    assert "being terminated" not in log and " 403" not in log and "Forbidden" not in log, log[-3000:]


def _set_syscall_max_length(admin: Any, n: int) -> None:
    crd = admin.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD)
    for version in crd["spec"]["versions"]:
        props = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        props["syscalls"]["items"]["maxLength"] = n
    admin.request("PUT", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD}", crd)


def test_a_refused_finalizer_removal_is_logged_and_the_documented_recipe_works(run: Run) -> None:
    admin = run.admin
    path = admin.path(API_VERSION, POLICY_KIND, "strict", NS)
    admin.create(_policy("strict", NS, maxLevel="ActiveTracing", syscalls=["execve"]))
    wait_for(
        lambda: (
            "stellaops.io/finalizer"
            in (
                (admin.get(API_VERSION, POLICY_KIND, "strict", NS) or {})
                .get("metadata", {})
                .get("finalizers")
                or []
            )
        ),
        what="kopf's finalizer on the policy",
    )
    original = copy.deepcopy(admin.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD))
    _set_syscall_max_length(admin, 4)  # "execve" is now too long: the stored spec is invalid
    try:
        # the schema takes effect asynchronously: wait until a no-op write is refused
        def refused() -> bool:
            try:
                admin.request("PATCH", path, {"metadata": {"labels": {"probe": "x"}}},
                              content_type="application/merge-patch+json")  # fmt: skip
            except ApiError as e:
                return e.status == 422
            return False

        wait_for(refused, what="the tightened schema in effect")
        before = len(run.op.text())
        admin.delete(API_VERSION, POLICY_KIND, "strict", NS)
        events = wait_for(
            lambda: [
                e
                for e in admin.list("v1", "Event", NS)
                if e["reason"] == "FinalizerRemovalRejected" and e["involvedObject"]["name"] == "strict"
            ],
            what="a FinalizerRemovalRejected Event",
            timeout=60,
        )
        assert events[0]["type"] == "Warning" and "HTTP 422" in events[0]["message"]
        log = run.op.text()[before:]
        line = next((x for x in log.splitlines() if "refused to remove the finalizer" in x), "")
        assert "ERROR" in line and f"{NS}/strict" in line and "HTTP 422" in line, log[-3000:]
        assert "should be at most 4 chars long" in line  # the server's own message
        assert admin.get(API_VERSION, POLICY_KIND, "strict", NS) is not None  # still Terminating
        # What does not work on such a server: the merge patch, and a JSON patch of the finalizers alone
        for body, kind in (
            ({"metadata": {"finalizers": None}}, "application/merge-patch+json"),
            ([{"op": "remove", "path": "/metadata/finalizers"}], "application/json-patch+json"),
        ):
            with pytest.raises(ApiError) as refusal:
                admin.request("PATCH", path, body, content_type=kind)
            assert refusal.value.status == 422
        # The documented recipe (docs/operator-operations.md): the spec emptied in the same patch
        recipe = [
            {"op": "replace", "path": "/spec", "value": {}},
            {"op": "remove", "path": "/metadata/finalizers"},
        ]
        admin.request("PATCH", path, recipe, content_type="application/json-patch+json")
        wait_for(lambda: admin.get(API_VERSION, POLICY_KIND, "strict", NS) is None, what="the policy gone")
    finally:
        _restore(admin, original)
    run.alive()


def _restore(admin: Any, original: dict[str, Any]) -> None:
    current = admin.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD)
    original["metadata"] = {
        **original["metadata"],
        "resourceVersion": current["metadata"]["resourceVersion"],
    }
    original.pop("status", None)
    admin.request("PUT", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD}", original)
    # The schema takes effect asynchronously, also when restored: the next test's policy with
    # "execve" was refused (the clean-clone CI at 1e4b52c: "at most 4 chars long"). Wait until a
    # dry-run create of such a policy is taken.
    collection = admin.path(API_VERSION, POLICY_KIND, "probe", NS).rsplit("/", 1)[0]
    probe = _policy("schema-probe", NS, maxLevel="ActiveTracing", syscalls=["execve"])

    def restored() -> bool:
        try:
            admin.request("POST", collection, probe, params={"dryRun": "All"})
        except ApiError as e:
            if e.status == 422:
                return False
            raise
        return True

    wait_for(restored, what="the restored schema in effect")


def test_the_plain_finalizer_recipe_releases_a_valid_policy(run: Run) -> None:
    """Without the operator's help (here: a second finalizer nobody removes), the JSON patch releases it."""
    admin = run.admin
    body = _policy("held", NS, maxLevel="ActiveTracing", syscalls=["execve"])
    body["metadata"]["finalizers"] = ["example.com/hold"]
    admin.create(body)
    wait_for(
        lambda: admin.list(
            CILIUM, "TracingPolicyNamespaced", NS, labelSelector="stellaops.io/policy-name=held"
        ),
        what="its Tetragon policy",
    )
    admin.delete(API_VERSION, POLICY_KIND, "held", NS)
    wait_for(
        lambda: (
            (admin.get(API_VERSION, POLICY_KIND, "held", NS) or {}).get("metadata", {}).get("finalizers")
            == ["example.com/hold"]
        ),
        what="the operator's finalizer removed, the other one left",
    )
    path = admin.path(API_VERSION, POLICY_KIND, "held", NS)
    admin.request("PATCH", path, [{"op": "remove", "path": "/metadata/finalizers"}],
                  content_type="application/json-patch+json")  # fmt: skip
    wait_for(lambda: admin.get(API_VERSION, POLICY_KIND, "held", NS) is None, what="the policy gone")
    run.alive()
