"""Policies rendered into Tetragon objects (validated against Tetragon's own CRDs) and the probe ConfigMap.

Tetragon's CRDs are the ones it ships, copied to tests/fixtures/tetragon/crds
(v1.7.0, the newest release, and main). Every rendered object, every template
in tracingpolicies/ and, as a check of the validator itself, every upstream
sample policy in tests/fixtures/tetragon/policies must validate against both.
Tetragon's CEL rules (main only: hostSelector, override arguments, return
arguments) concern fields the renderer never writes; they are not evaluated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schema import errors, load_crd, validator_for

from stellaops_runtime.contracts.crds import (
    CLUSTER_POLICY_KIND,
    MANAGED_BY,
    OBSERVE_LABEL,
    POLICY_KIND,
    parse_policy_spec,
)
from stellaops_runtime.controller.naming import canonical_json
from stellaops_runtime.controller.policy_selectors import NAMESPACE_PSEUDO_LABEL
from stellaops_runtime.controller.policy_templates import TEMPLATE_NAMES, load_template
from stellaops_runtime.controller.posture import (
    OBSERVE_DEEP_LABEL,
    Posture,
    level_labels,
    selector_matches,
)
from stellaops_runtime.controller.render_policy import (
    PROBE_CONFIG_KEY,
    probe_entry_key,
    render_policy,
    render_probe_configmap,
    stacks_policy_name,
    tetragon_policy_names,
)

ROOT = Path(__file__).resolve().parents[2]
TETRAGON = ROOT / "tests" / "fixtures" / "tetragon"
CRD_FILES = {
    "TracingPolicy": "cilium.io_tracingpolicies.yaml",
    "TracingPolicyNamespaced": "cilium.io_tracingpoliciesnamespaced.yaml",
}
RELEASES = ("v1.7.0", "main")


@pytest.fixture(scope="module")
def validators() -> dict[tuple[str, str], Any]:
    return {
        (release, kind): validator_for(load_crd(TETRAGON / "crds" / release / filename))
        for release in RELEASES
        for kind, filename in CRD_FILES.items()
    }


def assert_valid_tetragon(obj: dict[str, Any], validators: dict[tuple[str, str], Any]) -> None:
    for release in RELEASES:
        assert errors(validators[(release, obj["kind"])], obj) == [], f"invalid for Tetragon {release}"


FULL = {
    "podSelector": {"matchLabels": {"app": "web"}},
    "maxLevel": "EbpfDeep",
    "syscalls": ["openat", "execve", "open"],
    "functions": [
        {"binaryPath": "/usr/lib/x86_64-linux-gnu/libssl.so.3", "symbols": ["SSL_write", "SSL_read"]},
        {"purl": "pkg:deb/debian/openssl@3.0.11?arch=amd64", "symbols": ["SSL_do_handshake"]},
        {"binaryPath": "/usr/bin/python3.11", "symbols": ["PyEval_EvalCode"]},
    ],
    "stackTraces": {"kernel": True, "user": True},
    "rateLimit": "1m",
}


def render(spec: dict[str, Any], *, kind: str = POLICY_KIND, name: str = "web") -> Any:
    cluster = kind == CLUSTER_POLICY_KIND
    return render_policy(
        kind=kind,
        name=name,
        namespace=None if cluster else "shop",
        uid="1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        spec=parse_policy_spec(spec, cluster=cluster),
    )


# ---------------------------------------------------------------- the validator and the templates


@pytest.mark.parametrize("path", sorted((TETRAGON / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_upstream_sample_policies_validate(path: Path, validators: dict) -> None:
    """The validator accepts what Tetragon itself publishes (so its rejections mean something)."""
    assert_valid_tetragon(yaml.safe_load(path.read_text()), validators)


def test_validator_rejects_what_tetragon_rejects(validators: dict) -> None:
    bad = load_template("syscalls.yaml")
    bad["spec"]["kprobes"][0]["selectors"][0]["matchActions"][0]["action"] = "Teleport"
    bad["spec"]["kprobes"][0]["sycall"] = True
    problems = errors(validators[("v1.7.0", "TracingPolicy")], bad)
    assert any("Teleport" in p for p in problems) and any("sycall" in p for p in problems)


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_templates_are_valid_tracing_policies(name: str, validators: dict) -> None:
    assert_valid_tetragon(load_template(name), validators)


def test_tracingpolicies_dir_is_the_packaged_templates() -> None:
    """tracingpolicies/ (repository root) and the package's templates are one copy, not two."""
    repo_dir = ROOT / "tracingpolicies"
    package_dir = ROOT / "operator" / "stellaops_runtime" / "controller" / "templates"
    assert repo_dir.resolve() == package_dir.resolve()
    assert sorted(p.name for p in package_dir.glob("*.yaml")) == sorted(TEMPLATE_NAMES)


# ---------------------------------------------------------------- rendering


@pytest.mark.parametrize("kind", [POLICY_KIND, CLUSTER_POLICY_KIND])
def test_full_policy_renders_valid_owned_objects(kind: str, validators: dict) -> None:
    r = render(FULL, kind=kind)
    syscalls_name, uprobes_name = tetragon_policy_names(name="web")
    stacks_name = stacks_policy_name(name="web")
    assert [o["metadata"]["name"] for o in r.tracing_policies] == [syscalls_name, stacks_name, uprobes_name]
    parts = [o["metadata"]["labels"]["stellaops.io/policy-part"] for o in r.tracing_policies]
    assert parts == ["syscalls", "syscalls-stacks", "uprobes"]
    for obj in r.tracing_policies:
        assert_valid_tetragon(obj, validators)
        meta = obj["metadata"]
        if kind == POLICY_KIND:
            assert obj["kind"] == "TracingPolicyNamespaced" and meta["namespace"] == "shop"
            assert meta["labels"]["stellaops.io/policy-namespace"] == "shop"
        else:
            assert obj["kind"] == "TracingPolicy" and "namespace" not in meta
            assert "stellaops.io/policy-namespace" not in meta["labels"]
        assert meta["labels"][MANAGED_BY[0]] == MANAGED_BY[1]
        assert meta["labels"]["stellaops.io/policy-kind"] == kind
        assert meta["labels"]["stellaops.io/policy-name"] == "web"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "stellaops.io/v1alpha1",
                "kind": kind,
                "name": "web",
                "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        spec = obj["spec"]
        level_label = OBSERVE_LABEL if meta["name"] == syscalls_name else OBSERVE_DEEP_LABEL
        assert spec["podSelector"]["matchLabels"] == {"app": "web", level_label: "true"}
        assert spec["options"] == [{"name": "policy-mode", "value": "monitor"}]
        assert "hostSelector" not in spec


def test_syscalls_become_kprobes_with_rate_limit_and_stacks() -> None:
    plain, stacked = (o["spec"]["kprobes"] for o in render(FULL).tracing_policies[:2])
    for kprobes in (plain, stacked):
        assert [k["call"] for k in kprobes] == ["sys_execve", "sys_open", "sys_openat"]  # sorted
        assert all(k["syscall"] is True for k in kprobes)
        # open exists on x86_64 only: the arm64 nodes skip it instead of failing the whole policy
        assert [k.get("ignore") for k in kprobes] == [None, {"callNotFound": True}, None]
    # stack traces only in the object for EbpfDeep pods
    post = {"action": "Post", "rateLimit": "1m", "kernelStackTrace": True, "userStackTrace": True}
    assert all(k["selectors"] == [{"matchActions": [post]}] for k in stacked)
    assert all(k["selectors"] == [{"matchActions": [{"action": "Post", "rateLimit": "1m"}]}] for k in plain)


def test_uprobes_on_node_paths_only_without_stacks() -> None:
    r = render(FULL)
    uprobes = r.tracing_policies[2]["spec"]["uprobes"]
    assert uprobes == [
        {
            "path": "/procRoot/1/root/usr/bin/python3.11",
            "symbols": ["PyEval_EvalCode"],
            "selectors": [{"matchActions": [{"action": "Post", "rateLimit": "1m"}]}],
        },
        {
            "path": "/procRoot/1/root/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "symbols": ["SSL_read", "SSL_write"],
            "selectors": [{"matchActions": [{"action": "Post", "rateLimit": "1m"}]}],
        },
    ]
    assert any("cilium/tetragon#5695" in n for n in r.notes)
    host_tetragon = render({**FULL, "tetragonHostRoot": ""}).tracing_policies[2]["spec"]["uprobes"]
    assert host_tetragon[0]["path"] == "/usr/bin/python3.11"


def test_purl_functions_are_not_rendered_but_reported_and_passed_through() -> None:
    r = render(FULL)
    text = json.dumps(r.tracing_policies)
    assert "pkg:deb" not in text and "SSL_do_handshake" not in text
    assert r.unresolved_functions == [
        {
            "purl": "pkg:deb/debian/openssl@3.0.11?arch=amd64",
            "symbols": ["SSL_do_handshake"],
            "message": r.unresolved_functions[0]["message"],
        }
    ]
    assert "cilium/tetragon#5105" in r.unresolved_functions[0]["message"]
    assert {
        "purl": "pkg:deb/debian/openssl@3.0.11?arch=amd64",
        "symbols": ["SSL_do_handshake"],
        "resolved": False,
    } in (r.probe_entry["functions"])
    only_purl = render({"functions": [FULL["functions"][1]]})
    assert only_purl.tracing_policies == [] and len(only_purl.unresolved_functions) == 1


def test_probe_entry_carries_what_native_probes_need() -> None:
    entry = render(FULL).probe_entry
    assert entry == {
        "kind": POLICY_KIND,
        "namespace": "shop",
        "name": "web",
        "maxLevel": "EbpfDeep",
        "podSelector": {"matchLabels": {"app": "web", OBSERVE_LABEL: "true"}},
        "namespaceSelector": None,
        "syscalls": [
            {"name": "execve", "x86_64": 59, "arm64": 221},
            {"name": "open", "x86_64": 2, "arm64": None},
            {"name": "openat", "x86_64": 257, "arm64": 56},
        ],
        "functions": [
            {"binaryPath": "/usr/bin/python3.11", "symbols": ["PyEval_EvalCode"]},
            {"binaryPath": "/usr/lib/x86_64-linux-gnu/libssl.so.3", "symbols": ["SSL_read", "SSL_write"]},
            {
                "purl": "pkg:deb/debian/openssl@3.0.11?arch=amd64",
                "symbols": ["SSL_do_handshake"],
                "resolved": False,
            },
        ],
        "stackTraces": {"kernel": True, "user": True},
        "rateLimit": "1m",
        "rateLimitSeconds": 60,
        "tetragonPolicies": ["stellaops-web", "stellaops-web-stacks", "stellaops-web-uprobes"],
    }


@pytest.mark.parametrize(
    ("level", "objects", "functions", "stacks"),
    [
        ("None", [], 0, False),
        ("Passive", [], 0, False),
        ("ActiveTracing", ["stellaops-web"], 0, False),
        ("EbpfDeep", ["stellaops-web", "stellaops-web-stacks", "stellaops-web-uprobes"], 3, True),
        ("FullInstrumentation", ["stellaops-web", "stellaops-web-stacks", "stellaops-web-uprobes"], 3, True),
    ],
)
def test_max_level_caps_what_is_rendered(
    level: str, objects: list[str], functions: int, stacks: bool, validators: dict
) -> None:
    r = render({**FULL, "maxLevel": level})
    assert [o["metadata"]["name"] for o in r.tracing_policies] == objects
    for obj in r.tracing_policies:
        assert_valid_tetragon(obj, validators)
    assert len(r.probe_entry["functions"]) == functions
    assert r.probe_entry["stackTraces"] == {"kernel": stacks, "user": stacks}
    assert len(r.unresolved_functions) == (1 if functions else 0)
    if objects:
        post = r.tracing_policies[0]["spec"]["kprobes"][0]["selectors"][0]["matchActions"][0]
        assert "kernelStackTrace" not in post  # the plain syscall object never carries stacks
        kprobes = [o["spec"]["kprobes"] for o in r.tracing_policies if "kprobes" in o["spec"]]
        posts = [k[0]["selectors"][0]["matchActions"][0] for k in kprobes]
        assert len([post for post in posts if "kernelStackTrace" in post]) == (1 if stacks else 0)
    if level in ("None", "Passive"):
        assert r.probe_entry["syscalls"] == [] and any("need ActiveTracing" in n for n in r.notes)
    if level == "ActiveTracing":
        assert any("uprobes need EbpfDeep" in n for n in r.notes)
        assert any("stack traces are off" in n for n in r.notes)


def test_nothing_to_trace_is_said_not_hidden() -> None:
    r = render({"podSelector": {}})
    assert r.tracing_policies == [] and r.unresolved_functions == []
    assert any("nothing for Tetragon to trace" in n for n in r.notes)


def test_no_rate_limit_no_stacks_gives_a_plain_post(validators: dict) -> None:
    r = render({"syscalls": ["connect"]})
    (obj,) = r.tracing_policies
    assert obj["spec"]["kprobes"] == [
        {"call": "sys_connect", "syscall": True, "selectors": [{"matchActions": [{"action": "Post"}]}]}
    ]
    assert obj["spec"]["podSelector"] == {"matchLabels": {OBSERVE_LABEL: "true"}}
    assert r.probe_entry["rateLimit"] is None and r.probe_entry["rateLimitSeconds"] is None
    assert_valid_tetragon(obj, validators)


def test_namespace_selector_by_name_becomes_tetragons_namespace_pseudo_label(validators: dict) -> None:
    spec = {
        "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]},
        "namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": "shop", "team": "payments"},
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
            ],
        },
        "syscalls": ["execve"],
    }
    r = render(spec, kind=CLUSTER_POLICY_KIND)
    (obj,) = r.tracing_policies
    assert obj["spec"]["podSelector"] == {
        "matchLabels": {OBSERVE_LABEL: "true"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front"]},
            {"key": NAMESPACE_PSEUDO_LABEL, "operator": "In", "values": ["shop"]},
            {"key": NAMESPACE_PSEUDO_LABEL, "operator": "NotIn", "values": ["kube-system"]},
        ],
    }
    assert_valid_tetragon(obj, validators)
    assert any("team" in n and "cannot be expressed" in n for n in r.notes)
    assert r.probe_entry["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "shop", "team": "payments"},
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
        ],
    }


def test_rendering_is_deterministic_and_order_independent() -> None:
    a = render(FULL)
    b = render(FULL)
    shuffled = {
        **FULL,
        "syscalls": list(reversed(FULL["syscalls"])),
        "functions": [{**f, "symbols": list(reversed(f["symbols"]))} for f in reversed(FULL["functions"])],
    }
    c = render(shuffled)
    for other in (b, c):
        assert canonical_json(other.tracing_policies) == canonical_json(a.tracing_policies)
        assert canonical_json(other.probe_entry) == canonical_json(a.probe_entry)
        assert other.unresolved_functions == a.unresolved_functions


def test_long_names_stay_valid(validators: dict) -> None:
    name = "a" * 250
    r = render(
        {"syscalls": ["execve"], "functions": [{"binaryPath": "/bin/sh", "symbols": ["main"]}]}, name=name
    )
    names = [o["metadata"]["name"] for o in r.tracing_policies]
    assert all(len(n) <= 253 for n in names) and len(set(names)) == 2
    for obj in r.tracing_policies:
        assert len(obj["metadata"]["labels"]["stellaops.io/policy-name"]) <= 63
        assert_valid_tetragon(obj, validators)


def test_render_policy_refuses_bad_calls() -> None:
    spec = parse_policy_spec({}, cluster=False)
    with pytest.raises(ValueError, match="not a policy kind"):
        render_policy(kind="Pod", name="x", namespace="n", uid="u", spec=spec)
    with pytest.raises(ValueError, match="namespace is required"):
        render_policy(kind=POLICY_KIND, name="x", namespace=None, uid="u", spec=spec)
    with pytest.raises(ValueError, match="needs the owner's uid"):
        render_policy(
            kind=POLICY_KIND, name="x", namespace="n", uid="", spec=parse_policy_spec(FULL, cluster=False)
        )


# ---------------------------------------------------------------- the probe ConfigMap


def test_probe_configmap_is_byte_identical_for_the_same_entries() -> None:
    web = render(FULL)
    apps = render({"syscalls": ["connect"]}, kind=CLUSTER_POLICY_KIND, name="apps")
    key_web = probe_entry_key(kind=POLICY_KIND, namespace="shop", name="web")
    key_apps = probe_entry_key(kind=CLUSTER_POLICY_KIND, namespace=None, name="apps")
    assert (key_web, key_apps) == ("ObservationPolicy/shop/web", "ClusterObservationPolicy//apps")
    owner = {
        "apiVersion": "stellaops.io/v1alpha1",
        "kind": "RuntimeObserver",
        "metadata": {"name": "default", "uid": "u-1"},
    }
    one = render_probe_configmap(
        name="stellaops-probes-default",
        namespace="stellaops-system",
        entries={key_web: web.probe_entry, key_apps: apps.probe_entry},
        owner=owner,
    )
    two = render_probe_configmap(
        name="stellaops-probes-default",
        namespace="stellaops-system",
        entries={key_apps: apps.probe_entry, key_web: web.probe_entry},
        owner=owner,
    )
    assert canonical_json(one) == canonical_json(two)
    assert one["data"][PROBE_CONFIG_KEY] == two["data"][PROBE_CONFIG_KEY]
    payload = json.loads(one["data"][PROBE_CONFIG_KEY])
    assert payload["kind"] == "ProbeConfig" and list(payload["policies"]) == [key_apps, key_web]
    assert payload["policies"][key_web] == web.probe_entry
    assert one["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert one["metadata"]["labels"][MANAGED_BY[0]] == MANAGED_BY[1]
    unowned = render_probe_configmap(name="p", namespace="n", entries={}, owner=None)
    assert "ownerReferences" not in unowned["metadata"]
    assert json.loads(unowned["data"][PROBE_CONFIG_KEY])["policies"] == {}


# ---------------------------------------------------------------- level-aware selection


def _hooked(rendered: Any, posture: Posture, labels: dict[str, str]) -> dict[str, list[str]]:
    """Which objects select a pod with ``labels`` at ``posture`` (as Tetragon evaluates podSelector)."""
    pod = {**labels, **level_labels(posture)}
    out: dict[str, list[str]] = {}
    for obj in rendered.tracing_policies:
        if selector_matches(obj["spec"]["podSelector"], pod):
            probes = obj["spec"].get("kprobes") or obj["spec"].get("uprobes") or []
            out[obj["metadata"]["name"]] = [p.get("call") or p["path"] for p in probes]
    return out


@pytest.mark.parametrize("kind", [POLICY_KIND, CLUSTER_POLICY_KIND])
def test_each_part_selects_only_pods_at_the_level_its_probes_need(kind: str, validators: dict) -> None:
    """A pod lowered to ActiveTracing gets the syscall kprobes, not the uprobes nor the stack traces.

    Each pod is hooked by exactly one syscall object: a syscall is never counted twice.
    """
    r = render(FULL, kind=kind)
    for obj in r.tracing_policies:
        assert_valid_tetragon(obj, validators)
    web = {"app": "web"}
    assert _hooked(r, Posture.NONE, web) == {}
    assert _hooked(r, Posture.PASSIVE, web) == {}
    active = _hooked(r, Posture.ACTIVE_TRACING, web)
    assert list(active) == ["stellaops-web"]
    for level in (Posture.EBPF_DEEP, Posture.FULL_INSTRUMENTATION):
        assert list(_hooked(r, level, web)) == ["stellaops-web-stacks", "stellaops-web-uprobes"]
    assert _hooked(r, Posture.FULL_INSTRUMENTATION, {"app": "db"}) == {}  # the user's selector still applies
    # without stack traces the syscall object serves every level from ActiveTracing up
    plain = render({**FULL, "stackTraces": {"kernel": False, "user": False}}, kind=kind)
    assert [o["metadata"]["name"] for o in plain.tracing_policies] == [
        "stellaops-web",
        "stellaops-web-uprobes",
    ]
    assert list(_hooked(plain, Posture.ACTIVE_TRACING, web)) == ["stellaops-web"]
    assert list(_hooked(plain, Posture.EBPF_DEEP, web)) == ["stellaops-web", "stellaops-web-uprobes"]
