"""The API server (the CRDs' schemas and CEL rules) and the operator accept and refuse the same values.

A table of hostile values (empty, NUL, newline, unicode, very long, ``..``,
``//``, trailing slash, spaces, uppercase, ``%``/``?``/``#``...) goes into
each field a CEL rule guards (and a few pattern-only fields where Python's
``re`` and the API server's RE2 read ``$`` apart). The API server is played by
tests/crd_schema.py (jsonschema with RE2 patterns, cel-python for the rules,
tests/unit/test_crd_cel.py checks the rules themselves); the operator by
``parse_observer_spec``/``parse_policy_spec``, the authority on what it can
run. Both must say the same, and the table must break every rule at least once.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import pytest
from crd_schema import cel_holds, cel_violations, errors, served_schema
from test_crd_cel import RULES, crd, validator
from test_crds import KINDS, example_objects, observer, policy

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crd_names import RESERVED_POD_LABEL_KEYS
from stellaops_runtime.contracts.crds import SpecError, parse_observer_spec, parse_policy_spec


def _prune_nulls(value: Any) -> Any:
    """The API server drops a null where the schema does not allow one (none of ours does)."""
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


def api_server_refuses(obj: dict[str, Any]) -> list[str]:
    obj = _prune_nulls(obj)
    if found := schema_errors(obj["kind"], json.dumps(obj)):  # a wrong type would stop CEL there too
        return found
    return cel_violations(served_schema(crd(obj["kind"])), obj)


@functools.lru_cache(maxsize=4096)
def schema_errors(kind: str, obj_json: str) -> list[str]:
    """The schema's verdict, kept: test_the_cases_break_every_rule asks again for every case."""
    return errors(validator(kind), json.loads(obj_json))


def operator_refuses(obj: dict[str, Any]) -> str | None:
    try:
        if obj["kind"] == crds.OBSERVER_KIND:
            parse_observer_spec(obj["spec"])
        else:
            parse_policy_spec(obj["spec"], cluster=obj["kind"] == crds.CLUSTER_POLICY_KIND)
    except SpecError as e:
        return str(e)
    return None


# Hostile paths for the two fields that name a socket on the node.
PATHS = [
    "",
    "/",
    "/x.sock",
    "/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/var/run/docker.sock",
    "/run/containerd/",
    "/run//containerd.sock",
    "//run/c/c.sock",
    "/run/./c/c.sock",
    "/run/../etc/c.sock",
    "/run/c/..",
    "..",
    "relative/c.sock",
    "/run/c/c\x00.sock",
    "/run/c/c\n.sock",
    "/run/c/c.sock\n",
    "/run/c/c\t.sock",
    "/run/c/c\x7f.sock",
    "/run/c c/c.sock",
    " /run/c/c.sock",
    "/RUN/C/C.SOCK",
    "/Proc/c.sock",
    "/run/é/ü.sock",
    "/run/\u202e/c.sock",
    "/run/" + "é" * 60,
    "/run/c/" + "d" * 100,
    "/run/c/" + "d" * 101,
    "/run/c/" + "a" * 5000,
    "/proc/1/root/c.sock",
    "/etc/c.sock",
    "/etcetera/c/c.sock",
    "/var/run/secrets/c.sock",
    "/run/secrets/kubernetes.io/serviceaccount/c.sock",
    "/var/lib/stellaops-runtime/spool/c.sock",
    "/opt/stellaops/c.sock",
    "/opt/stellaopsx/c.sock",
    "/run/tetragon/t.sock",
    "/run/tetragon2/t.sock",
    "/home/u/c.sock",
    "/run/a%41/c.sock",
    "/run/a?b/c.sock",
    "/run/a#b/c.sock",
    "/.hidden/c.sock",
    "/run/.../c.sock",
    "/run/..x/c.sock",
    "/var/lib/kubelet/c.sock",  # the kubelet's pod data (test_crd_cel_real_values)
    "/var/lib/kubelet/pods/u/volumes/c.sock",
    "/var/lib/kubelet/plugins/c.sock",
    "/var/lib/kubelet/plugins/kubernetes.io/c/c.sock",
    "/var/lib/kubelet/pod-resources/c.sock",
    "/var/lib/kubelet/plugins/csi.example.com/c.sock",
    "/var/lib/k0s/kubelet/c.sock",  # other kubelets' directories and data roots (test_crd_cel_real_values)
    "/data/kubelet/c.sock",
    "/mnt/k8s/pods/u/c.sock",
    "/var/lib/etcd/c.sock",
    "/x/var/lib/docker/c.sock",
    "/var/lib/etcdx/c.sock",
]
WINDOWS = [1, 7, 60, 61, 300, 5000, 3600, 43_200, 86_400, 86_401, 0, -60, 2**40]
TOLERATIONS = [
    {},
    {"operator": "Exists"},
    {"operator": "Exists", "value": ""},
    {"operator": "Exists", "value": "v"},
    {"key": "", "operator": "Exists"},
    {"key": "", "operator": "Equal", "value": "v"},
    {"key": "", "value": "v"},
    {"key": "k"},
    {"key": "k", "operator": "Equal", "value": "v"},
    {"key": "k", "operator": "Exists", "value": "v"},
    {"key": "k", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "k\x00", "operator": "Exists"},
    {"key": "K" * 400, "operator": "Exists"},
    {"key": "k", "operator": "Equal", "value": "é" * 64},
]
REQUIREMENTS = [
    {"key": "app", "operator": "In", "values": ["web"]},
    {"key": "app", "operator": "In", "values": []},
    {"key": "app", "operator": "In"},
    {"key": "app", "operator": "NotIn", "values": ["a", "b"]},
    {"key": "app", "operator": "NotIn"},
    {"key": "app", "operator": "Exists"},
    {"key": "app", "operator": "Exists", "values": []},
    {"key": "app", "operator": "Exists", "values": ["x"]},
    {"key": "app", "operator": "DoesNotExist", "values": [""]},
    {"key": "app", "operator": "In", "values": ["a\x00"]},
    {"key": "app", "operator": "In", "values": ["web\n"]},
    {"key": "app\n", "operator": "Exists"},
    {"key": "", "operator": "Exists"},
    {"key": "A/B", "operator": "Exists"},
    {"key": "example.com/app", "operator": "Exists"},
    {"key": "app", "operator": "In", "values": ["x"] * 2},
    {"key": "app", "operator": "In", "values": ["v"] * 40},
]
FUNCTIONS = [
    {"symbols": ["f"]},
    {"binaryPath": "/usr/bin/x", "purl": "pkg:deb/debian/x@1", "symbols": ["f"]},
    {"binaryPath": "/usr/bin/x", "symbols": ["f"]},
    {"purl": "pkg:deb/debian/openssl@3.0.11", "symbols": ["SSL_read"]},
    {"binaryPath": "", "symbols": ["f"]},
    {"binaryPath": "/usr/bin/x/", "symbols": ["f"]},
    {"binaryPath": "/usr/../x", "symbols": ["f"]},
    {"binaryPath": "/usr/bin/x\n", "symbols": ["f"]},
    {"binaryPath": "/usr/bin/x", "symbols": ["f\n"]},
    {"binaryPath": "/usr/bin/é", "symbols": ["é"]},
    {"binaryPath": "/usr/bin/x", "symbols": ["f g"]},
    {"purl": "pkg:deb/debian/x@1\n", "symbols": ["f"]},
    {"purl": "", "symbols": ["f"]},
    {"binaryPath": "/" + "a" * 5000, "symbols": ["f"]},
]


def _observer(path: str, value: Any) -> dict[str, Any]:
    obj = observer()
    node = obj["spec"]
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return obj


ADDRESSES = [f"unix://{p}" for p in PATHS] + [
    "unix://",
    "unix://relative.sock",
    "unix://x:80",
    "unix:/run/t/t.sock",
    "unix:///run/containerd/t.sock",
    "unix:///var/run/crio/t.sock",
    "unix:///run/crio/sub/t.sock",
    "unix:///var/run/tetragon/tetragon.sock",
    "unix:///var/run/tetragon/./tetragon.sock",
    "unix:///var/run/tetragon//tetragon.sock",
    "unix:///var/run/tetragon/../tetragon/tetragon.sock",
    "unix:///var/run/tetragon/t%41.sock",
    "unix:///run/tetragon/" + "t" * 120,
    "unix:///var/run/tetragon",
    "unix:///var/run/tetragon/",
    "unix:///var/run/tetragon/.",
    "unix:///var/run/tetragon/...",
    "unix:///var/run/tetragon/a/../t.sock",
    "unix:///./var/run/tetragon/t.sock",
    "unix:///.//var/run/tetragon/t.sock",
    "unix:///var//run/tetragon/t.sock",
    "unix:///var/run/./tetragon/t.sock",
    "unix:////var/run/tetragon/t.sock",
    "unix:///run/tetragonx/t.sock",
    # Tetragon's usual directory is mounted whole whatever the names under it: no kubelet or
    # data-root rule applies there (the operator mounts /var/run/tetragon, nothing else)
    "unix:///var/run/tetragon/pods/tetragon.sock",
    "unix:///run/tetragon/kubelet/tetragon.sock",
    "unix:///var/run/tetragon/var/lib/docker/tetragon.sock",
    "unix:///var/run/tetragon/pki/t.sock",
    "unix:///run/tetragon/t\n.sock",
    "unix:///run/tetragon/" + "é" * 60,
    "unix:///run/t.sock",
    "unix:///tmp/t.sock",
    "unix:///var/t/t.sock",
    "unix:///var/lib/kubelet/t.sock",
    "unix:///opt/tetragon/tetragon.sock",
    "localhost:54321",
    "[::1]:54321",
    "tetragon.kube-system.svc:54321",
    "dns:///tetragon:54321",
    "host:0",
    "host:1",
    "host:65535",
    "host:65536",
    "host:99999",
    "host:080",
    "host:000080",
    "host:",
    ":54321",
    "host",
    "host:54321\n",
    "host\n:54321",
    "host:\u0668\u0660",
    "h\x00:54321",
    "HOST:1",
    "a b:1",
    "é:1",
    "h" * 1020 + ":1",
    "h" * 1030 + ":1",
]

CASES: list[tuple[str, dict[str, Any]]] = (
    [(f"tetragon.address={a!r}", _observer("tetragon.address", a)) for a in ADDRESSES]
    + [
        (f"socketPath={p!r}", _observer("containerRuntime", {"kind": "containerd", "socketPath": p}))
        for p in PATHS
    ]
    + [(f"windowSeconds={w}", _observer("hotSymbols.windowSeconds", w)) for w in WINDOWS]
    + [(f"toleration={t!r}", _observer("agent.tolerations", [t])) for t in TOLERATIONS]
    + [
        (f"{kind} {where}={r!r}", policy(kind, **{where: {"matchExpressions": [r]}}))
        for r in REQUIREMENTS
        for kind, where in (
            (crds.POLICY_KIND, "podSelector"),
            (crds.CLUSTER_POLICY_KIND, "podSelector"),
            (crds.CLUSTER_POLICY_KIND, "namespaceSelector"),
        )
    ]
    + [
        (f"{kind} function={f!r}", policy(kind, functions=[f]))
        for f in FUNCTIONS
        for kind in KINDS
        if "Policy" in kind
    ]
    + [
        (f"{kind} namespaceSelector={s!r}", policy(kind, namespaceSelector=s))
        for s in ({}, {"matchLabels": {"team": "a"}}, None)
        for kind in (crds.POLICY_KIND, crds.CLUSTER_POLICY_KIND)
    ]
    # fields without a rule whose patterns end in $, which Python's re and the API server's RE2 read apart
    + [
        (f"rateLimit={r!r}", policy(rateLimit=r))
        for r in ("30", "30s", "30s\n", "30\n", "0s", "1d", "\u0663")
    ]
    + [(f"agentNamespace={n!r}", _observer("agentNamespace", n)) for n in ("stellaops", "stellaops\n")]
    + [(f"memory={q!r}", _observer("agent.resources", {"limits": {"memory": q}})) for q in ("1Gi", "1Gi\n")]
    + [(f"matchLabels={v!r}", policy(podSelector={"matchLabels": {"app": v}})) for v in ("web", "web\n")]
    + [
        (f"{kind} syscalls={names!r}", policy(kind, syscalls=list(names)))
        for names in (
            ("openat",),
            ("openat", "execve", "renameat2", "open"),  # open: x86_64 only, still a syscall
            ("opnat",),
            ("sys_openat",),
            ("__x64_sys_openat",),
            ("openat", "connectx"),
            ("x" * 64,),
        )
        for kind in (crds.POLICY_KIND, crds.CLUSTER_POLICY_KIND)
    ]
    # wrong types where a rule looks
    + [
        (f"{path}={value!r}", _observer(path, value))
        for path, value in (
            ("tetragon.address", 5),
            ("tetragon.address", ["unix:///run/t/t.sock"]),
            ("tetragon", "unix:///run/t/t.sock"),
            ("hotSymbols.windowSeconds", "60"),
            ("hotSymbols.windowSeconds", True),
            ("hotSymbols.windowSeconds", 60.5),
            ("agent.tolerations", ["Exists"]),
            ("agent.tolerations", {"key": "k"}),
            ("containerRuntime", {"kind": "containerd", "socketPath": 5}),
            ("containerRuntime", "/run/containerd/containerd.sock"),
        )
    ]
    + [
        (f"policy {key}={value!r}", policy(**{key: value}))
        for key, value in (
            ("podSelector", []),
            ("podSelector", {"matchLabels": {"stellaops.io/observe": 5}}),
            ("podSelector", {"matchExpressions": {"key": "a", "operator": "Exists"}}),
            ("podSelector", {"matchExpressions": [{"key": 5, "operator": "Exists"}]}),
            ("functions", [{"binaryPath": 5, "symbols": ["f"]}]),
            ("functions", ["/usr/bin/x"]),
            ("namespaceSelector", "all"),
        )
    ]
    # the labels the operator sets from the computed posture, and near misses
    + [
        (f"{kind} podSelector {how} {key!r}", policy(kind, podSelector=selector))
        for key in (*RESERVED_POD_LABEL_KEYS, "stellaops.io/observed", "example.com/observe", "observe")
        for how, selector in (
            ("matchLabels", {"matchLabels": {key: "true"}}),
            ("matchExpressions", {"matchExpressions": [{"key": key, "operator": "DoesNotExist"}]}),
        )
        for kind in (crds.POLICY_KIND, crds.CLUSTER_POLICY_KIND)
    ]
)


@pytest.mark.parametrize(("name", "obj"), CASES, ids=[n[:80] for n, _ in CASES])
def test_api_server_and_operator_agree(name: str, obj: dict[str, Any]) -> None:
    api = api_server_refuses(obj)
    operator = operator_refuses(obj)
    assert bool(api) == bool(operator), (
        f"{name}: API server {api or 'accepts'}; operator {operator or 'accepts'}"
    )


def test_the_cases_break_every_rule() -> None:
    """Each rule is false for at least one case and true for another, so the agreement above tested it."""
    seen: dict[tuple[str, str], set[bool]] = {}

    def visit(schema: dict[str, Any], value: Any) -> None:
        if value is None:
            return
        for r in schema.get("x-kubernetes-validations") or ():
            seen.setdefault((kind, r["rule"]), set()).add(cel_holds(r["rule"], value))
        if isinstance(value, dict):
            for k, v in value.items():
                if k in (schema.get("properties") or {}):
                    visit(schema["properties"][k], v)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for v in value:
                visit(schema["items"], v)

    for _, obj in CASES:
        kind = obj["kind"]
        if not schema_errors(kind, json.dumps(_prune_nulls(obj))):
            visit(served_schema(crd(kind)), copy.deepcopy(obj))
    for kind, path, _, rule in RULES:
        assert seen.get((kind, rule["rule"])) == {True, False}, f"{kind} {path}: {rule['rule']!r}"


def test_only_the_operator_refuses_a_tetragon_socket_beside_a_set_runtime_socket() -> None:
    """The one refusal CEL cannot say (it has no dirname): docs/operator.md names it."""
    obj = _observer("tetragon.address", "unix:///run/k3s/containerd/t.sock")
    runtime = {"kind": "containerd", "socketPath": "/run/k3s/containerd/containerd.sock"}
    obj["spec"]["containerRuntime"] = runtime
    assert api_server_refuses(obj) == []
    assert "container runtime's mount" in (operator_refuses(obj) or "")
    unset = _observer("tetragon.address", "unix:///run/containerd/t.sock")  # the default mounts: CEL says it
    assert api_server_refuses(unset) and operator_refuses(unset)


def test_the_shipped_examples_pass_every_rule() -> None:
    objects = example_objects()
    assert objects
    for obj in objects:
        assert api_server_refuses(obj) == [], obj["kind"]
        assert operator_refuses(obj) is None, obj["kind"]
