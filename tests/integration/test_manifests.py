"""manifests/ builds with the real kubectl (kustomize) into what `kubectl apply -k` must install.

kubectl comes from Debian's kubernetes-client package (installed by the test
setup). Built-in objects are read into the official Kubernetes client models
and written back, so a misspelt field fails here rather than being pruned
silently by the API server.
"""

from __future__ import annotations

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
            "Namespace": 1,
            "ServiceAccount": 1,
            "ClusterRole": 1,
            "ClusterRoleBinding": 1,
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


def test_operator_deployment(built: list[dict[str, Any]]) -> None:
    (deploy,) = by_kind(built, "Deployment")
    (sa,) = by_kind(built, "ServiceAccount")
    (ns,) = by_kind(built, "Namespace")
    assert deploy["metadata"]["namespace"] == sa["metadata"]["namespace"] == ns["metadata"]["name"]
    assert ns["metadata"]["name"] == crds.DEFAULT_AGENT_NAMESPACE
    assert deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    (container,) = pod["containers"]
    assert container["command"][:3] == ["stella-runtime", "operator", "--all-namespaces"]
    liveness = next(a for a in container["command"] if a.startswith("--liveness="))
    port = int(liveness.split(":")[-1].split("/")[0])
    path = "/" + liveness.split("/", 3)[3]
    assert container["livenessProbe"]["httpGet"]["path"] == path
    assert {p["name"]: p["containerPort"] for p in container["ports"]}[
        container["livenessProbe"]["httpGet"]["port"]
    ] == port
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_operator_rbac_covers_what_it_manages(built: list[dict[str, Any]]) -> None:
    (role,) = by_kind(built, "ClusterRole")
    (binding,) = by_kind(built, "ClusterRoleBinding")
    (sa,) = by_kind(built, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}
    ]
    held = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    write = ("create", "update", "patch", "delete")
    needed = [
        *[
            (crds.GROUP, p, v)
            for p in (crds.OBSERVER_PLURAL, crds.POLICY_PLURAL, crds.CLUSTER_POLICY_PLURAL)
            for v in ("get", "list", "watch", "patch")
        ],
        *[
            (crds.GROUP, f"{p}/status", "patch")
            for p in (crds.OBSERVER_PLURAL, crds.POLICY_PLURAL, crds.CLUSTER_POLICY_PLURAL)
        ],
        *[(crds.GROUP, crds.NODE_PLURAL, v) for v in ("get", "list", "watch")],
        *[
            ("cilium.io", p, v)
            for p in ("tracingpolicies", "tracingpoliciesnamespaced")
            for v in ("get", "list", "watch", *write)
        ],
        *[("apps", "daemonsets", v) for v in ("get", "list", "watch", *write)],
        *[
            ("", r, v)
            for r in ("configmaps", "serviceaccounts", "services")
            for v in ("get", "list", "watch", *write)
        ],
        *[
            ("rbac.authorization.k8s.io", r, v)
            for r in ("clusterroles", "clusterrolebindings")
            for v in ("get", *write)
        ],
        *[("", "pods", v) for v in ("get", "list", "watch", "patch")],
        *[("", "nodes", v) for v in ("get", "list", "watch", "patch")],
        *[("", "namespaces", v) for v in ("list", "watch")],
        ("", "events", "create"),
        *[("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")],
        *[("kopf.dev", "clusterkopfpeerings", v) for v in ("get", "list", "watch", "patch", "create")],
    ]
    assert [n for n in needed if n not in held] == []
    # never more than it needs: no wildcards, no secrets, no escalation verbs
    assert not any("*" in (g, r, v) for g, r, v in held)
    assert not any(r == "secrets" for _, r, _ in held)
    assert not any(v in ("escalate", "bind", "impersonate") for _, _, v in held)


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

    parse_config(yaml.safe_load((MANIFESTS / "agent" / "configmap.yaml").read_text()))
    assert "agent/configmap.yaml" in (MANIFESTS / "kustomization.yaml").read_text()


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
    assert (secret["metadata"]["name"], ref["key"] in secret["stringData"]) == (ref["name"], True)
