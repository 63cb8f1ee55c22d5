"""manifests/ builds with the real kubectl (kustomize) into what `kubectl apply -k` must install.

kubectl comes from Debian's kubernetes-client package (installed by the test
setup). Built-in objects are read into the official Kubernetes client models
and written back, so a misspelt field fails here rather than being pruned
silently by the API server.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schema import load_crd, validator_for
from kubernetes import client

from stellaops_runtime.contracts import crds

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed (scripts/setup.sh installs it)"
)


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    if KUBECTL is None:
        pytest.fail(
            "kubectl is not installed: run scripts/setup.sh (Debian's kubernetes-client)", pytrace=False
        )
    proc = subprocess.run([KUBECTL, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_kustomize_builds_the_expected_objects(built: list[dict[str, Any]]) -> None:
    assert Counter(d["kind"] for d in built) == Counter(
        {
            "CustomResourceDefinition": 6,
            "Namespace": 2,
            "ServiceAccount": 1,
            "ClusterRole": 2,
            "ClusterRoleBinding": 2,
            "Role": 1,
            "RoleBinding": 1,
            "Deployment": 1,
        }
    )
    names = {d["metadata"]["name"] for d in by_kind(built, "CustomResourceDefinition")}
    assert names == {
        f"{crds.OBSERVER_PLURAL}.{crds.GROUP}",
        f"{crds.POLICY_PLURAL}.{crds.GROUP}",
        f"{crds.CLUSTER_POLICY_PLURAL}.{crds.GROUP}",
        f"{crds.NODE_PLURAL}.{crds.GROUP}",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }
    # every CRD file is part of the kustomization
    files = {load_crd(p)["metadata"]["name"] for p in (MANIFESTS / "crds").glob("*.yaml")}
    assert files <= names
    # a custom resource of a kind its CRD defines in the same apply would fail: none is included
    assert not any(d["apiVersion"].startswith(("kopf.dev/", f"{crds.GROUP}/")) for d in built)
    # the admission policies need Kubernetes 1.30: a kustomization of their own, not this one
    assert not any(d["apiVersion"].startswith("admissionregistration.k8s.io/") for d in built)


def test_built_crds_keep_their_schemas(built: list[dict[str, Any]]) -> None:
    for doc in by_kind(built, "CustomResourceDefinition"):
        validator_for(doc)


def test_builtin_objects_use_real_api_fields(built: list[dict[str, Any]]) -> None:
    api = client.ApiClient()
    for doc in built:
        if doc["kind"] == "CustomResourceDefinition":
            continue
        model = api._ApiClient__deserialize(doc, f"V1{doc['kind']}")  # type: ignore[attr-defined]
        assert api.sanitize_for_serialization(model) == doc, doc["kind"]


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return doc


def test_namespaces_carry_pod_security_labels(built: list[dict[str, Any]]) -> None:
    """The operator's namespace enforces restricted; the agents' (the default agentNamespace) privileged."""
    operator_ns = _named(built, "Namespace", "stellaops-system")["metadata"]["labels"]
    agent_ns = _named(built, "Namespace", crds.DEFAULT_AGENT_NAMESPACE)["metadata"]["labels"]
    assert crds.DEFAULT_AGENT_NAMESPACE != "stellaops-system"
    for mode in ("enforce", "audit", "warn"):
        assert operator_ns[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert agent_ns["pod-security.kubernetes.io/enforce"] == "privileged"
    assert agent_ns["pod-security.kubernetes.io/enforce-version"] == "latest"
    text = (MANIFESTS / "namespace.yaml").read_text()
    assert "hostPID" in text and "SYS_PTRACE" in text  # the reason for privileged is written down


def test_operator_deployment(built: list[dict[str, Any]]) -> None:
    (deploy,) = by_kind(built, "Deployment")
    (sa,) = by_kind(built, "ServiceAccount")
    ns = _named(built, "Namespace", "stellaops-system")
    assert deploy["metadata"]["namespace"] == sa["metadata"]["namespace"] == ns["metadata"]["name"]
    assert deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    (container,) = pod["containers"]
    assert container["command"][:3] == ["stella-runtime", "operator", "--all-namespaces"]
    liveness = next(a for a in container["command"] if a.startswith("--liveness="))
    port = int(liveness.split(":")[-1].split("/")[0])
    path = "/" + liveness.split("/", 3)[3]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):  # both on kopf's health endpoint
        assert container[probe]["httpGet"]["path"] == path, probe
        assert ports[container[probe]["httpGet"]["port"]] == port, probe
    # Pod Security "restricted", which its namespace enforces
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"] and sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] != 0
    assert not any(pod.get(k) for k in ("hostPID", "hostNetwork", "hostIPC", "volumes"))
    # the operator's kopf peering identity: its pod name from the downward API (issue 16)
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_the_image_reference_comes_from_one_place(built: list[dict[str, Any]]) -> None:
    """kustomize's images: entry, the built Deployment and the agents' default are image.py's IMAGE."""
    from stellaops_runtime.contracts.crds import parse_observer_spec
    from stellaops_runtime.controller.render_agent import render_agent_objects
    from stellaops_runtime.image import IMAGE, REPOSITORY, TAG

    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": REPOSITORY, "newTag": TAG}]
    (deploy,) = by_kind(built, "Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    spec = parse_observer_spec({"store": {"secretRef": {"name": "s", "key": "url"}}})
    (ds,) = [
        o
        for o in render_agent_objects(name="x", uid="u", namespace="n", spec=spec)
        if o["kind"] == "DaemonSet"
    ]
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    # no other file of the manifests or examples spells a version of the image
    pattern = re.compile(re.escape(REPOSITORY) + r":[0-9]")
    spelled = [
        str(path.relative_to(ROOT))
        for path in [*MANIFESTS.rglob("*.yaml"), *(ROOT / "docs" / "examples").rglob("*.yaml")]
        if pattern.search(path.read_text())
    ]
    assert spelled == []


def test_operator_rbac_writes_agent_objects_only_in_the_agent_namespace(built: list[dict[str, Any]]) -> None:
    (sa,) = by_kind(built, "ServiceAccount")
    subject = {
        "kind": "ServiceAccount",
        "name": sa["metadata"]["name"],
        "namespace": sa["metadata"]["namespace"],
    }
    role = _named(built, "ClusterRole", "stellaops-operator")
    binding = _named(built, "ClusterRoleBinding", "stellaops-operator")
    assert binding["roleRef"]["name"] == role["metadata"]["name"] and binding["subjects"] == [subject]
    (ns_role,) = by_kind(built, "Role")
    (ns_binding,) = by_kind(built, "RoleBinding")
    assert (
        ns_role["metadata"]["namespace"]
        == ns_binding["metadata"]["namespace"]
        == crds.DEFAULT_AGENT_NAMESPACE
    )
    assert ns_binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": ns_role["metadata"]["name"],
    }
    assert ns_binding["subjects"] == [subject]

    def held(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        return {
            (g, r, v)
            for rule in rules
            for g in rule["apiGroups"]
            for r in rule["resources"]
            for v in rule["verbs"]
        }

    cluster, namespaced = held(role["rules"]), held(ns_role["rules"])
    write = ("create", "update", "patch", "delete", "deletecollection")
    agent_kinds = [("apps", "daemonsets"), *[("", r) for r in ("configmaps", "serviceaccounts", "services")]]
    for group, res in agent_kinds:
        assert not {(group, res, v) for v in write} & cluster, res  # no cluster-wide writes
        assert {(group, res, v) for v in ("get", "create", "patch", "delete")} <= namespaced, res
    # no RBAC writes at all: the agents' ClusterRole and binding come with the manifests
    assert not any(g == "rbac.authorization.k8s.io" for g, _, _ in cluster | namespaced)
    # pods and nodes: patch only (the admission policies limit which keys)
    assert {v for g, r, v in cluster if (g, r) == ("", "pods")} == {"list", "watch", "patch"}
    assert {v for g, r, v in cluster if (g, r) == ("", "nodes")} == {"list", "watch", "patch"}
    # ObservationNodes are the agents' to write
    assert {v for g, r, v in cluster if r.startswith(crds.NODE_PLURAL)} == {"list", "watch"}
    # never more than it needs: no wildcards, no escalation verbs, and of Secrets only a get of
    # the one store Secret, by name, in the agent namespace (a change to it rolls the agents)
    assert not any("*" in (g, r, v) for g, r, v in cluster | namespaced)
    assert not any(r == "secrets" for _, r, _ in cluster)
    assert {(r, v) for _, r, v in namespaced if r == "secrets"} == {("secrets", "get")}
    (secret_rule,) = [rule for rule in ns_role["rules"] if "secrets" in rule["resources"]]
    assert secret_rule["resourceNames"] == ["stellaops-store"]
    assert not any(v in ("escalate", "bind", "impersonate") for _, _, v in cluster | namespaced)


def test_agent_rbac_is_bound_to_the_agent_namespace(built: list[dict[str, Any]]) -> None:
    role = _named(built, "ClusterRole", "stellaops-runtime-agent")
    binding = _named(built, "ClusterRoleBinding", "stellaops-runtime-agent")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Group",
            "name": f"system:serviceaccounts:{crds.DEFAULT_AGENT_NAMESPACE}",
        }
    ]


@pytest.fixture(scope="module")
def admission() -> list[dict[str, Any]]:
    assert KUBECTL is not None
    proc = subprocess.run(
        [KUBECTL, "kustomize", str(MANIFESTS / "admission")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_admission_policies_are_real_v1_objects_each_bound_to_deny(admission: list[dict[str, Any]]) -> None:
    api = client.ApiClient()
    policies = by_kind(admission, "ValidatingAdmissionPolicy")
    bindings = by_kind(admission, "ValidatingAdmissionPolicyBinding")
    assert len(policies) == len(bindings) == 4 and len(admission) == 8
    for doc in admission:
        assert doc["apiVersion"] == "admissionregistration.k8s.io/v1"  # GA: Kubernetes 1.30
        model = api._ApiClient__deserialize(doc, f"V1{doc['kind']}")  # type: ignore[attr-defined]
        assert api.sanitize_for_serialization(model) == doc, doc["metadata"]["name"]
    by_policy = {b["spec"]["policyName"]: b for b in bindings}
    for policy in policies:
        binding = by_policy[policy["metadata"]["name"]]
        assert binding["spec"]["validationActions"] == ["Deny"]
        assert "matchResources" not in binding["spec"]  # everything the policy matches
        assert policy["spec"]["failurePolicy"] == "Fail"


def test_admission_policies_match_the_identities_of_the_manifests(
    built: list[dict[str, Any]], admission: list[dict[str, Any]]
) -> None:
    (sa,) = by_kind(built, "ServiceAccount")
    operator_user = f"system:serviceaccount:{sa['metadata']['namespace']}:{sa['metadata']['name']}"
    policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(admission, "ValidatingAdmissionPolicy")}
    for name, resources, prefix in (
        ("stellaops-operator-pods", ["pods"], "'stellaops.io/'"),
        ("stellaops-operator-nodes", ["nodes"], "'feature.stellaops.io/'"),
    ):
        spec = policies[name]
        (rule,) = spec["matchConstraints"]["resourceRules"]
        assert (rule["resources"], rule["operations"]) == (resources, ["UPDATE"])
        (cond,) = spec["matchConditions"]
        assert cond["expression"] == f"request.userInfo.username == '{operator_user}'"
        labels_rule = spec["validations"][0]["expression"]
        assert f"k.startsWith({prefix})" in labels_rule and "variables.oldLabels" in labels_rule
        assert any("object.spec == oldObject.spec" in v["expression"] for v in spec["validations"])
    tetragon = policies["stellaops-operator-tracingpolicies"]
    assert tetragon["matchConditions"][0]["expression"] == f"request.userInfo.username == '{operator_user}'"
    assert set(tetragon["matchConstraints"]["resourceRules"][0]["resources"]) == {
        "tracingpolicies",
        "tracingpoliciesnamespaced",
    }
    agents = policies["stellaops-agent-observationnodes"]
    assert agents["matchConditions"][0]["expression"] == (
        f"request.userInfo.username.startsWith('system:serviceaccount:{crds.DEFAULT_AGENT_NAMESPACE}:')"
    )
    assert "authentication.kubernetes.io/node-name" in agents["variables"][0]["expression"]
    assert set(agents["matchConstraints"]["resourceRules"][0]["resources"]) == {
        crds.NODE_PLURAL,
        f"{crds.NODE_PLURAL}/status",
    }


def test_peering_object_sits_outside_the_kustomization(built: list[dict[str, Any]]) -> None:
    from stellaops_runtime.controller.settings import DEFAULT_PEERING

    (peering,) = [
        d
        for d in yaml.safe_load_all((MANIFESTS / "peering" / "stellaops-runtime-peering.yaml").read_text())
        if d
    ]
    assert (peering["apiVersion"], peering["kind"]) == ("kopf.dev/v1", "ClusterKopfPeering")
    (deploy,) = by_kind(built, "Deployment")
    command = deploy["spec"]["template"]["spec"]["containers"][0]["command"]
    assert peering["metadata"]["name"] == DEFAULT_PEERING
    assert f"--peering={DEFAULT_PEERING}" in command
    crd = load_crd_named("clusterkopfpeerings.kopf.dev")
    assert crd["spec"]["scope"] == "Cluster" and crd["spec"]["versions"][0]["name"] == "v1"
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def load_crd_named(name: str) -> dict[str, Any]:
    docs = yaml.safe_load_all((MANIFESTS / "peering" / "kopf-peering.yaml").read_text())
    return next(d for d in docs if d and d["metadata"]["name"] == name)


def test_the_hand_applied_agent_configmap_is_still_a_valid_config() -> None:
    """manifests/agent/configmap.yaml is kept (explained in kustomization.yaml) and must stay valid."""
    from stellaops_runtime.contracts.config import parse_config

    config = parse_config(yaml.safe_load((MANIFESTS / "agent" / "configmap.yaml").read_text()))
    assert "agent/configmap.yaml" in (MANIFESTS / "kustomization.yaml").read_text()
    assert config.store.spool_path == "/var/lib/stellaops-runtime/spool/hot-symbols.spool"


def test_example_secret_is_a_real_secret() -> None:
    docs = [
        d for d in yaml.safe_load_all((ROOT / "docs" / "examples" / "runtimeobserver.yaml").read_text()) if d
    ]
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    (observer,) = [d for d in docs if d["kind"] == crds.OBSERVER_KIND]
    api = client.ApiClient()
    assert api.sanitize_for_serialization(api._ApiClient__deserialize(secret, "V1Secret")) == secret  # type: ignore[attr-defined]
    ref = observer["spec"]["store"]["secretRef"]
    assert secret["metadata"]["namespace"] == observer["spec"]["agentNamespace"]
    # base64 data, not stringData: the API server stores only data, so a stringData manifest
    # never matches what is stored and every apply reports it changed (issue 16)
    assert "stringData" not in secret and secret["metadata"]["name"] == ref["name"]
    url = base64.b64decode(secret["data"][ref["key"]], validate=True).decode()
    assert (
        url.startswith("postgresql+psycopg://")
        and url in (ROOT / "docs" / "examples" / "runtimeobserver.yaml").read_text()
    )  # the comment above says what it holds
    # the way the file tells users to write their own gives the same shape
    made = subprocess.run(
        [KUBECTL or "kubectl", "create", "secret", "generic", ref["name"],
         "-n", secret["metadata"]["namespace"],
         f"--from-literal={ref['key']}={url}", "--dry-run=client", "-o", "yaml"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    generated = yaml.safe_load(made.stdout)
    assert generated["data"] == secret["data"] and "stringData" not in generated
