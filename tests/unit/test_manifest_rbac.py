"""Every RBAC rule in manifests/ says why it exists and grants nothing the audit of issue 11 forbids.

The lint reads the YAML files themselves (not kustomize's output, which drops
comments): each rule of a Role or ClusterRole must have a comment on the
line(s) right above it. Then, per rule:

- no ``*`` in apiGroups, resources or verbs;
- Secrets only as ``get`` of named Secrets in a namespaced Role (the store
  Secret, whose resourceVersion rolls the agents): never listed, watched or
  written, never cluster-wide, never all of a namespace's Secrets;
- no ``escalate``, ``bind`` or ``impersonate``;
- no writes to RBAC objects (roles, bindings) at all;
- cluster-wide (a ClusterRole) no writes to DaemonSets, ConfigMaps,
  ServiceAccounts or Services: those belong in a Role of the agent namespace;
- pods and nodes: ``patch`` only, and only where manifests/admission/ ships
  the ValidatingAdmissionPolicy that limits which keys the operator changes;
- ``resourceNames`` never next to ``create``, ``list``, ``watch`` or
  ``deletecollection``, which it cannot limit (a rule that looks narrower
  than it is).

The lint is tested on crafted manifests too, so a check that stopped
finding anything would fail here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
ROLE_KINDS = {"Role", "ClusterRole"}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
AGENT_OBJECTS = {("apps", "daemonsets"), ("", "configmaps"), ("", "serviceaccounts"), ("", "services")}
RBAC_OBJECTS = {"roles", "rolebindings", "clusterroles", "clusterrolebindings"}
# Writes an admission policy in manifests/admission/ must limit: resource -> policy name.
GUARDED_PATCHES = {("", "pods"): "stellaops-operator-pods", ("", "nodes"): "stellaops-operator-nodes"}
NOT_LIMITED_BY_NAME = {"create", "list", "watch", "deletecollection"}


@dataclass(frozen=True)
class Rule:
    file: str
    line: int  # 1-based
    kind: str
    name: str
    rule: dict[str, Any]
    commented: bool

    def __str__(self) -> str:
        return f"{self.file}:{self.line} ({self.kind} {self.name})"


def _commented(lines: list[str], index: int) -> bool:
    """Whether the nearest non-blank line above line ``index`` (0-based) is a comment."""
    for prev in range(index - 1, -1, -1):
        text = lines[prev].strip()
        if text:
            return text.startswith("#")
    return False


def rules_of(text: str, file: str) -> list[Rule]:
    lines = text.splitlines()
    out: list[Rule] = []
    for node in yaml.compose_all(text):
        if not isinstance(node, yaml.MappingNode):
            continue
        doc = yaml.safe_load(yaml.serialize(node))
        if doc.get("kind") not in ROLE_KINDS:
            continue
        rules_node = next((v for k, v in node.value if k.value == "rules"), None)
        if not isinstance(rules_node, yaml.SequenceNode):
            continue
        for item, rule in zip(rules_node.value, doc.get("rules") or [], strict=True):
            line = item.start_mark.line
            out.append(
                Rule(
                    file=file,
                    line=line + 1,
                    kind=doc["kind"],
                    name=(doc.get("metadata") or {}).get("name", ""),
                    rule=rule,
                    commented=_commented(lines, line),
                )
            )
    return out


def admission_policies() -> set[str]:
    names = set()
    for path in (MANIFESTS / "admission").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ValidatingAdmissionPolicy":
                names.add(doc["metadata"]["name"])
    return names


def problems(rule: Rule, policies: set[str]) -> list[str]:
    r = rule.rule
    groups, resources, verbs = r.get("apiGroups") or [], r.get("resources") or [], set(r.get("verbs") or [])
    names = r.get("resourceNames") or []
    out = []
    if not rule.commented:
        out.append("no comment above the rule says why it exists")
    if "*" in groups or "*" in verbs or any("*" in res for res in resources):
        out.append("a wildcard")
    if "secrets" in resources:
        if rule.kind != "Role":
            out.append("Secrets cluster-wide")
        if verbs != {"get"}:
            out.append(f"Secrets: {sorted(verbs - {'get'})} (get only)")
        if not names:
            out.append("Secrets without resourceNames (every Secret of the namespace)")
    if verbs & {"escalate", "bind", "impersonate"}:
        out.append(f"escalation verbs {sorted(verbs & {'escalate', 'bind', 'impersonate'})}")
    if names and verbs & NOT_LIMITED_BY_NAME:
        out.append(f"resourceNames cannot limit {sorted(verbs & NOT_LIMITED_BY_NAME)}")
    writes = verbs & WRITE_VERBS
    for group in groups:
        for res in resources:
            base = res.split("/")[0]
            if writes and group == "rbac.authorization.k8s.io" and base in RBAC_OBJECTS and not names:
                out.append(f"writes {res} without resourceNames")
            if rule.kind != "ClusterRole" or not writes or names:
                continue
            if (group, base) in AGENT_OBJECTS:
                out.append(
                    f"cluster-wide writes {sorted(writes)} to {res}: use a Role in the agent namespace"
                )
            guard = GUARDED_PATCHES.get((group, res))
            if guard is not None:
                if writes - {"patch"}:
                    out.append(f"cluster-wide {sorted(writes - {'patch'})} on {res}: patch only")
                if "patch" in writes and guard not in policies:
                    out.append(f"patch of {res} without the admission policy {guard}")
    return out


def lint(text: str, file: str = "test.yaml", policies: set[str] | None = None) -> list[str]:
    pols = admission_policies() if policies is None else policies
    return [f"{rule}: {p}" for rule in rules_of(text, file) for p in problems(rule, pols)]


def manifest_files() -> list[Path]:
    return sorted(MANIFESTS.rglob("*.yaml"))


def test_the_manifests_hold_roles_to_lint() -> None:
    found = [r for p in manifest_files() for r in rules_of(p.read_text(), str(p.relative_to(ROOT)))]
    assert {(r.kind, r.name) for r in found} >= {
        ("ClusterRole", "stellaops-operator"),
        ("Role", "stellaops-operator"),
        ("ClusterRole", "stellaops-runtime-agent"),
    }
    assert len(found) >= 15


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_every_rule_is_commented_and_within_the_audit(path: Path) -> None:
    assert lint(path.read_text(), str(path.relative_to(ROOT))) == []


ROLE = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: {kind}
metadata:
  name: test
rules:
{rules}
"""


def _role(rules: str, kind: str = "ClusterRole") -> str:
    return ROLE.format(kind=kind, rules=rules)


@pytest.mark.parametrize(
    ("rules", "kind", "expected"),
    [
        (
            "  - apiGroups: ['']\n    resources: [pods]\n    verbs: [list]\n",
            "ClusterRole",
            "no comment above the rule",
        ),
        (
            "  # why\n  - apiGroups: ['*']\n    resources: [pods]\n    verbs: [list]\n",
            "ClusterRole",
            "a wildcard",
        ),
        (
            "  # why\n  - apiGroups: ['']\n    resources: ['*']\n    verbs: [get]\n",
            "ClusterRole",
            "a wildcard",
        ),
        (
            "  # why\n  - apiGroups: ['']\n    resources: [pods]\n    verbs: ['*']\n",
            "ClusterRole",
            "a wildcard",
        ),
        (
            "  # why\n  - apiGroups: ['']\n    resources: [secrets]\n    verbs: [get]\n",
            "Role",
            "Secrets without resourceNames",
        ),
        (
            "  # why\n  - apiGroups: ['']\n    resources: [secrets]\n    resourceNames: [a]\n"
            "    verbs: [get]\n",
            "ClusterRole",
            "Secrets cluster-wide",
        ),
        (
            "  # why\n  - apiGroups: ['']\n    resources: [secrets]\n    resourceNames: [a]\n"
            "    verbs: [get, patch]\n",
            "Role",
            "Secrets: ['patch'] (get only)",
        ),
        (
            "  # why\n  - apiGroups: ['']\n    resources: [secrets]\n    resourceNames: [a]\n"
            "    verbs: [get, watch]\n",
            "Role",
            "Secrets: ['watch'] (get only)",
        ),
        (
            "  # why\n  - apiGroups: [apps]\n    resources: [daemonsets]\n    verbs: [create]\n",
            "ClusterRole",
            "cluster-wide writes ['create'] to daemonsets",
        ),
        (
            "  # why\n  - apiGroups: ['']\n    resources: [configmaps, services]\n    verbs: [patch]\n",
            "ClusterRole",
            "cluster-wide writes ['patch'] to configmaps",
        ),
        (
            "  # why\n  - apiGroups: ['']\n    resources: [serviceaccounts]\n    verbs: [delete]\n",
            "ClusterRole",
            "cluster-wide writes ['delete'] to serviceaccounts",
        ),
        (
            "  # why\n  - apiGroups: ['']\n    resources: [pods]\n    verbs: [update, patch]\n",
            "ClusterRole",
            "cluster-wide ['update'] on pods: patch only",
        ),
        (
            "  # why\n  - apiGroups: [rbac.authorization.k8s.io]\n    resources: [clusterroles]\n"
            "    verbs: [update]\n",
            "ClusterRole",
            "writes clusterroles without resourceNames",
        ),
        (
            "  # why\n  - apiGroups: [rbac.authorization.k8s.io]\n    resources: [rolebindings]\n"
            "    verbs: [create]\n",
            "Role",
            "writes rolebindings without resourceNames",
        ),
        (
            "  # why\n  - apiGroups: [rbac.authorization.k8s.io]\n    resources: [clusterroles]\n"
            "    verbs: [bind]\n",
            "ClusterRole",
            "escalation verbs ['bind']",
        ),
        (
            "  # why\n  - apiGroups: [x.io]\n    resources: [things]\n    resourceNames: [a]\n"
            "    verbs: [create, get]\n",
            "ClusterRole",
            "resourceNames cannot limit ['create']",
        ),
    ],
)
def test_the_lint_finds_what_it_forbids(rules: str, kind: str, expected: str) -> None:
    found = lint(_role(rules, kind))
    assert any(expected in p for p in found), found


def test_pod_and_node_patches_need_their_admission_policies() -> None:
    rules = (
        "  # why\n  - apiGroups: ['']\n    resources: [pods]\n    verbs: [patch]\n"
        "  # why\n  - apiGroups: ['']\n    resources: [nodes]\n    verbs: [patch]\n"
    )
    assert lint(_role(rules)) == []  # the policies ship in manifests/admission/
    found = lint(_role(rules), policies=set())
    assert [p.split(": ", 1)[1] for p in found] == [
        "patch of pods without the admission policy stellaops-operator-pods",
        "patch of nodes without the admission policy stellaops-operator-nodes",
    ]


def test_the_same_writes_are_fine_in_a_namespaced_role_or_by_name() -> None:
    namespaced = (
        "  # the agent fleet\n  - apiGroups: [apps]\n    resources: [daemonsets]\n    verbs: [create]\n"
    )
    assert lint(_role(namespaced, "Role")) == []
    by_name = (
        "  # one object of ours\n  - apiGroups: ['']\n    resources: [configmaps]\n"
        "    resourceNames: [ours]\n    verbs: [get, patch]\n"
    )
    assert lint(_role(by_name)) == []
    one_secret = (
        "  # the store Secret\n  - apiGroups: ['']\n    resources: [secrets]\n"
        "    resourceNames: [stellaops-store]\n    verbs: [get]\n"
    )
    assert lint(_role(one_secret, "Role")) == []
    # a comment two lines up, above another comment line, still counts; a blank line in between too
    spaced = "  # why\n  # and more\n\n  - apiGroups: ['']\n    resources: [pods]\n    verbs: [list]\n"
    assert lint(_role(spaced)) == []


def test_the_operator_may_read_exactly_the_example_store_secret() -> None:
    """The one Secret rule names the Secret docs/examples/runtimeobserver.yaml references, in its ns."""
    docs = [d for d in yaml.safe_load_all((MANIFESTS / "operator" / "rbac.yaml").read_text()) if d]
    secret_rules = [
        (d["kind"], d["metadata"].get("namespace"), rule)
        for d in docs
        if d["kind"] in ROLE_KINDS
        for rule in d.get("rules") or []
        if "secrets" in rule.get("resources", [])
    ]
    example = [
        d for d in yaml.safe_load_all((ROOT / "docs" / "examples" / "runtimeobserver.yaml").read_text()) if d
    ]
    (observer,) = [d for d in example if d["kind"] == "RuntimeObserver"]
    ref = observer["spec"]["store"]["secretRef"]
    assert secret_rules == [
        (
            "Role",
            observer["spec"]["agentNamespace"],
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [ref["name"]], "verbs": ["get"]},
        )
    ]
