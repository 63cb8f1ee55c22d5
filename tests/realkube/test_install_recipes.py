"""Recipes of docs/install.md and docs/gitops.md, run with the real kubectl on a real v1.20.2 API server.

The command lines are read from the docs themselves and run as they are
(`kubectl patch ...`), against this module's own control plane: the test
tightens a CRD's schema, which must not leak into other tests.

- A valid policy whose finalizer nobody removes is released by the first
  recipe (a JSON patch removing ``/metadata/finalizers``).
- A policy that no longer fits a tightened schema: v1.20 has no validation
  ratcheting, so every write is validated whole. The first recipe and the
  merge patch ``finalizers: null`` are refused with 422; the second recipe
  (which also replaces the spec with ``{}``) releases it.
- gitops.md's `kubectl patch configmap argocd-cm --type merge --patch-file`
  adds our health checks to an existing argocd-cm and keeps its other keys.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stellaops_runtime.contracts.crds import API_VERSION, CLUSTER_POLICY_KIND, POLICY_KIND
from tests.realkube.controlplane import REPO, ApiError, Client, ControlPlane, SetupError, wait_for

pytestmark = pytest.mark.realkube

INSTALL = REPO / "docs" / "install.md"
GITOPS = REPO / "docs" / "gitops.md"
CRDS = {
    POLICY_KIND: REPO / "manifests" / "crds" / "observationpolicies.yaml",
    CLUSTER_POLICY_KIND: REPO / "manifests" / "crds" / "clusterobservationpolicies.yaml",
}
KIND_OF = {"observationpolicy": POLICY_KIND, "clusterobservationpolicy": CLUSTER_POLICY_KIND}
RECIPE = re.compile(
    r"^(kubectl patch (observationpolicy|clusterobservationpolicy) (\S+)(?: -n (\S+))? --type=json \\\n"
    r"\s+-p '(\[.*\])')$",
    re.M,
)
FINALIZER = "stellaops.io/finalizer"
SPEC = {"maxLevel": "ActiveTracing", "syscalls": ["execve", "openat", "connect"]}


class Recipe:
    def __init__(self, command: str, kind: str, name: str, namespace: str | None, patch: str) -> None:
        self.argv = shlex.split(command.replace("\\\n", " "))
        self.kind = KIND_OF[kind]
        self.name = name
        self.namespace = namespace or None
        self.patch = json.loads(patch)


def recipes() -> list[Recipe]:
    return [Recipe(*m) for m in RECIPE.findall(INSTALL.read_text())]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    if shutil.which("kubectl") is None:
        pytest.fail(
            "kubectl is not installed: scripts/setup.sh installs Debian's kubernetes-client", pytrace=False
        )
    tmp = tmp_path_factory.mktemp("recipes")
    try:
        cp = ControlPlane(tmp)
    except SetupError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        cp.start()
        cp.install_crds(list(CRDS.values()))
        cp.write_kubeconfig(tmp / "kubeconfig", token=None)
        yield cp
    finally:
        cp.stop()


def kubectl(plane: ControlPlane, argv: list[str]) -> subprocess.CompletedProcess[str]:
    assert argv[0] == "kubectl"
    env = {**os.environ, "KUBECONFIG": str(plane.tmp / "kubeconfig")}
    return subprocess.run(
        [shutil.which("kubectl") or "kubectl", *argv[1:]], capture_output=True, text=True, timeout=60, env=env
    )


def stuck(client: Client, kind: str, name: str, namespace: str | None) -> None:
    """Create the policy with our finalizer and delete it: it stays Terminating."""
    meta: dict[str, Any] = {"name": name, "finalizers": [FINALIZER]}
    if namespace:
        meta["namespace"] = namespace
    client.create({"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": SPEC})
    client.request("DELETE", client.path(API_VERSION, kind, name, namespace))
    body = client.get(API_VERSION, kind, name, namespace)
    assert body is not None and body["metadata"].get("deletionTimestamp"), "held by the finalizer"


def gone(client: Client, kind: str, name: str, namespace: str | None) -> None:
    wait_for(lambda: client.get(API_VERSION, kind, name, namespace) is None, what=f"{kind} {name} released")


def test_install_md_has_both_recipes_for_both_kinds() -> None:
    found = recipes()
    assert [(r.kind, len(r.patch)) for r in found] == [
        (POLICY_KIND, 1),
        (CLUSTER_POLICY_KIND, 1),
        (POLICY_KIND, 2),
        (CLUSTER_POLICY_KIND, 2),
    ]
    for r in found:
        assert r.patch[0] == {"op": "remove", "path": "/metadata/finalizers"}
    for r in found[2:]:
        assert r.patch[1] == {"op": "replace", "path": "/spec", "value": {}}


def test_recipes_name_example_objects() -> None:
    # the names are those of docs/examples/, so the lines can be pasted after the quick start
    examples = set()
    for path in sorted((REPO / "docs" / "examples").glob("*.yaml")):
        for d in yaml.safe_load_all(Path(path).read_text()):
            if d and d.get("apiVersion") == API_VERSION:
                examples.add((d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")))
    for r in recipes():
        assert (r.kind, r.name, r.namespace) in examples


def test_the_first_recipe_releases_a_valid_policy(plane: ControlPlane) -> None:
    client = plane.admin
    assert client is not None
    for r in recipes()[:2]:
        stuck(client, r.kind, r.name, r.namespace)
        proc = kubectl(plane, r.argv)
        assert proc.returncode == 0, proc.stderr
        gone(client, r.kind, r.name, r.namespace)


def test_a_policy_that_no_longer_fits_the_schema_needs_the_second_recipe(plane: ControlPlane) -> None:
    client = plane.admin
    assert client is not None
    found = recipes()
    for r in found[2:]:
        stuck(client, r.kind, r.name, r.namespace)
    # an upgrade tightens the schema: at most one syscall (the policies have three)
    for kind in (POLICY_KIND, CLUSTER_POLICY_KIND):
        name = CRDS[kind].name.removesuffix(".yaml") + ".stellaops.io"
        crd = client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
        spec_props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
            "properties"
        ]
        spec_props["syscalls"]["maxItems"] = 1
        client.request("PUT", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", crd)

    def refused(kind: str, name: str, namespace: str | None) -> bool:
        try:
            client.request(
                "PATCH",
                client.path(API_VERSION, kind, name, namespace),
                {"metadata": {"labels": {"probe": "x"}}},
                content_type="application/merge-patch+json",
            )
        except ApiError as e:
            return e.status == 422
        return False

    first = {r.kind: r for r in found[:2]}
    for r in found[2:]:
        wait_for(lambda r=r: refused(r.kind, r.name, r.namespace), what=f"tightened {r.kind} schema in force")
        proc = kubectl(plane, first[r.kind].argv)
        assert proc.returncode != 0 and "is invalid" in proc.stderr and "syscalls" in proc.stderr, proc.stderr
        merge = [*first[r.kind].argv[:4], *(["-n", r.namespace] if r.namespace else [])]
        merge += ["--type=merge", "-p", '{"metadata":{"finalizers":null}}']
        proc = kubectl(plane, merge)
        assert proc.returncode != 0 and "is invalid" in proc.stderr, proc.stderr
        assert client.get(API_VERSION, r.kind, r.name, r.namespace) is not None  # still stuck
        proc = kubectl(plane, r.argv)
        assert proc.returncode == 0, proc.stderr
        gone(client, r.kind, r.name, r.namespace)


def test_gitops_md_argocd_cm_patch_keeps_the_other_keys(plane: ControlPlane) -> None:
    client = plane.admin
    assert client is not None
    block = re.search(
        r"^(kubectl -n argocd patch configmap argocd-cm .*?\n.*?argocd-cm-health\.yaml)$",
        GITOPS.read_text(),
        re.M,
    )
    assert block is not None
    argv = shlex.split(block.group(1).replace("\\\n", " "))
    argv = [a if not a.startswith("manifests/") else str(REPO / a) for a in argv]
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}})
    theirs = {"url": "https://argo.example", "resource.customizations.health.example.com_Thing": "return {}"}
    client.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "namespace": "argocd"},
            "data": theirs,
        }
    )
    proc = kubectl(plane, argv)
    assert proc.returncode == 0, proc.stderr
    cm = client.get("v1", "ConfigMap", "argocd-cm", "argocd")
    ours = yaml.safe_load((REPO / "manifests" / "gitops" / "argocd" / "argocd-cm-health.yaml").read_text())[
        "data"
    ]
    assert cm["data"] == theirs | ours


def test_install_md_pod_recipe_removes_the_operators_pod_markings_and_keeps_the_users(
    plane: ControlPlane,
) -> None:
    """docs/install.md (Uninstall): after the operator is gone, its level labels, ``observe-off`` and
    posture annotations stay on the pods; the recipe's two commands, run as written with the real
    kubectl, remove them in every namespace and leave the user's labels and annotations (its
    ``stellaops.io/observe-level`` among them), also on pods that carry none of ours."""
    client = plane.admin
    assert client is not None
    text = INSTALL.read_text()
    lines = [
        text[text.index(start) :].split("\n\n", 1)[0].split("```")[0].strip()
        for start in ("kubectl label pods --all", "kubectl annotate pods --all")
    ]
    ours_labels = {
        "stellaops.io/observe": "true",
        "stellaops.io/observe-deep": "true",
        "stellaops.io/observe-full": "true",
        "stellaops.io/observe-off": "true",
    }
    ours_annotations = {
        "stellaops.io/observe-posture": "EbpfDeep",
        "stellaops.io/observe-posture-reason": "policy shop/web allows EbpfDeep",
    }
    theirs_labels, theirs_annotations = {"app": "web"}, {"stellaops.io/observe-level": "EbpfDeep", "x": "y"}
    pods = [("shop", "web-0", True), ("other", "db-0", True), ("other", "plain", False)]
    for ns in {ns for ns, _, _ in pods}:
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for ns, name, marked in pods:
        meta = {
            "name": name,
            "namespace": ns,
            "labels": theirs_labels | (ours_labels if marked else {}),
            "annotations": theirs_annotations | (ours_annotations if marked else {}),
        }
        # no token to mount: a namespace's default ServiceAccount gets its token a moment after the
        # namespace, and a pod created before that was refused (500 "No API token found")
        spec = {
            "automountServiceAccountToken": False,
            "containers": [{"name": "c", "image": "registry.example/app@sha256:" + "a" * 64}],
        }
        client.create({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
    for line in lines:
        proc = kubectl(plane, shlex.split(line.replace("\\\n", " ")))
        assert proc.returncode == 0, proc.stderr
    for ns, name, _ in pods:
        meta = client.get("v1", "Pod", name, ns)["metadata"]
        assert meta.get("labels") == theirs_labels, (name, meta.get("labels"))
        assert meta.get("annotations") == theirs_annotations, (name, meta.get("annotations"))
