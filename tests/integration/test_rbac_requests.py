"""Every API request the real operator makes is allowed by the manifests' RBAC, evaluated here.

The operator (kopf, our handlers, peering on) runs against kmock's emulator
through a whole life: an observer and its agent fleet in the agent
namespace, policies rendering Tetragon objects, pods getting postures, a
node getting feature labels, an invalid observe level (an Event), drift,
policy deletion (finalizer) and observer deletion. Every request it sent is
then turned into RBAC's request attributes (verb, API group, resource and
subresource, namespace, name) and evaluated against the rules of
manifests/operator/rbac.yaml bound to its ServiceAccount, the way the
API server's RBAC authorizer does: ClusterRoleBindings grant everywhere,
RoleBindings only in their namespace; ``resourceNames`` match only requests
that name an object. Discovery paths (``/api``, ``/apis/...``) are granted to
every authenticated user by the built-in ``system:discovery`` role.

The emulator enforces no RBAC: a real kube-apiserver running the operator
under exactly these rules is issue 16's test (not available yet).
The evaluator is tested on requests it must refuse, so a broken one fails.

The same run checks the operator's pod and node patches against what the
admission policies of manifests/admission/ allow: only ``stellaops.io/``
labels and annotations on pods, only ``feature.stellaops.io/`` labels on nodes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import API_VERSION, CLUSTER_POLICY_KIND, OBSERVER_KIND, POLICY_KIND
from stellaops_runtime.controller.render_agent import agent_resource_name
from stellaops_runtime.controller.settings import DEFAULT_PEERING
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import TEST_AGENT, Cluster, OperatorRun, obj, wait_for

ASYNC = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[2]
AGENT_NS = crds.DEFAULT_AGENT_NAMESPACE
NODE = "node-a"
DISCOVERY = ("/api", "/apis", "/version", "/openapi")


@dataclass(frozen=True, slots=True)
class Attributes:
    """What RBAC decides on (k8s.io/apiserver's authorizer.Attributes for a resource request)."""

    verb: str
    group: str
    resource: str  # "pods" or "pods/status"
    namespace: str | None
    name: str | None

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.resource}.{self.group or 'core'} {self.name or ''}{where}"


def attributes(method: str, path: str, params: dict[str, str]) -> Attributes | None:
    """RBAC attributes of a request, or None for a non-resource (discovery) path."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
    if resource == "namespaces" and name is not None:
        namespace = name  # RBAC sees a Namespace's own requests in that namespace
    if method == "GET":
        verb = "get" if name else ("watch" if params.get("watch") in ("true", "1") else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]
    return Attributes(verb, group, f"{resource}/{sub}" if sub else resource, namespace, name)


class Authorizer:
    """RBAC's decision for one ServiceAccount from the manifests' Roles, ClusterRoles and bindings."""

    def __init__(self, docs: list[dict[str, Any]], *, namespace: str, name: str) -> None:
        subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
        roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
        self.cluster_rules: list[dict[str, Any]] = []
        self.namespace_rules: dict[str, list[dict[str, Any]]] = {}
        for d in docs:
            if d["kind"] not in ("ClusterRoleBinding", "RoleBinding") or subject not in d["subjects"]:
                continue
            ref = d["roleRef"]
            ns = d["metadata"].get("namespace")
            role = roles[(ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"])]
            if d["kind"] == "ClusterRoleBinding":
                self.cluster_rules += role["rules"]
            else:
                self.namespace_rules.setdefault(ns, []).extend(role["rules"])

    @staticmethod
    def _matches(rule: dict[str, Any], a: Attributes) -> bool:
        if a.verb not in rule["verbs"] and "*" not in rule["verbs"]:
            return False
        if a.group not in rule["apiGroups"] and "*" not in rule["apiGroups"]:
            return False
        if a.resource not in rule["resources"] and "*" not in rule["resources"]:
            return False
        names = rule.get("resourceNames") or []
        return not names or (a.name is not None and a.verb != "create" and a.name in names)

    def allows(self, a: Attributes) -> bool:
        rules = self.cluster_rules + (self.namespace_rules.get(a.namespace or "", []))
        return any(self._matches(rule, a) for rule in rules)


def manifest_docs() -> list[dict[str, Any]]:
    docs = []
    for path in (ROOT / "manifests" / "operator" / "rbac.yaml", ROOT / "manifests" / "agent" / "rbac.yaml"):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


@pytest.fixture(scope="module")
def operator_rbac() -> Authorizer:
    docs = manifest_docs()
    (sa,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    return Authorizer(docs, namespace=sa["metadata"]["namespace"], name=sa["metadata"]["name"])


def test_the_evaluator_refuses_what_the_manifests_do_not_grant(operator_rbac: Authorizer) -> None:
    refused = [
        Attributes("create", "apps", "daemonsets", "kube-system", None),
        Attributes("patch", "", "configmaps", "kube-system", "aws-auth"),
        Attributes("create", "rbac.authorization.k8s.io", "clusterrolebindings", None, None),
        Attributes("update", "", "pods", "shop", "web"),
        Attributes("delete", "", "pods", "shop", "web"),
        Attributes("get", "", "secrets", "shop", "db"),
        Attributes("patch", "kopf.dev", "clusterkopfpeerings", None, "someone-elses"),
        Attributes("patch", crds.GROUP, crds.NODE_PLURAL, None, NODE),
    ]
    assert [a for a in refused if operator_rbac.allows(a)] == []
    granted = [
        Attributes("create", "apps", "daemonsets", AGENT_NS, None),
        Attributes("patch", "", "configmaps", AGENT_NS, "x"),
        Attributes("patch", "", "pods", "shop", "web"),
        Attributes("patch", "kopf.dev", "clusterkopfpeerings", None, DEFAULT_PEERING),
    ]
    assert [a for a in granted if not operator_rbac.allows(a)] == []


def test_request_attributes_follow_the_api_paths() -> None:
    assert attributes("GET", "/api/v1/pods", {"watch": "true"}) == Attributes("watch", "", "pods", None, None)
    assert attributes("GET", "/api/v1/namespaces/shop/pods", {}) == Attributes(
        "list", "", "pods", "shop", None
    )
    assert attributes("PATCH", "/apis/stellaops.io/v1alpha1/runtimeobservers/x/status", {}) == Attributes(
        "patch", "stellaops.io", "runtimeobservers/status", None, "x"
    )
    assert attributes("POST", "/apis/apps/v1/namespaces/a/daemonsets", {}) == Attributes(
        "create", "apps", "daemonsets", "a", None
    )
    assert attributes("GET", "/apis/apps/v1", {}) is None and attributes("GET", "/api", {}) is None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        for ns in ("stellaops-system", AGENT_NS, "shop"):
            await c.create(obj("v1", "Namespace", ns, labels={"kubernetes.io/metadata.name": ns}))
        await c.create(obj("kopf.dev/v1", "ClusterKopfPeering", DEFAULT_PEERING))
        await c.create(obj("v1", "Node", NODE, labels={"kubernetes.io/hostname": NODE}))
        yield c


def _pod(name: str, **annotations: str) -> dict[str, Any]:
    return obj(
        "v1",
        "Pod",
        name,
        namespace="shop",
        labels={"app": "web", "team": "shop"},
        annotations={"owner": "team-shop", **annotations},
        spec={"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]},
    )


async def _life(cluster: Cluster) -> None:
    """Drive the operator through every kind of write it makes."""
    observer = {
        "agentNamespace": AGENT_NS,
        "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
        "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
    }
    async with OperatorRun(cluster, priority=10) as op:
        await cluster.create(obj(API_VERSION, OBSERVER_KIND, "fleet", spec=observer))
        await cluster.create(_pod("web-1"))
        await cluster.create(_pod("web-2", **{crds.OBSERVE_LEVEL_ANNOTATION: "loud"}))
        await cluster.create(
            obj(
                API_VERSION,
                crds.NODE_KIND,
                NODE,
                spec={"nodeName": NODE},
                status={
                    "source": "tetragon",
                    "heartbeatTime": "2099-01-01T00:00:00Z",
                    "capabilities": {"btf": True, "uprobes": True, "tetragon": {"reachable": True}},
                },
            )
        )
        spec = {
            "podSelector": {"matchLabels": {"app": "web"}},
            "maxLevel": "EbpfDeep",
            "syscalls": ["execve"],
            "functions": [{"binaryPath": "/usr/lib/libssl.so.3", "symbols": ["SSL_read"]}],
        }
        await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace="shop", spec=spec))
        await cluster.create(obj(API_VERSION, CLUSTER_POLICY_KIND, "all", spec={"maxLevel": "Passive"}))
        await op.settle()
        res = agent_resource_name("fleet")
        # drift: the operator patches its DaemonSet back, re-creates its ConfigMap
        await cluster.patch(
            r.DAEMONSETS, res, {"spec": {"template": {"spec": {"hostPID": False}}}}, namespace=AGENT_NS
        )
        await cluster.delete(r.CONFIGMAPS, res, namespace=AGENT_NS)
        await wait_for(lambda: cluster.stored(r.CONFIGMAPS, res, AGENT_NS) is not None, what="re-created")
        # a narrower policy: its uprobes object is deleted
        await cluster.patch(
            r.OBSERVATION_POLICIES, "web", {"spec": {"maxLevel": "ActiveTracing"}}, namespace="shop"
        )
        await op.settle()
        await cluster.delete(r.OBSERVATION_POLICIES, "web", namespace="shop")
        await wait_for(
            lambda: cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") is None, what="policy finalized"
        )
        await cluster.delete(r.RUNTIME_OBSERVERS, "fleet")
        await op.settle()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def requests(cluster: Cluster) -> list[Any]:
    mark = cluster.mark()
    await _life(cluster)
    return [
        q for q in cluster.requests()[mark:] if not q.headers.get("User-Agent", "").startswith(TEST_AGENT)
    ]


def _attrs(requests: list[Any]) -> list[Attributes]:
    out = []
    for q in requests:
        a = attributes(q.method.value, q.url.path, dict(q.url.query))
        if a is not None:
            out.append(a)
    return out


@ASYNC
async def test_the_run_covers_every_kind_of_write(requests: list[Any]) -> None:
    seen = {(a.verb, a.resource, a.namespace if a.group in ("", "apps") else None) for a in _attrs(requests)}
    expected = {
        ("create", "daemonsets", AGENT_NS),
        ("patch", "daemonsets", AGENT_NS),
        ("create", "configmaps", AGENT_NS),
        ("create", "serviceaccounts", AGENT_NS),
        ("create", "services", AGENT_NS),
        ("create", "tracingpoliciesnamespaced", None),
        ("delete", "tracingpoliciesnamespaced", None),
        ("patch", "pods", "shop"),
        ("patch", "nodes", None),
        ("patch", "runtimeobservers/status", None),
        ("patch", "observationpolicies/status", None),
        ("patch", "observationpolicies", None),  # kopf's finalizer
        ("patch", "clusterkopfpeerings", None),  # kopf's keep-alive
        ("create", "events", "shop"),
        ("watch", "pods", None),
    }
    assert expected <= seen, expected - seen


@ASYNC
async def test_every_request_is_allowed_by_the_manifests(
    requests: list[Any], operator_rbac: Authorizer
) -> None:
    denied = sorted({str(a) for a in _attrs(requests) if not operator_rbac.allows(a)})
    assert denied == []
    others = {q.url.path for q in requests if attributes(q.method.value, q.url.path, {}) is None}
    assert all(p.startswith(DISCOVERY) for p in others), others  # granted by system:discovery


def _changed_keys(patch: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
    meta = patch.get("metadata") or {}
    # resourceVersion is the emulator's bookkeeping (kubeharness.ApiServer adds it to the request)
    kept = ("labels", "annotations", "resourceVersion")
    rest = {k for k in patch if k != "metadata"} | {k for k in meta if k not in kept}
    return set(meta.get("labels") or {}), set(meta.get("annotations") or {}), rest


@ASYNC
async def test_pod_and_node_patches_stay_within_the_admission_policies(requests: list[Any]) -> None:
    pods = [q for q in requests if q.method.value == "PATCH" and "/pods/" in q.url.path]
    nodes = [q for q in requests if q.method.value == "PATCH" and q.url.path.startswith("/api/v1/nodes/")]
    assert pods and nodes
    for q in pods:
        labels, annotations, rest = _changed_keys(q.data)
        assert all(k.startswith("stellaops.io/") for k in labels | annotations), q.data
        # metadata.uid is a precondition, not a change: the API server refuses the patch of a pod
        # re-created under the name since it was read (controller/reconcile_pods.py)
        assert rest <= {"uid"}, q.data
    for q in nodes:
        labels, annotations, rest = _changed_keys(q.data)
        assert all(k.startswith("feature.stellaops.io/") for k in labels), q.data
        assert annotations == rest == set(), q.data


@ASYNC
async def test_an_agent_namespace_without_the_role_is_reported(
    tmp_path: Path, operator_rbac: Authorizer
) -> None:
    """With the emulator refusing what the manifests' RBAC refuses: another agentNamespace is ApplyFailed."""

    def authorize(q: Any) -> bool:
        if q.headers.get("User-Agent", "").startswith(TEST_AGENT):
            return True
        a = attributes(q.method.value, q.url.path, dict(q.url.query))
        return a is None or operator_rbac.allows(a)

    async with Cluster(tmp_path) as c:
        await c.create(obj("v1", "Namespace", "elsewhere"))
        c.api.authorize = authorize
        spec = {
            "agentNamespace": "elsewhere",
            "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
            "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
        }
        async with OperatorRun(c):
            await c.create(obj(API_VERSION, OBSERVER_KIND, "fleet", spec=spec))
            await wait_for(
                lambda: (
                    _condition(c.stored(r.RUNTIME_OBSERVERS, "fleet"), "Degraded").get("reason")
                    == "ApplyFailed"
                ),
                what="the observer reports the refused writes",
            )
        message = _condition(c.stored(r.RUNTIME_OBSERVERS, "fleet"), "Degraded")["message"]
        assert "DaemonSet stellaops-agent-fleet: 403 Forbidden" in message
        assert c.listed(r.DAEMONSETS, "elsewhere") == []
        assert c.writes(rejected=True)  # refused, as the API server would


def _condition(o: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((o or {}).get("status") or {}).get("conditions") or ():
        if cond["type"] == type_:
            return cond
    return {}
