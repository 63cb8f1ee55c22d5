"""Our CRDs (manifests/crds) and spec models (contracts/crds.py) agree, accept the examples, reject bad input.

The API server is played by jsonschema over each CRD's OpenAPI schema
(tests/crd_schema.py). CEL rules (``x-kubernetes-validations``) are run by
cel-python (tests/unit/test_crd_cel.py runs each on hostile tables against
the operator); each rule also has an entry below: an object that breaks it and
the SpecError reason ``parse_*_spec`` gives for it. A rule in a CRD without an
entry fails the test, so no rule goes unchecked.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schema import cel_holds, cel_rules, errors, load_crd, served_schema, validator_for
from pydantic import BaseModel

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crd_names import RESERVED_POD_LABEL_KEYS
from stellaops_runtime.contracts.crds import (
    PolicySpec,
    RuntimeObserverSpec,
    SpecError,
    parse_observer_spec,
    parse_policy_spec,
)
from stellaops_runtime.contracts.runtime_socket import (
    DATA_ROOT_PATTERN,
    FORBIDDEN_PATTERN,
    KUBELET_PATTERN,
    MAX_SOCKET_PATH_BYTES,
    NESTED_PATTERN,
)
from stellaops_runtime.contracts.syscalls import KNOWN_SYSCALLS
from stellaops_runtime.contracts.tetragon_socket import USUAL_ADDRESS_PATTERN

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "manifests" / "crds"
EXAMPLES = ROOT / "docs" / "examples"

KINDS = {
    crds.OBSERVER_KIND: ("runtimeobservers.yaml", crds.OBSERVER_PLURAL, "Cluster", "ro"),
    crds.POLICY_KIND: ("observationpolicies.yaml", crds.POLICY_PLURAL, "Namespaced", "op"),
    crds.CLUSTER_POLICY_KIND: (
        "clusterobservationpolicies.yaml",
        crds.CLUSTER_POLICY_PLURAL,
        "Cluster",
        "cop",
    ),
    crds.NODE_KIND: ("observationnodes.yaml", crds.NODE_PLURAL, "Cluster", "on"),
}
# shortNames of built-in kinds a kubectl user may type (kubectl api-resources on 1.32)
BUILTIN_SHORT_NAMES = {
    "cs",
    "cm",
    "ep",
    "ev",
    "limits",
    "ns",
    "no",
    "pvc",
    "pv",
    "po",
    "rc",
    "quota",
    "sa",
    "svc",
}
BUILTIN_SHORT_NAMES |= {
    "crd",
    "crds",
    "ds",
    "deploy",
    "rs",
    "sts",
    "hpa",
    "cj",
    "csr",
    "ing",
    "netpol",
    "pdb",
}
BUILTIN_SHORT_NAMES |= {"pc", "sc", "ingclass", "vac"}


def crd(kind: str) -> dict[str, Any]:
    return load_crd(CRD_DIR / KINDS[kind][0])


def example_objects() -> list[dict[str, Any]]:
    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        out.extend(
            d for d in yaml.safe_load_all(path.read_text()) if d and d["apiVersion"] == crds.API_VERSION
        )
    return out


def observer() -> dict[str, Any]:
    return {
        "apiVersion": crds.API_VERSION,
        "kind": crds.OBSERVER_KIND,
        "metadata": {"name": "default"},
        "spec": {
            "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
            "store": {"secretRef": {"name": "store", "key": "url"}},
        },
    }


def policy(kind: str = crds.POLICY_KIND, **spec: Any) -> dict[str, Any]:
    meta = {"name": "web", "namespace": "default"} if kind == crds.POLICY_KIND else {"name": "web"}
    return {"apiVersion": crds.API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


# ---------------------------------------------------------------- the CRD manifests


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_crd_names_scope_and_kubectl_affordances(kind: str) -> None:
    doc = crd(kind)
    _, plural, scope, short = KINDS[kind]
    spec = doc["spec"]
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert doc["metadata"]["name"] == f"{plural}.{crds.GROUP}"
    assert spec["group"] == crds.GROUP and spec["scope"] == scope
    assert spec["names"]["kind"] == kind and spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == [short] and short not in BUILTIN_SHORT_NAMES
    assert spec["names"]["categories"] == ["stellaops"]
    (version,) = spec["versions"]
    assert version["name"] == crds.VERSION and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert "Age" in columns
    if kind != crds.NODE_KIND:
        assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    if kind in (crds.POLICY_KIND, crds.CLUSTER_POLICY_KIND):
        assert {"Level", "Running", "Failed"} <= set(columns)
    # a printer column must point at a field the schema has
    schema = served_schema(doc)
    for col in columns.values():
        node = schema
        parts = col["jsonPath"].split("[")[0].strip(".").split(".")
        if parts[0] == "metadata":  # checked by the API server, not the schema
            continue
        for part in parts:
            node = node["properties"][part]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_crd_schemas_are_valid_json_schema(kind: str) -> None:
    validator_for(crd(kind))  # check_schema raises on a malformed schema


def _schema_props(node: dict[str, Any]) -> dict[str, Any]:
    return node.get("properties", {})


def _compare(model: type[BaseModel], schema: dict[str, Any], path: str) -> None:
    """Every schema property is a model field (by alias) and back; defaults agree; recursing into objects."""
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    props = _schema_props(schema)
    assert set(fields) == set(props), f"{path}: model {sorted(fields)} != schema {sorted(props)}"
    for key, field in fields.items():
        prop = props[key]
        if "default" in prop:
            default = field.get_default(call_default_factory=True)
            assert default == prop["default"], (
                f"{path}.{key}: model default {default!r} != {prop['default']!r}"
            )
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        for t in inner:
            if isinstance(t, type) and issubclass(t, BaseModel):
                sub = prop["items"] if prop.get("type") == "array" else prop
                _compare(t, sub, f"{path}.{key}")
            for tt in getattr(t, "__args__", ()):
                if isinstance(tt, type) and issubclass(tt, BaseModel):
                    _compare(tt, prop["items"], f"{path}.{key}[]")


def test_observer_model_mirrors_the_crd() -> None:
    _compare(RuntimeObserverSpec, served_schema(crd(crds.OBSERVER_KIND))["properties"]["spec"], "spec")


@pytest.mark.parametrize("kind", [crds.POLICY_KIND, crds.CLUSTER_POLICY_KIND])
def test_policy_model_mirrors_the_crd(kind: str) -> None:
    spec_schema = copy.deepcopy(served_schema(crd(kind))["properties"]["spec"])
    if kind == crds.POLICY_KIND:  # there it exists only to be refused with a clear message
        spec_schema["properties"]["namespaceSelector"] = served_schema(crd(crds.CLUSTER_POLICY_KIND))[
            "properties"
        ]["spec"]["properties"]["namespaceSelector"]
    _compare(PolicySpec, spec_schema, "spec")


def test_schema_enums_match_the_contract() -> None:
    for kind in (crds.POLICY_KIND, crds.CLUSTER_POLICY_KIND):
        spec = served_schema(crd(kind))["properties"]["spec"]["properties"]
        assert tuple(spec["maxLevel"]["enum"]) == crds.LEVELS
        assert spec["rateLimit"]["pattern"] == crds.RATE_LIMIT_PATTERN
    observer_schema = served_schema(crd(crds.OBSERVER_KIND))["properties"]
    status = observer_schema["status"]["properties"]
    assert tuple(status["postureCounts"]["properties"]) == crds.LEVELS
    limits = observer_schema["spec"]["properties"]["agent"]["properties"]["resources"]["properties"]["limits"]
    assert limits["additionalProperties"]["pattern"] == crds.QUANTITY_PATTERN


# ---------------------------------------------------------------- examples and valid objects


def test_examples_cover_every_user_kind() -> None:
    kinds = sorted(o["kind"] for o in example_objects())
    assert kinds == sorted([crds.OBSERVER_KIND, crds.POLICY_KIND, crds.CLUSTER_POLICY_KIND])


@pytest.mark.parametrize("obj", example_objects(), ids=lambda o: o["kind"])
def test_examples_validate_against_the_crds_and_parse(obj: dict[str, Any]) -> None:
    assert errors(validator_for(crd(obj["kind"])), obj) == []
    if obj["kind"] == crds.OBSERVER_KIND:
        parse_observer_spec(obj["spec"])
    else:
        parse_policy_spec(obj["spec"], cluster=obj["kind"] == crds.CLUSTER_POLICY_KIND)


def test_minimal_objects_are_valid() -> None:
    assert errors(validator_for(crd(crds.OBSERVER_KIND)), observer()) == []
    assert errors(validator_for(crd(crds.POLICY_KIND)), policy()) == []
    assert parse_policy_spec({}, cluster=False).max_level == "EbpfDeep"


def test_an_observation_node_as_the_agent_writes_it_is_valid() -> None:
    node = {
        "apiVersion": crds.API_VERSION,
        "kind": crds.NODE_KIND,
        "metadata": {"name": "node-a"},
        "spec": {"nodeName": "node-a"},
        "status": {
            "agentVersion": "0.1.0",
            "source": "tetragon",
            "heartbeatTime": "2026-11-24T10:00:00Z",
            "capabilities": {
                "kernelVersion": "6.1.0-18-amd64",
                "btf": True,
                "bpfPermitted": True,
                "tracepoints": True,
                "uprobes": True,
                "kprobes": False,
                "usdt": True,
                "ringBuffer": True,
                "tetragon": {
                    "reachable": True,
                    "address": crds.DEFAULT_TETRAGON_ADDRESS,
                    "version": "v1.7.0",
                },
            },
            "policies": [
                {
                    "name": "stellaops-web",
                    "namespace": "default",
                    "state": "LOAD_ERROR",
                    "error": "no such file",
                }
            ],
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-24T10:00:00Z"}],
        },
    }
    v = validator_for(crd(crds.NODE_KIND))
    assert errors(v, node) == []
    node["status"]["heartbeatTime"] = "yesterday"
    node["status"]["policies"][0]["state"] = "BROKEN"
    assert len(errors(v, node)) == 2


# ---------------------------------------------------------------- what the schemas reject


def _set(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    node = obj
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return obj


SCHEMA_REJECTS = [
    (crds.OBSERVER_KIND, "spec.agent.pullPolicy", "Sometimes", "is not one of"),
    (crds.OBSERVER_KIND, "spec.metrics.port", 70000, "greater than the maximum"),
    (crds.OBSERVER_KIND, "spec.metrics.port", 0, "less than the minimum"),
    (crds.OBSERVER_KIND, "spec.hotSymbols.minConfidenceThreshold", 1.5, "greater than the maximum"),
    (crds.OBSERVER_KIND, "spec.tetragon.timeoutSeconds", 0, "less than or equal to the minimum"),
    (crds.OBSERVER_KIND, "spec.tetragon.address", "tetragon.sock", "does not match"),
    # A NUL (`.` matches it): the agents refuse the config the operator renders from it, every one
    # of them exiting 2 at start (contracts/config_base.py to_text), the rollout stuck on a crashing pod.
    (crds.OBSERVER_KIND, "spec.tetragon.address", "unix:///var/run/tetragon/t\x00.sock", "does not match"),
    (crds.OBSERVER_KIND, "spec.tetragon.address", "tetragon\x00:54321", "does not match"),
    (crds.OBSERVER_KIND, "spec.agentNamespace", "Stella_Ops", "does not match"),
    (crds.OBSERVER_KIND, "spec.store.secretRef", {"name": "store"}, "'key' is a required property"),
    (crds.OBSERVER_KIND, "spec.agent.resources", {"limits": {"memory": "lots"}}, "does not match"),
    (crds.OBSERVER_KIND, "spec.agent.imagePullPolicy", "Always", "Additional properties"),
    (crds.POLICY_KIND, "spec.maxLevel", "Deep", "is not one of"),
    (crds.POLICY_KIND, "spec.rateLimit", "10/s", "does not match"),
    (crds.POLICY_KIND, "spec.rateLimit", "0s", "does not match"),
    (crds.POLICY_KIND, "spec.syscalls", ["Open"], "does not match"),
    (crds.POLICY_KIND, "spec.syscalls", ["open", "open"], "non-unique"),
    (crds.POLICY_KIND, "spec.functions", [{"binaryPath": "usr/bin/x", "symbols": ["f"]}], "does not match"),
    (crds.POLICY_KIND, "spec.functions", [{"binaryPath": "/usr/../x", "symbols": ["f"]}], "does not match"),
    (crds.POLICY_KIND, "spec.functions", [{"binaryPath": "/usr/bin/x", "symbols": []}], "non-empty"),
    (crds.POLICY_KIND, "spec.functions", [{"purl": "openssl@3", "symbols": ["f"]}], "does not match"),
    # A NUL in a symbol or a package URL: the agents' probe-config reader refuses it, and with it
    # every policy of the probe ConfigMap (one tenant's policy turned off the whole native fallback).
    (
        crds.POLICY_KIND,
        "spec.functions",
        [{"binaryPath": "/usr/bin/x", "symbols": ["f\x00g"]}],
        "does not match",
    ),
    (
        crds.CLUSTER_POLICY_KIND,
        "spec.functions",
        [{"binaryPath": "/x", "symbols": ["\x00"]}],
        "does not match",
    ),
    (
        crds.POLICY_KIND,
        "spec.functions",
        [{"purl": "pkg:deb/debian/ssl@3\x00", "symbols": ["f"]}],
        "does not match",
    ),
    (
        crds.CLUSTER_POLICY_KIND,
        "spec.functions",
        [{"purl": "pkg:npm/a\x00b@1", "symbols": ["f"]}],
        "does not match",
    ),
    (crds.POLICY_KIND, "spec.podSelector", {"matchLabels": {"app": "-bad-"}}, "does not match"),
    (
        crds.POLICY_KIND,
        "spec.podSelector",
        {"matchExpressions": [{"key": "a", "operator": "Is"}]},
        "not one of",
    ),
    (crds.POLICY_KIND, "spec.stackTraces", {"kernel": "yes"}, "is not of type"),
    (crds.CLUSTER_POLICY_KIND, "spec.tetragonHostRoot", "/procRoot/", "does not match"),
    # spec.containerRuntime (contracts/runtime_socket.py): the socket the operator mounts into the agents
    (crds.OBSERVER_KIND, "spec.containerRuntime", {"socketPath": "/run/x.sock"}, "'kind' is a required"),
    (crds.OBSERVER_KIND, "spec.containerRuntime", {"kind": "podman"}, "is not one of"),
    (
        crds.OBSERVER_KIND,
        "spec.containerRuntime",
        {"kind": "cri", "socketPath": "run/crio.sock"},
        "does not match",
    ),
    (
        crds.OBSERVER_KIND,
        "spec.containerRuntime",
        {"kind": "containerd", "socketPath": "/run/../etc/containerd.sock"},
        "does not match",
    ),
    (
        crds.OBSERVER_KIND,
        "spec.containerRuntime",
        {"kind": "containerd", "socketPath": "/run/containerd/"},
        "does not match",
    ),
    (
        crds.OBSERVER_KIND,
        "spec.containerRuntime",
        {"kind": "docker", "socketPath": "/run/docker\x00.sock"},
        "does not match",
    ),
    (
        crds.OBSERVER_KIND,
        "spec.containerRuntime",
        {"kind": "docker", "socketPath": "/run/" + "d" * 103},
        "is too long",
    ),
    (crds.OBSERVER_KIND, "spec.containerRuntime", {"kind": "docker", "socketPath": 5}, "is not of type"),
    (
        crds.OBSERVER_KIND,
        "spec.containerRuntime",
        {"kind": "docker", "address": "/x/y"},
        "Additional properties",
    ),
]


@pytest.mark.parametrize(("kind", "path", "value", "message"), SCHEMA_REJECTS)
def test_schema_rejects_invalid_fields(kind: str, path: str, value: Any, message: str) -> None:
    base = observer() if kind == crds.OBSERVER_KIND else policy(kind)
    problems = errors(validator_for(crd(kind)), _set(base, path, value))
    assert problems and any(message in p for p in problems), problems


@pytest.mark.parametrize(("kind", "path", "value"), [(k, p, v) for k, p, v, _ in SCHEMA_REJECTS])
def test_parse_rejects_what_the_schema_rejects(kind: str, path: str, value: Any) -> None:
    """Without an API server in front (kmock, a laptop run), the models refuse the same input."""
    obj = _set(observer() if kind == crds.OBSERVER_KIND else policy(kind), path, value)
    with pytest.raises(SpecError):
        if kind == crds.OBSERVER_KIND:
            parse_observer_spec(obj["spec"])
        else:
            parse_policy_spec(obj["spec"], cluster=kind == crds.CLUSTER_POLICY_KIND)


# ---------------------------------------------------------------- CEL rules


# the pod labels the operator sets (contracts/crd_names.py), as a CEL list
_RESERVED = "[" + ", ".join(f"'{k}'" for k in RESERVED_POD_LABEL_KEYS) + "]"
# rule text -> (a spec breaking it, kind, SpecError reason parse_*_spec gives for it); cel-python
# evaluates the rule itself (crd_schema.cel_holds; test_crd_cel.py runs every rule on hostile tables)
CEL_RULES: dict[str, tuple[dict[str, Any], str, str]] = {
    "has(self.binaryPath) != has(self.purl)": (
        {"functions": [{"binaryPath": "/usr/bin/x", "purl": "pkg:deb/debian/x@1", "symbols": ["f"]}]},
        crds.POLICY_KIND,
        "InvalidFunction",
    ),
    "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : "
    "(!has(self.values) || size(self.values) == 0)": (
        {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}},
        crds.POLICY_KIND,
        "InvalidLabelSelector",
    ),
    "!has(self.namespaceSelector)": (
        {"namespaceSelector": {"matchLabels": {"team": "a"}}},
        crds.POLICY_KIND,
        "NamespaceSelectorNotAllowed",
    ),
    "!(has(self.operator) && self.operator == 'Exists' && has(self.value) && self.value != '')": (
        {"agent": {"image": "x", "tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}},
        crds.OBSERVER_KIND,
        "InvalidSpec",
    ),
    "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')": (
        {"agent": {"image": "x", "tolerations": [{"operator": "Equal", "value": "v"}]}},
        crds.OBSERVER_KIND,
        "InvalidSpec",
    ),
    "86400 % self == 0": ({"hotSymbols": {"windowSeconds": 5000}}, crds.OBSERVER_KIND, "InvalidSpec"),
    f"self.matches('{NESTED_PATTERN}')": (
        {"containerRuntime": {"kind": "docker", "socketPath": "/docker.sock"}},
        crds.OBSERVER_KIND,
        "InvalidSocketPath",
    ),
    f"!self.matches('{FORBIDDEN_PATTERN}')": (
        {"containerRuntime": {"kind": "containerd", "socketPath": "/etc/containerd/containerd.sock"}},
        crds.OBSERVER_KIND,
        "InvalidSocketPath",
    ),
    f"(!has(self.matchLabels) || !{_RESERVED}.exists(k, k in self.matchLabels)) && "
    f"(!has(self.matchExpressions) || self.matchExpressions.all(r, !(r.key in {_RESERVED})))": (
        {"podSelector": {"matchExpressions": [{"key": "stellaops.io/observe-off", "operator": "Exists"}]}},
        crds.POLICY_KIND,
        "ConflictingSelectors",
    ),
    "self.all(s, s in [" + ", ".join(f"'{n}'" for n in sorted(KNOWN_SYSCALLS)) + "])": (
        {"syscalls": ["openat", "sys_openat"]},
        crds.POLICY_KIND,
        "UnknownSyscall",
    ),
    f"!self.matches('{KUBELET_PATTERN}')": (
        {"containerRuntime": {"kind": "containerd", "socketPath": "/var/lib/kubelet/pods/u/volumes/c.sock"}},
        crds.OBSERVER_KIND,
        "InvalidSocketPath",
    ),
    f"!self.matches('{DATA_ROOT_PATTERN}')": (
        {"containerRuntime": {"kind": "docker", "socketPath": "/var/lib/docker/x/docker.sock"}},
        crds.OBSERVER_KIND,
        "InvalidSocketPath",
    ),
    f"size(bytes(self)) <= {MAX_SOCKET_PATH_BYTES}": (
        {"containerRuntime": {"kind": "cri", "socketPath": "/run/" + "\u00e9" * 60}},
        crds.OBSERVER_KIND,
        "InvalidSocketPath",
    ),
}
_UNIX = "!self.startsWith('unix://') || "
_INVALID_SOCKET = "InvalidSocketPath"
_USUAL = f"self.matches('{USUAL_ADDRESS_PATTERN}') || "
# spec.tetragon.address (contracts/tetragon_socket.py): the rule's start, and an address breaking it
_ADDRESS_RULES = {
    _UNIX + "self.startsWith('unix:///')": ("unix://run/t.sock", "InvalidSpec"),
    "self.startsWith('unix://') || self.matches(": ("tetragon:65536", "InvalidSpec"),
    _UNIX + "!self.matches('[%?#]')": ("unix:///var/run/tetragon/t%41.sock", "InvalidSocketPath"),
    _UNIX + "!self.matches(r'": ("unix:///var/run/tetragon/../x/t.sock", "InvalidSocketPath"),
    _UNIX + "size(bytes(self))": ("unix:///var/run/tetragon/" + "t" * 100, "InvalidSocketPath"),
    _UNIX + _USUAL + "self.matches('^unix://(/(": ("unix:///opt/t//t.sock", "InvalidSocketPath"),
    _UNIX + _USUAL + "self.matches('^unix:///[^/]+/.+')": ("unix:///t.sock", "InvalidSocketPath"),
    _UNIX + _USUAL + "!self.matches('^unix://(/(proc": ("unix:///etc/t/t.sock", "InvalidSocketPath"),
    _UNIX + _USUAL + "!self.matches('^unix://(/[^/]+|": ("unix:///tmp/t.sock", "InvalidSocketPath"),
    _UNIX + _USUAL + "!self.matches('^unix://(/.*)?/(kubelet/": (
        "unix:///var/lib/kubelet/pki/t",
        _INVALID_SOCKET,
    ),
    _UNIX + _USUAL + "!self.matches('^unix://((/.*)?/var/lib/": (
        "unix:///var/lib/etcd/t/t.sock",
        _INVALID_SOCKET,
    ),
    "has(self.containerRuntime) || !has(self.tetragon)": ("unix:///run/crio/t.sock", "InvalidSocketPath"),
}
# where each rule sits, to find the value the rule sees inside a breaking spec
_RULE_TARGET: dict[str, Callable[[dict[str, Any]], Any]] = {
    "has(self.binaryPath) != has(self.purl)": lambda s: s["functions"][0],
    "self.operator in": lambda s: s["podSelector"]["matchExpressions"][0],
    "!has(self.namespaceSelector)": lambda s: s,
    "!(has(self.operator)": lambda s: s["agent"]["tolerations"][0],
    "(has(self.key)": lambda s: s["agent"]["tolerations"][0],
    "86400 % self": lambda s: s["hotSymbols"]["windowSeconds"],
    "self.matches(": lambda s: s["containerRuntime"]["socketPath"],
    "!self.matches(": lambda s: s["containerRuntime"]["socketPath"],
    "size(bytes(self))": lambda s: s["containerRuntime"]["socketPath"],
    "has(self.containerRuntime)": lambda s: s,
    "(!has(self.matchLabels)": lambda s: s["podSelector"],
    "self.all(s, s in": lambda s: s["syscalls"],
    "self.startsWith(": lambda s: s["tetragon"]["address"],
    "!self.startsWith(": lambda s: s["tetragon"]["address"],
}


def _normalize(rule: str) -> str:
    return " ".join(rule.split())


def _crd_rules() -> set[str]:
    found = set()
    for kind in KINDS:
        for _, rule, message in cel_rules(served_schema(crd(kind))):
            assert message, f"{kind}: CEL rule {rule!r} has no message"
            found.add(_normalize(rule))
    return found


def _address_rule(start: str) -> str:
    (rule,) = [r for r in _crd_rules() if r.startswith(start)]
    return rule


def _all_cel_rules() -> dict[str, tuple[dict[str, Any], str, str]]:
    out = dict(CEL_RULES)
    for start, (address, reason) in _ADDRESS_RULES.items():
        out[_address_rule(start)] = ({"tetragon": {"address": address}}, crds.OBSERVER_KIND, reason)
    return out


def test_every_cel_rule_has_a_parse_check() -> None:
    assert _crd_rules() == {_normalize(r) for r in _all_cel_rules()}


@pytest.mark.parametrize("rule", sorted(_all_cel_rules()))
def test_cel_rule_intent_is_enforced_by_parse(rule: str) -> None:
    spec, kind, reason = _all_cel_rules()[rule]
    target = next(f for prefix, f in _RULE_TARGET.items() if rule.startswith(prefix))
    assert not cel_holds(rule, target(spec))  # the sample breaks the rule
    if kind == crds.OBSERVER_KIND:
        spec = {**spec, "store": {"secretRef": {"name": "s", "key": "k"}}}
        with pytest.raises(SpecError) as e:
            parse_observer_spec(spec)
    else:
        with pytest.raises(SpecError) as e:
            parse_policy_spec(spec, cluster=False)
    assert e.value.reason == reason


def test_cel_rules_accept_valid_objects() -> None:
    ok_fn = {"binaryPath": "/usr/bin/x", "symbols": ["f"]}
    assert cel_holds("has(self.binaryPath) != has(self.purl)", ok_fn)
    requirement = next(r for r in CEL_RULES if r.startswith("self.operator in"))
    assert cel_holds(requirement, {"key": "a", "operator": "In", "values": ["b"]})
    assert cel_holds(requirement, {"key": "a", "operator": "DoesNotExist"})
    value_rule, key_rule = (r for r in CEL_RULES if r.startswith(("!(has(self.operator)", "(has(self.key)")))
    assert cel_holds(value_rule, {"operator": "Exists"}) and cel_holds(key_rule, {"operator": "Exists"})
    assert cel_holds(key_rule, {"key": "k", "operator": "Equal", "value": "v"})
    assert all(cel_holds("86400 % self == 0", w) for w in (1, 60, 300, 3600, 86_400))
    nested, allowed = f"self.matches('{NESTED_PATTERN}')", f"!self.matches('{FORBIDDEN_PATTERN}')"
    for ok in ("/run/k3s/containerd/containerd.sock", "/var/run/docker.sock", "/run/user/1000/docker.sock"):
        assert cel_holds(nested, ok) and cel_holds(allowed, ok), ok
    for bad in ("/proc/1/root/run/containerd.sock", "/sys/x/y", "/etc/x.sock", "/var/run/tetragon/t.sock"):
        assert not cel_holds(allowed, bad), bad
    assert cel_holds(allowed, "/etcetera/x.sock") and cel_holds(allowed, "/run/tetragon2/x.sock")


# ---------------------------------------------------------------- semantic checks only parse can do


def req(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": operator, **({"values": list(values)} if values else {})}


def pods(*reqs: dict[str, Any], **labels: str) -> dict[str, Any]:
    sel: dict[str, Any] = {"matchLabels": labels} if labels else {}
    if reqs:
        sel["matchExpressions"] = list(reqs)
    return {"podSelector": sel}


def fns(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"functions": list(entries)}


@pytest.mark.parametrize(
    ("spec", "reason", "needle"),
    [
        ({"syscalls": ["opnat"]}, "UnknownSyscall", "'opnat'"),
        ({"syscalls": ["sys_openat"]}, "UnknownSyscall", "write the bare name, e.g. 'openat'"),
        ({"syscalls": ["openat", "openat"]}, "DuplicateEntry", "twice"),
        (pods(req("app", "NotIn", "a"), app="a"), "ConflictingSelectors", "label app"),
        (pods(req("t", "In", "a"), req("t", "In", "b")), "ConflictingSelectors", "label t"),
        (pods(req("t", "Exists"), req("t", "DoesNotExist")), "ConflictingSelectors", "both exist and not"),
        (pods(req("t", "DoesNotExist"), t="x"), "ConflictingSelectors", "both exist and not"),
        (pods(**{"stellaops.io/observe": "true"}), "ConflictingSelectors", "stellaops.io/observe"),
        (pods(req("stellaops.io/observe", "Exists")), "ConflictingSelectors", "stellaops.io/observe"),
        (pods(**{"stellaops.io/observe-deep": "true"}), "ConflictingSelectors", "stellaops.io/observe-deep"),
        (pods(req("stellaops.io/observe-full", "DoesNotExist")), "ConflictingSelectors", "observe-full"),
        (pods(**{"bad key": "x"}), "InvalidLabelSelector", "label key"),
        (pods(req("a", "In")), "InvalidLabelSelector", "needs values"),
        (pods(req("a", "Exists", "x")), "InvalidLabelSelector", "takes no values"),
        (fns({"symbols": ["f"]}), "InvalidFunction", "exactly one"),
        (fns({"purl": "pkg:deb", "symbols": ["f"]}), "InvalidPurl", "pkg:deb"),
        (fns({"binaryPath": "/a/./b", "symbols": ["f"]}), "InvalidFunction", "normalized"),
        (fns({"binaryPath": "/a", "symbols": ["f", "f"]}), "DuplicateEntry", "symbol twice"),
        (fns({"binaryPath": "/a", "symbols": ["two words"]}), "InvalidFunction", "one word"),
        (fns({"binaryPath": "/a", "symbols": ["SSL_read\x00x"]}), "InvalidFunction", "NUL"),
        (fns({"purl": "pkg:deb/debian/openssl@3.0.11\x00", "symbols": ["f"]}), "InvalidPurl", "NUL"),
        (fns({"purl": "pkg:deb/debian/open\x00ssl@3", "symbols": ["f"]}), "InvalidPurl", "NUL"),
        (
            fns({"binaryPath": "/a", "symbols": ["f"]}, {"binaryPath": "/a", "symbols": ["g"]}),
            "DuplicateEntry",
            "same",
        ),
        ({"rateLimit": "1d"}, "InvalidRateLimit", "1d"),
        ({"maxLevel": "Everything"}, "InvalidSpec", "spec.maxLevel"),
        ({"syscalls": "openat"}, "InvalidSpec", "spec.syscalls"),
        ({"sycalls": ["openat"]}, "InvalidSpec", "unknown field"),
        ({"tetragonHostRoot": "procRoot"}, "InvalidSpec", "tetragonHostRoot"),
        ({"stackTraces": {"user": "yes"}}, "InvalidSpec", "spec.stackTraces.user"),
    ],
)
def test_parse_policy_semantic_errors(spec: dict[str, Any], reason: str, needle: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_policy_spec(spec, cluster=True)
    assert e.value.reason == reason and reason in crds.SPEC_ERROR_REASONS
    assert needle in e.value.message, e.value.message


def test_namespace_selector_only_on_the_cluster_kind() -> None:
    spec = {"namespaceSelector": {"matchLabels": {"team": "a"}}}
    with pytest.raises(SpecError) as e:
        parse_policy_spec(spec, cluster=False)
    assert e.value.reason == "NamespaceSelectorNotAllowed"
    assert parse_policy_spec(spec, cluster=True).namespace_selector is not None
    conflicting = {"matchLabels": {"a": "b"}, "matchExpressions": [req("a", "DoesNotExist")]}
    with pytest.raises(SpecError) as e:
        parse_policy_spec({"namespaceSelector": conflicting}, cluster=True)
    assert e.value.reason == "ConflictingSelectors" and "namespaceSelector" in e.value.message


@pytest.mark.parametrize(
    ("patch", "reason", "needle"),
    [
        ({"privacy": {"extraPatterns": ["ok", "(unclosed"]}}, "InvalidRegex", "extraPatterns[1]"),
        ({"agentNamespace": "Bad_NS"}, "InvalidSpec", "agentNamespace"),
        ({"tetragon": {"address": "unix://relative"}}, "InvalidSpec", "absolute path"),
        ({"tetragon": {"address": "host:99999"}}, "InvalidSpec", "HOST:PORT"),
        ({"tetragon": {"address": "unix:///run/t\x00.sock"}}, "InvalidSpec", "NUL"),
        ({"tetragon": {"address": "h\x00:54321"}}, "InvalidSpec", "NUL"),
        ({"agent": {"image": "x", "nodeSelector": {"a": "b c"}}}, "InvalidLabelSelector", "label value"),
        ({"store": {"secretRef": {"name": "s"}}}, "InvalidSpec", "spec.store.secretRef.key"),
        ({"agent": {"image": ""}}, "InvalidSpec", "spec.agent.image"),
        # 65 characters (maxLength counts those) but 125 bytes: no Unix socket address holds it (CEL: bytes)
        (
            {"containerRuntime": {"kind": "cri", "socketPath": "/run/" + "\u00e9" * 60}},
            "InvalidSocketPath",
            "107 bytes",
        ),
        (
            {
                "containerRuntime": {
                    "kind": "containerd",
                    "socketPath": "/var/lib/stellaops-runtime/spool/c.sock",
                }
            },
            "InvalidSocketPath",
            "agent's own directories",
        ),
    ],
)
def test_parse_observer_errors(patch: dict[str, Any], reason: str, needle: str) -> None:
    spec = {**observer()["spec"], **patch}
    with pytest.raises(SpecError) as e:
        parse_observer_spec(spec)
    assert e.value.reason == reason and needle in e.value.message, e.value.message


def test_parse_accepts_every_valid_form() -> None:
    go_symbol = "golang.org/x/net/http2.(*Framer).ReadFrame"
    spec = parse_policy_spec(
        {
            **pods(req("app", "In", "web", "api"), req("tier", "NotIn", "batch"), app="web"),
            "namespaceSelector": {"matchExpressions": [req("kubernetes.io/metadata.name", "Exists")]},
            "syscalls": ["openat", "open", "renameat"],  # open: x86_64 only; renameat: both
            **fns(
                {"binaryPath": "/usr/bin/python3.11", "symbols": ["_PyEval_EvalFrameDefault"]},
                {"purl": "pkg:golang/golang.org/x/net@v0.17.0", "symbols": [go_symbol]},
            ),
            "rateLimit": "2h",
        },
        cluster=True,
    )
    assert spec.rate_limit_seconds == 7200
    assert [crds.rate_limit_seconds(t) for t in ("45", "45s", "3m")] == [45, 45, 180]
    assert parse_policy_spec({"tetragonHostRoot": ""}, cluster=False).tetragon_host_root == ""
    assert parse_observer_spec({**observer()["spec"], "tetragon": {"address": "[::1]:54321"}})


def test_spec_error_carries_reason_and_message() -> None:
    e = SpecError("UnknownSyscall", "nope")
    assert (e.reason, e.message, str(e)) == ("UnknownSyscall", "nope", "UnknownSyscall: nope")
    with pytest.raises(SpecError) as caught:
        parse_policy_spec(["not", "a", "mapping"], cluster=False)  # type: ignore[arg-type]
    assert caught.value.reason == "InvalidSpec"
