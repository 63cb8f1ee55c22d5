"""What docs/gitops.md and docs/install.md promise, checked against the shipped files and the real tools.

- The fleet layout of gitops.md, built with the real kubectl (kustomize):
  the sync-wave Component puts Namespaces and CRDs in wave -2, our RBAC and
  the operator in wave -1, and leaves the user's objects in wave 0; the
  `images:` override reaches the operator Deployment.
- The Flux expressions printed in gitops.md are those of the shipped file.
- The `ignoreDifferences` jq expressions of gitops.md, run with the real jq
  the way Argo CD runs them (``del(<expression>)``), remove exactly what the
  operator's pod patch writes and keep the user's `observe-level` annotation.
- Rendered objects carry `app.kubernetes.io/instance` (the label-tracking
  caveat) and never a label or annotation of the object they come from.
- install.md: the CEL rules use only `rule`/`message`; its strip one-liner
  leaves CRDs equal to what the v1.20 test setup installs; the Tetragon API
  we use; the default socket; `rateLimit` only when asked; the store URL
  only through the Secret; the image archive path; the no-Tetragon reasons.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stellaops_runtime import image
from stellaops_runtime.contracts.crds import (
    OBSERVE_LEVEL_ANNOTATION,
    POSTURE_ANNOTATION,
    POSTURE_REASON_ANNOTATION,
    SpecError,
    parse_observer_spec,
    parse_policy_spec,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.controller.agent_capabilities import default_capabilities
from stellaops_runtime.controller.patches import pod_posture_patch
from stellaops_runtime.controller.posture import compute_posture, level_labels, node_capabilities, policy_view
from stellaops_runtime.controller.reconcile_policies import _policy_state
from stellaops_runtime.controller.render_agent import TETRAGON_SOCKET_DIR, render_agent_objects
from stellaops_runtime.controller.render_policy import render_policy, render_probe_configmap
from stellaops_runtime.controller.rollout import fold_rollout
from stellaops_runtime.controller.settings import FINALIZER
from tests.realkube.controlplane import for_1_20

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
GITOPS = MANIFESTS / "gitops"
EXAMPLES = ROOT / "docs" / "examples"
GITOPS_MD = ROOT / "docs" / "gitops.md"
INSTALL_MD = ROOT / "docs" / "install.md"
WAVE = "argocd.argoproj.io/sync-wave"
OURS = "app.kubernetes.io/part-of"


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: scripts/setup.sh installs Debian's {package}", pytrace=False)
    return path


def kustomize(directory: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [tool("kubectl", "kubernetes-client"), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def code_blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


def rel(target: Path, start: Path) -> str:
    return os.path.relpath(target, start)


# --- the fleet layout and the sync waves -----------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """gitops.md's layout, with its kustomization.yaml files, built by kubectl kustomize."""
    blocks = [yaml.safe_load(b) for b in code_blocks(GITOPS_MD, "yaml")]
    runtime_k = next(b for b in blocks if b.get("kind") == "Kustomization" and "images" in b)
    top_k = next(b for b in blocks if b.get("kind") == "Kustomization" and "components" in b)
    root = tmp_path_factory.mktemp("fleet") / "clusters" / "prod" / "stellaops"
    (root / "runtime").mkdir(parents=True)
    (root / "observation" / "policies").mkdir(parents=True)
    # the doc's relative paths point at a vendored copy; point them at this repository instead
    runtime_k["resources"] = [rel(MANIFESTS, root / "runtime")]
    top_k["components"] = [rel(GITOPS / "sync-waves", root)]
    (root / "runtime" / "kustomization.yaml").write_text(yaml.safe_dump(runtime_k))
    (root / "kustomization.yaml").write_text(yaml.safe_dump(top_k))
    docs = list(yaml.safe_load_all((EXAMPLES / "runtimeobserver.yaml").read_text()))
    obs = root / "observation"
    (obs / "store-secret.yaml").write_text(yaml.safe_dump(next(d for d in docs if d["kind"] == "Secret")))
    (obs / "runtimeobserver.yaml").write_text(yaml.safe_dump(next(d for d in docs if d["kind"] != "Secret")))
    shutil.copy(EXAMPLES / "observationpolicy.yaml", obs / "policies" / "web.yaml")
    shutil.copy(EXAMPLES / "clusterobservationpolicy.yaml", obs / "policies" / "apps.yaml")
    (obs / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [
                    "store-secret.yaml",
                    "runtimeobserver.yaml",
                    "policies/web.yaml",
                    "policies/apps.yaml",
                ],
            }
        )
    )
    return kustomize(root)


def wave(doc: dict[str, Any]) -> int:
    return int((doc["metadata"].get("annotations") or {}).get(WAVE, "0"))


def test_sync_waves_order_crds_then_operator_then_user_objects(fleet: list[dict[str, Any]]) -> None:
    install = kustomize(MANIFESTS)
    keys = {(d["kind"], d["metadata"]["name"]) for d in install}
    by_key = {(d["kind"], d["metadata"]["name"]): d for d in fleet}
    assert keys <= set(by_key), "the layout includes all of manifests/"
    for key in keys:
        doc = by_key[key]
        if doc["kind"] in ("Namespace", "CustomResourceDefinition"):
            assert wave(doc) == -2, key
        else:
            # everything else manifests/ installs is RBAC or the operator Deployment: wave -1
            assert doc["kind"] in (
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "ClusterRole",
                "ClusterRoleBinding",
                "Deployment",
            ), f"{key}: a kind the sync-wave Component does not place"
            assert wave(doc) == -1, key
            assert doc["metadata"]["labels"][OURS] == "stellaops-runtime"
    user = [d for key, d in by_key.items() if key not in keys]
    assert {d["kind"] for d in user} == {
        "Secret",
        "RuntimeObserver",
        "ObservationPolicy",
        "ClusterObservationPolicy",
    }
    assert all(wave(d) == 0 and WAVE not in (d["metadata"].get("annotations") or {}) for d in user)
    # the peering object is not part of it (the operator creates it)
    assert "ClusterKopfPeering" not in {d["kind"] for d in fleet}


def test_the_images_override_reaches_the_operator_deployment(fleet: list[dict[str, Any]]) -> None:
    (deploy,) = [d for d in fleet if d["kind"] == "Deployment"]
    images = {c["image"] for c in deploy["spec"]["template"]["spec"]["containers"]}
    assert images == {"registry.example.com/stellaops-runtime:0.1.0"}
    assert f"name: {image.REPOSITORY}" in GITOPS_MD.read_text()


def test_sync_wave_component_leaves_other_rbac_alone(tmp_path: Path) -> None:
    foreign = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "someone-else"},
        "rules": [],
    }
    (tmp_path / "role.yaml").write_text(yaml.safe_dump(foreign))
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["role.yaml"],
                "components": [rel(GITOPS / "sync-waves", tmp_path)],
            }
        )
    )
    (doc,) = kustomize(tmp_path)
    assert wave(doc) == 0


# --- Flux ---------------------------------------------------------------------------------------------


def test_flux_expressions_in_the_doc_are_the_shipped_ones() -> None:
    shipped = [d for d in yaml.safe_load_all((GITOPS / "flux" / "stellaops-runtime.yaml").read_text()) if d]
    exprs = shipped[1]["spec"]["healthCheckExprs"]
    assert len({json.dumps({k: v for k, v in e.items() if k != "kind"}) for e in exprs}) == 1, "same for all"
    doc = {}
    for name, cel in re.findall(
        r"^\| `(inProgress|failed|current)` \| `(.*)` \|$", GITOPS_MD.read_text(), re.M
    ):
        doc[name] = cel.replace("\\|", "|")
    assert doc == {k: exprs[0][k] for k in ("inProgress", "failed", "current")}


# --- Argo CD: the ConfigMap and ignoreDifferences -----------------------------------------------------


def test_gitops_md_names_every_health_script_and_kind() -> None:
    text = GITOPS_MD.read_text()
    for path in (GITOPS / "argocd" / "health").glob("*.lua"):
        assert f"`{path.name}`" in text
    cm = yaml.safe_load((GITOPS / "argocd" / "argocd-cm-health.yaml").read_text())
    for key in cm["data"]:
        assert key.startswith("resource.customizations.health.stellaops.io_")
        assert f"`{key.rsplit('_', 1)[1]}`" in text or key.rsplit("_", 1)[1] in text


def jq_del(expressions: list[str], obj: dict[str, Any]) -> dict[str, Any]:
    out = obj
    for expr in expressions:
        proc = subprocess.run(
            [tool("jq", "jq"), "-c", f"del({expr})"], input=json.dumps(out), capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
    return out


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


@pytest.mark.parametrize("level", [None, "None", "ActiveTracing", "EbpfDeep", "FullInstrumentation"])
def test_ignore_differences_remove_exactly_what_the_operator_writes(level: str | None) -> None:
    (block,) = [b for b in code_blocks(GITOPS_MD, "yaml") if "ignoreDifferences" in b]
    (rule,) = yaml.safe_load(block)["spec"]["ignoreDifferences"]
    assert (rule["group"], rule["kind"]) == ("", "Pod")
    expressions = rule["jqPathExpressions"]

    git_pod = yaml.safe_load((EXAMPLES / "pods" / "observe-ebpf-deep.yaml").read_text())
    git_pod["metadata"]["labels"]["team"] = "shop"
    git_pod["metadata"]["annotations"]["example.com/owner"] = "shop"
    if level is None:
        del git_pod["metadata"]["annotations"][OBSERVE_LEVEL_ANNOTATION]
    else:
        git_pod["metadata"]["annotations"][OBSERVE_LEVEL_ANNOTATION] = level
    spec = parse_policy_spec(
        {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "FullInstrumentation"}, cluster=False
    )
    view = policy_view(kind="ObservationPolicy", namespace="default", name="all", spec=spec)
    node = {
        "status": {
            "source": "tetragon",
            "capabilities": {"btf": True, "uprobes": True, "usdt": True, "tetragon": {"reachable": True}},
        }
    }
    decision = compute_posture(
        annotations=git_pod["metadata"]["annotations"],
        pod_labels=git_pod["metadata"]["labels"],
        namespace="default",
        namespace_labels={},
        policies=[view],
        node=node_capabilities(node),
    )
    patch = pod_posture_patch(
        annotations=git_pod["metadata"]["annotations"],
        labels=git_pod["metadata"]["labels"],
        posture=decision.posture.value,
        reason=decision.reason,
        level_labels=decision.labels,
    )
    assert patch is not None
    live = merge_patch(copy.deepcopy(git_pod), patch)
    assert live != git_pod
    written = set(patch["metadata"].get("annotations", {})) | set(patch["metadata"].get("labels", {}))
    assert {POSTURE_ANNOTATION, POSTURE_REASON_ANNOTATION} <= written
    assert all(k.startswith("stellaops.io/observe") for k in written)
    # both sides normalized the way Argo CD does: no difference left, nothing of the user's removed
    assert jq_del(expressions, live) == jq_del(expressions, git_pod) == git_pod


def test_ignore_differences_on_a_pod_without_labels_or_annotations() -> None:
    (block,) = [b for b in code_blocks(GITOPS_MD, "yaml") if "ignoreDifferences" in b]
    expressions = yaml.safe_load(block)["spec"]["ignoreDifferences"][0]["jqPathExpressions"]
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}
    assert jq_del(expressions, bare) == bare


# --- what rendered objects carry ---------------------------------------------------------------------

ARGO_FLUX_MARKS = {
    "labels": {
        "app.kubernetes.io/instance": "my-argo-app",
        "kustomize.toolkit.fluxcd.io/name": "stellaops-observation",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
    },
    "annotations": {
        "argocd.argoproj.io/tracking-id": "my-argo-app:stellaops.io/ObservationPolicy:default/web",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    },
}


def _all_meta(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for o in objs:
        out.append(o["metadata"])
        template = (o.get("spec") or {}).get("template")
        if template:
            out.append(template["metadata"])
    return out


def test_rendered_objects_never_carry_the_marks_of_their_source() -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "runtimeobserver.yaml").read_text()))
    observer = next(d for d in docs if d["kind"] == "RuntimeObserver")
    observer["metadata"].update(copy.deepcopy(ARGO_FLUX_MARKS))
    observer["metadata"]["uid"] = "0b6d3c0e-0000-4000-8000-000000000001"
    spec = parse_observer_spec(observer["spec"])
    agent = render_agent_objects(
        name="default", uid=observer["metadata"]["uid"], namespace="stellaops-agent", spec=spec
    )
    pol = yaml.safe_load((EXAMPLES / "observationpolicy.yaml").read_text())
    rendered = render_policy(
        kind=pol["kind"],
        name="web",
        namespace="default",
        uid="0b6d3c0e-0000-4000-8000-000000000002",
        spec=parse_policy_spec(pol["spec"], cluster=False),
    )
    probes = render_probe_configmap(
        name="stellaops-probes-default", namespace="stellaops-agent", entries={}, owner=observer
    )
    objs = [*agent, *rendered.tracing_policies, probes]
    for meta in _all_meta(objs):
        for key, value in ARGO_FLUX_MARKS["annotations"].items():
            assert (meta.get("annotations") or {}).get(key) != value, meta.get("name", meta)
        for key, value in ARGO_FLUX_MARKS["labels"].items():
            assert (meta.get("labels") or {}).get(key) != value
        assert not any(
            k.startswith(("argocd.argoproj.io/", "kustomize.toolkit.fluxcd.io/"))
            for k in meta.get("labels") or {}
        )
    # the caveat gitops.md states: the agent objects carry app.kubernetes.io/instance = the observer's name
    for obj in agent:
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "default", obj["kind"]


# --- install.md -------------------------------------------------------------------------------------


def test_cel_rules_use_only_what_kubernetes_1_25_knows() -> None:
    found = 0

    def walk(node: Any) -> None:
        nonlocal found
        if isinstance(node, dict):
            for rule in node.get("x-kubernetes-validations") or ():
                found += 1
                assert set(rule) <= {"rule", "message"}, rule
                assert "oldSelf" not in rule["rule"]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for path in sorted((MANIFESTS / "crds").glob("*.yaml")):
        walk(yaml.safe_load(path.read_text()))
    assert found > 0
    text = INSTALL_MD.read_text()
    assert "**1.25 or later**" in text and "**1.20 to 1.24**" in text


def test_install_md_strip_snippet_gives_what_the_v1_20_tests_install() -> None:
    (block,) = [b for b in code_blocks(INSTALL_MD, "sh") if "x-kubernetes-validations" in b]
    script = re.search(r"python3 -c '(.*?)' \| kubectl apply -f -", block, flags=re.S)
    assert script is not None
    built = subprocess.run(
        [tool("kubectl", "kubernetes-client"), "kustomize", str(MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    python = shutil.which("python3") or "python3"
    proc = subprocess.run(
        [python, "-c", script.group(1)], input=built.stdout, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    stripped = [d for d in yaml.safe_load_all(proc.stdout) if d]
    original = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert "x-kubernetes-validations" not in proc.stdout and "x-kubernetes-validations" in built.stdout
    assert stripped == [for_1_20(d) for d in original]


def test_tetragon_api_we_use() -> None:
    proto = (ROOT / "protos" / "tetragon" / "sensors.proto").read_text()
    assert "service FineGuidanceSensors" in proto
    for rpc in (
        "GetEvents(GetEventsRequest) returns (stream GetEventsResponse)",
        "ListTracingPolicies(",
        "GetVersion(",
        "GetHealth(",
    ):
        assert f"rpc {rpc}" in proto
    assert "v1.7.0" in (ROOT / "protos" / "README.md").read_text()
    render_tests = (ROOT / "tests" / "unit" / "test_render_policy.py").read_text()
    assert 'RELEASES = ("v1.7.0", "main")' in render_tests
    for release in ("v1.7.0", "main"):
        names = {p.name for p in (ROOT / "tests" / "fixtures" / "tetragon" / "crds" / release).glob("*.yaml")}
        assert names >= {"cilium.io_tracingpolicies.yaml", "cilium.io_tracingpoliciesnamespaced.yaml"}
    docs = list(yaml.safe_load_all((EXAMPLES / "runtimeobserver.yaml").read_text()))
    observer = next(d for d in docs if d["kind"] == "RuntimeObserver")
    spec = {k: v for k, v in observer["spec"].items() if k != "tetragon"}
    assert parse_observer_spec(spec).tetragon.address == "unix:///var/run/tetragon/tetragon.sock"
    assert "`unix:///var/run/tetragon/tetragon.sock`" in INSTALL_MD.read_text()


def test_rate_limit_is_rendered_only_when_asked() -> None:
    pol = yaml.safe_load((EXAMPLES / "observationpolicy.yaml").read_text())
    for spec, wanted in (
        (pol["spec"], True),
        ({k: v for k, v in pol["spec"].items() if k != "rateLimit"}, False),
    ):
        rendered = render_policy(
            kind="ObservationPolicy",
            name="web",
            namespace="default",
            uid="u",
            spec=parse_policy_spec(spec, cluster=False),
        )
        text = json.dumps(rendered.tracing_policies)
        assert ('"rateLimit"' in text) is wanted


def test_store_url_reaches_agents_only_through_the_secret() -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "runtimeobserver.yaml").read_text()))
    observer = next(d for d in docs if d["kind"] == "RuntimeObserver")
    secret = next(d for d in docs if d["kind"] == "Secret")
    if "data" in secret:
        url = base64.b64decode(next(iter(secret["data"].values()))).decode()
    else:
        url = next(iter(secret["stringData"].values()))
    assert url.startswith("postgresql+psycopg://")
    spec = parse_observer_spec(observer["spec"])
    objs = render_agent_objects(name="default", uid="u", namespace="stellaops-agent", spec=spec)
    (ds,) = [o for o in objs if o["kind"] == "DaemonSet"]
    (container,) = ds["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["STELLA_RUNTIME_STORE"]["valueFrom"]["secretKeyRef"] == {
        "name": observer["spec"]["store"]["secretRef"]["name"],
        "key": observer["spec"]["store"]["secretRef"]["key"],
    }
    for obj in objs:
        assert url not in json.dumps(obj) and "change-me" not in json.dumps(obj)
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap"]
    assert "url" not in (yaml.safe_load(next(iter(cm["data"].values()))).get("store") or {})
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    # DirectoryOrCreate: the agent starts without Tetragon (docs/install.md, "Install without Tetragon")
    assert volumes["tetragon"]["hostPath"] == {"path": TETRAGON_SOCKET_DIR, "type": "DirectoryOrCreate"}


def test_image_section_matches_the_build() -> None:
    text = INSTALL_MD.read_text()
    assert f"`{image.REPOSITORY}`" in text
    build = (ROOT / "scripts" / "image" / "build.sh").read_text()
    assert "archive=$out/stellaops-runtime.oci.tar" in build and "out=.cache/image" in build
    assert "ctr -n k8s.io images import .cache/image/stellaops-runtime.oci.tar" in text


def test_without_tetragon_reasons_are_the_operators() -> None:
    rollout = fold_rollout(
        tetragon_policies=[("default", "stellaops-web")],
        nodes=[],
        now=datetime.datetime.now(datetime.UTC),
        stale_after_seconds=60,
    )
    state, reason, _ = _policy_state(
        names=["stellaops-web"],
        rollout=rollout,
        errors=["TracingPolicyNamespaced stellaops-web: 404 NotFound: x"],
        missing_crd=True,
    )
    text = INSTALL_MD.read_text()
    assert (state, f"`{reason}`") == ("Degraded", "`TetragonNotInstalled`") and f"`{reason}`" in text
    assert "`TetragonUnreachable`" in text
    assert (
        "node has no StellaOps agent"
        in compute_posture(
            annotations={}, pod_labels={}, namespace="default", namespace_labels={}, policies=[], node=None
        ).reason
    )


def test_docs_cite_tests_that_exist() -> None:
    for path, name in (
        ("tests/integration/test_operator_policies.py", "test_drift_is_restored"),
        ("tests/integration/test_operator_observer.py", "test_drift_is_restored"),
        (
            "tests/realkube/test_install_recipes.py",
            "test_a_policy_that_no_longer_fits_the_schema_needs_the_second_recipe",
        ),
    ):
        assert f"def {name}(" in (ROOT / path).read_text()
        assert path in GITOPS_MD.read_text() + INSTALL_MD.read_text()
    # every CRD of ours is in the "stellaops" category (`kubectl get stellaops` in install.md)
    for p in (MANIFESTS / "crds").glob("*.yaml"):
        assert "stellaops" in yaml.safe_load(p.read_text())["spec"]["names"]["categories"]


def test_install_md_kernel_upgrade_and_uninstall_facts() -> None:
    # "granted no BPF capability" with Tetragon as the source
    assert not {"BPF", "PERFMON", "SYS_ADMIN"} & set(default_capabilities("tetragon"))
    # "one version, v1alpha1: no conversion"
    for p in (MANIFESTS / "crds").glob("*.yaml"):
        crd = yaml.safe_load(p.read_text())
        assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha1"], p.name
        assert (crd["spec"].get("conversion") or {}).get("strategy", "None") == "None"
    # "the finalizer stellaops.io/finalizer"
    assert f"`{FINALIZER}`" in INSTALL_MD.read_text() and f"`{FINALIZER}`" in GITOPS_MD.read_text()
    # "None removes every pod-specific probe": no level label for Tetragon's selectors
    assert level_labels(Posture.NONE) == {} and level_labels(Posture.PASSIVE) == {}


def test_the_operator_refuses_what_a_stripped_cel_rule_no_longer_checks() -> None:
    both = {"functions": [{"binaryPath": "/usr/bin/x", "purl": "pkg:deb/debian/x@1", "symbols": ["f"]}]}
    with pytest.raises(SpecError) as e:
        parse_policy_spec(both, cluster=False)
    assert e.value.reason == "InvalidFunction" and "`InvalidFunction`" in INSTALL_MD.read_text()


def test_an_agent_waiting_for_the_tetragon_mount_is_not_reported_stuck() -> None:
    # install.md: without Tetragon the agent pods stay ContainerCreating and the RuntimeObserver Progressing
    from stellaops_runtime.controller.agent_pods import container_problems

    pod = {
        "metadata": {"name": "stellaops-agent-default-x"},
        "spec": {"nodeName": "n1"},
        "status": {
            "containerStatuses": [
                {"name": "agent", "ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}}
            ]
        },
    }
    assert container_problems(pod) == ()
