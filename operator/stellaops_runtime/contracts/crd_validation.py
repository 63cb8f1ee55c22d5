"""The second line of defence for our custom resources: what their OpenAPI schemas cannot say.

The CRD manifests (``manifests/crds/``) reject most invalid input at the API
server through their OpenAPI schemas and CEL rules. ``parse_observer_spec``
and ``parse_policy_spec`` turn the ``spec`` of a custom resource into the
frozen models of ``contracts/crd_specs.py`` and raise :class:`SpecError` for
what a schema cannot say (a regular expression that does not compile, a
syscall no kernel has, selectors that can never match, a PURL that does not
parse) and, because kmock and older API servers do not evaluate CEL, for
every CEL rule of the CRDs too. ``SpecError.reason`` is the CamelCase reason
the operator puts in the resource's ``Ready=False`` condition.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from packageurl import PackageURL
from pydantic import BaseModel, ValidationError

from stellaops_runtime.contracts.config_base import SECONDS_PER_DAY
from stellaops_runtime.contracts.crd_names import RESERVED_POD_LABEL_KEYS
from stellaops_runtime.contracts.crd_specs import (
    QUANTITY_PATTERN,
    FunctionSpec,
    LabelSelector,
    PolicySpec,
    RuntimeObserverSpec,
    SpecError,
    rate_limit_seconds,
)
from stellaops_runtime.contracts.regex_backtracking import BACKTRACKING_ADVICE, backtracking_risk
from stellaops_runtime.contracts.regex_depth import MAX_GROUP_DEPTH, group_depth
from stellaops_runtime.contracts.runtime_socket import shown, socket_path_problem
from stellaops_runtime.contracts.syscalls import KNOWN_SYSCALLS, TABLE_RELEASE
from stellaops_runtime.contracts.tetragon_socket import tetragon_socket_problem

# Kubernetes label syntax (apimachinery validation: qualified names and values). Every pattern here
# is applied with fullmatch: Python's ``$`` also matches before a trailing newline, the API server's
# (Go's regexp) does not, so ``match`` passed "web\n" that the CRD refuses.
_LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_SYMBOL_RE = re.compile(r"^\S{1,1024}$")
# The CRDs' functions[].binaryPath and purl (manifests/crds/*observationpolicies.yaml).
BINARY_PATH_PATTERN = r"^(/([^/.\x00][^/\x00]*|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+))+$"
MAX_BINARY_PATH = 4096
_BINARY_PATH_RE = re.compile(BINARY_PATH_PATTERN)
MAX_PURL = 2048
MAX_ADDRESS = 1024
_PORT_RE = re.compile(r"[0-9]{1,5}")  # str.isdigit also takes other scripts' digits ("\u0663")
# A toleration's key (a qualified name: 253 + "/" + 63 is 317; the CRD says 316) and value (a label value).
MAX_TOLERATION_KEY, MAX_TOLERATION_VALUE = 316, 63


def _format_validation(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        path = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"spec.{path}: {msg}" if path != "spec" else f"spec: {msg}")
    return "; ".join(parts)


def _validate(model: type[BaseModel], spec: Mapping[str, Any] | None) -> Any:
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise SpecError("InvalidSpec", f"spec must be an object, got {type(spec).__name__}")
    try:
        return model.model_validate(dict(spec))
    except ValidationError as e:
        raise SpecError("InvalidSpec", _format_validation(e)) from None


def check_label_key(key: str, *, where: str) -> None:
    """Kubernetes qualified-name rules for a label key; raises SpecError(InvalidLabelSelector)."""
    prefix, slash, name = key.rpartition("/")
    ok = bool(name) and len(name) <= 63 and _LABEL_NAME_RE.fullmatch(name) is not None
    if slash:
        ok = ok and 0 < len(prefix) <= 253 and _DNS_SUBDOMAIN_RE.fullmatch(prefix) is not None
    if not ok:
        raise SpecError("InvalidLabelSelector", f"{where}: {key!r} is not a valid label key")


def check_label_value(value: str, *, where: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE_RE.fullmatch(value):
        raise SpecError("InvalidLabelSelector", f"{where}: {value!r} is not a valid label value")


def _check_selector(sel: LabelSelector, *, where: str, reserved: tuple[str, ...] = ()) -> None:
    """Syntax (keys, values, operator/value rules) and satisfiability of one selector."""
    allowed: dict[str, set[str]] = {}
    excluded: dict[str, set[str]] = {}
    exists: set[str] = set()
    absent: set[str] = set()
    for key, value in sel.match_labels.items():
        check_label_key(key, where=f"{where}.matchLabels")
        check_label_value(value, where=f"{where}.matchLabels[{key}]")
        allowed[key] = allowed.get(key, {value}) & {value}
    for i, req in enumerate(sel.match_expressions):
        at = f"{where}.matchExpressions[{i}]"
        check_label_key(req.key, where=at)
        if req.operator in ("In", "NotIn"):
            if not req.values:
                raise SpecError("InvalidLabelSelector", f"{at}: operator {req.operator} needs values")
            for v in req.values:
                check_label_value(v, where=at)
            if req.operator == "In":
                allowed[req.key] = allowed.get(req.key, set(req.values)) & set(req.values)
            else:
                excluded.setdefault(req.key, set()).update(req.values)
        else:
            if req.values:
                raise SpecError("InvalidLabelSelector", f"{at}: operator {req.operator} takes no values")
            (exists if req.operator == "Exists" else absent).add(req.key)
    keys = set(sel.match_labels) | {r.key for r in sel.match_expressions}
    for key in sorted(keys & set(reserved)):
        raise SpecError(
            "ConflictingSelectors",
            f"{where} uses {key}, which the operator sets from the computed posture; "
            "select pods by your own labels",
        )
    for key in sorted(absent & (exists | set(allowed))):
        raise SpecError(
            "ConflictingSelectors", f"{where}: label {key} must both exist and not exist; it selects nothing"
        )
    for key, values in sorted(allowed.items()):
        if not values - excluded.get(key, set()):
            raise SpecError(
                "ConflictingSelectors",
                f"{where}: no value of label {key} satisfies every requirement; it selects nothing",
            )


def parse_observer_spec(spec: Mapping[str, Any]) -> RuntimeObserverSpec:
    """Validate a RuntimeObserver ``spec``; raises SpecError with a condition reason."""
    model: RuntimeObserverSpec = _validate(RuntimeObserverSpec, spec)
    if not re.fullmatch(DNS_LABEL_PATTERN, model.agent_namespace) or len(model.agent_namespace) > 63:
        raise SpecError(
            "InvalidSpec", f"spec.agentNamespace {model.agent_namespace!r} is not a namespace name"
        )
    for i, pattern in enumerate(model.privacy.extra_patterns):
        if (depth := group_depth(pattern)) > MAX_GROUP_DEPTH:
            raise SpecError(
                "InvalidRegex",
                f"spec.privacy.extraPatterns[{i}] nests groups {depth} deep, at most {MAX_GROUP_DEPTH}",
            )
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as e:  # the agent's check_regexes catches these too
            raise SpecError(
                "InvalidRegex", f"spec.privacy.extraPatterns[{i}] {pattern!r} does not compile: {e}"
            ) from None
        if why := backtracking_risk(pattern):  # as the agent's check_regexes
            raise SpecError(
                "InvalidRegex", f"spec.privacy.extraPatterns[{i}] {BACKTRACKING_ADVICE.format(why=why)}"
            )
    address = model.tetragon.address
    if "\0" in address:  # the agents refuse the config rendered from it (config_base.to_text): all exit 2
        raise SpecError("InvalidSpec", f"spec.tetragon.address {shown(address)}: an address holds no NUL")
    if address.startswith("unix://"):
        if not address[len("unix://") :].startswith("/"):
            raise SpecError(
                "InvalidSpec", f"spec.tetragon.address {shown(address)}: unix:// needs an absolute path"
            )
    else:
        host, sep, port = address.rpartition(":")  # a port of 1 to 5 ASCII digits, as the CRD's pattern
        if not sep or not host or not _PORT_RE.fullmatch(port) or not 0 < int(port) < 65536:
            raise SpecError(
                "InvalidSpec", f"spec.tetragon.address {shown(address)}: expected HOST:PORT or unix:///path"
            )
        if len(address) > MAX_ADDRESS:  # the CRD's maxLength (a unix:// path holds at most 107 bytes)
            raise SpecError(
                "InvalidSpec", f"spec.tetragon.address {shown(address)}: at most {MAX_ADDRESS} characters"
            )
    if SECONDS_PER_DAY % (window := model.hot_symbols.window_seconds):  # the agent refuses it too
        raise SpecError(
            "InvalidSpec",
            f"spec.hotSymbols.windowSeconds {window} does not divide a day (86400 s): windows would "
            "straddle midnight; give a divisor of 86400 (e.g. 60, 300, 3600)",
        )
    for part, quantities in (
        ("requests", model.agent.resources.requests),
        ("limits", model.agent.resources.limits),
    ):
        for key, q in quantities.items():
            if isinstance(q, str) and not re.fullmatch(QUANTITY_PATTERN, q):
                raise SpecError("InvalidSpec", f"spec.agent.resources.{part}.{key}: {q!r} is not a quantity")
    for key, value in model.agent.node_selector.items():
        check_label_key(key, where="spec.agent.nodeSelector")
        check_label_value(value, where=f"spec.agent.nodeSelector[{key}]")
    for i, t in enumerate(model.agent.tolerations or ()):
        if t.operator == "Exists" and t.value:
            raise SpecError("InvalidSpec", f"spec.agent.tolerations[{i}]: operator Exists takes no value")
        if not t.key and t.operator != "Exists":
            raise SpecError("InvalidSpec", f"spec.agent.tolerations[{i}]: an empty key needs operator Exists")
        if len(t.key or "") > MAX_TOLERATION_KEY or len(t.value or "") > MAX_TOLERATION_VALUE:
            raise SpecError(
                "InvalidSpec",
                f"spec.agent.tolerations[{i}]: a key holds at most {MAX_TOLERATION_KEY} characters, "
                f"a value at most {MAX_TOLERATION_VALUE}",
            )
    caps = model.agent.capabilities or ()
    if len(set(caps)) != len(caps):
        raise SpecError("DuplicateEntry", "spec.agent.capabilities lists a capability twice")
    runtime = model.container_runtime
    if runtime is not None and (problem := socket_path_problem(runtime.socket)):
        raise SpecError(
            "InvalidSocketPath", f"spec.containerRuntime.socketPath {shown(runtime.socket)}: {problem}"
        )
    if problem := tetragon_socket_problem(address, None if runtime is None else runtime.socket):
        raise SpecError("InvalidSocketPath", f"spec.tetragon.address {shown(address)}: {problem}")
    return model


def _check_function(i: int, fn: FunctionSpec) -> None:
    at = f"spec.functions[{i}]"
    if (fn.binary_path is None) == (fn.purl is None):
        raise SpecError("InvalidFunction", f"{at}: set exactly one of binaryPath and purl")
    if fn.binary_path is not None:
        p = fn.binary_path
        if len(p) > MAX_BINARY_PATH or not _BINARY_PATH_RE.fullmatch(p):
            raise SpecError(
                "InvalidFunction",
                f"{at}.binaryPath {shown(p)}: expected an absolute, normalized path on the node "
                f"(no '..', '.', '//', trailing '/' or NUL; at most {MAX_BINARY_PATH} characters)",
            )
    if fn.purl is not None:
        if "\0" in fn.purl:  # packageurl keeps it; the agents' probe-config reader refuses the whole file
            raise SpecError("InvalidPurl", f"{at}.purl {fn.purl!r}: a package URL holds no NUL")
        if "\n" in fn.purl or len(fn.purl) > MAX_PURL:  # as the CRD's pattern and maxLength
            raise SpecError(
                "InvalidPurl", f"{at}.purl {shown(fn.purl)}: one line of at most {MAX_PURL} characters"
            )
        try:
            purl = PackageURL.from_string(fn.purl)
        except ValueError as e:
            raise SpecError("InvalidPurl", f"{at}.purl {fn.purl!r}: {e}") from None
        if not purl.name:
            raise SpecError("InvalidPurl", f"{at}.purl {fn.purl!r}: no package name")
    for j, sym in enumerate(fn.symbols):
        if not _SYMBOL_RE.fullmatch(sym):
            raise SpecError("InvalidFunction", f"{at}.symbols[{j}] {sym!r}: a symbol is one word")
        if "\0" in sym:  # \S matches it; an ELF symbol name ends at it, and the agents refuse it
            raise SpecError("InvalidFunction", f"{at}.symbols[{j}] {sym!r}: a symbol holds no NUL")
    if len(set(fn.symbols)) != len(fn.symbols):
        raise SpecError("DuplicateEntry", f"{at}.symbols lists a symbol twice")


def parse_policy_spec(spec: Mapping[str, Any], *, cluster: bool) -> PolicySpec:
    """Validate an (Cluster)ObservationPolicy ``spec``; raises SpecError with a condition reason."""
    if not cluster and isinstance(spec, Mapping) and spec.get("namespaceSelector") is not None:
        raise SpecError(
            "NamespaceSelectorNotAllowed",
            "spec.namespaceSelector: an ObservationPolicy selects pods of its own namespace; "
            "use a ClusterObservationPolicy to select namespaces",
        )
    model: PolicySpec = _validate(PolicySpec, spec)
    _check_selector(model.pod_selector, where="spec.podSelector", reserved=RESERVED_POD_LABEL_KEYS)
    if model.namespace_selector is not None:
        _check_selector(model.namespace_selector, where="spec.namespaceSelector")
    for i, name in enumerate(model.syscalls):
        if name not in KNOWN_SYSCALLS:
            hint = ""
            if name.startswith(("sys_", "__x64_sys_", "__arm64_sys_")):
                hint = f" (write the bare name, e.g. {name.split('sys_', 1)[1]!r})"
            raise SpecError(
                "UnknownSyscall",
                f"spec.syscalls[{i}] {name!r} is not a Linux system call on x86_64 or arm64 "
                f"(this version's tables: Linux {TABLE_RELEASE} and earlier){hint}",
            )
    if len(set(model.syscalls)) != len(model.syscalls):
        raise SpecError("DuplicateEntry", "spec.syscalls lists a system call twice")
    for i, fn in enumerate(model.functions):
        _check_function(i, fn)
    keys = [(fn.binary_path, fn.purl) for fn in model.functions]
    if len(set(keys)) != len(keys):
        raise SpecError("DuplicateEntry", "spec.functions names the same binaryPath or purl twice")
    if model.rate_limit is not None:
        rate_limit_seconds(model.rate_limit)
    root = model.tetragon_host_root
    if root and (not root.startswith("/") or root.endswith("/")):
        raise SpecError(
            "InvalidSpec",
            f"spec.tetragonHostRoot {root!r}: an absolute path without a trailing slash, or empty",
        )
    return model
