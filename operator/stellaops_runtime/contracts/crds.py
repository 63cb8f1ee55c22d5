"""Our custom resources as plain data: names, well-known labels, and validated spec models.

The CRD manifests (``manifests/crds/``) reject most invalid input at the API
server through their OpenAPI schemas and CEL rules. This module is the second
line: ``parse_observer_spec`` and ``parse_policy_spec`` turn the ``spec`` of a
custom resource into frozen models and raise :class:`SpecError` for what a
schema cannot say (a regular expression that does not compile, a syscall no
kernel has, selectors that can never match, a PURL that does not parse) and,
because kmock and older API servers do not evaluate CEL, for every CEL rule of
the CRDs too. ``SpecError.reason`` is the CamelCase reason the operator puts
in the resource's ``Ready=False`` condition.

Keys are the camelCase names of the CRDs; models are populated by alias and
expose snake_case attributes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from packageurl import PackageURL
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

# The agent reads these two too, without the CRD models: defined in contracts/posture.py.
# "observe-off" is "true" when the pod opted out with its observe-level annotation (None).
from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION as OBSERVE_LEVEL_ANNOTATION
from stellaops_runtime.contracts.posture import OBSERVE_OFF_LABEL
from stellaops_runtime.contracts.syscalls import KNOWN_SYSCALLS
from stellaops_runtime.contracts.tcp_state import FIELD as TCP_STATE_FIELD
from stellaops_runtime.image import IMAGE

GROUP = "stellaops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

OBSERVER_KIND, OBSERVER_PLURAL = "RuntimeObserver", "runtimeobservers"  # cluster-scoped
POLICY_KIND, POLICY_PLURAL = "ObservationPolicy", "observationpolicies"  # namespaced
CLUSTER_POLICY_KIND, CLUSTER_POLICY_PLURAL = "ClusterObservationPolicy", "clusterobservationpolicies"
NODE_KIND, NODE_PLURAL = "ObservationNode", "observationnodes"  # cluster-scoped, one per node

TETRAGON_GROUP = "cilium.io"
TETRAGON_VERSION = "v1alpha1"
TETRAGON_API_VERSION = f"{TETRAGON_GROUP}/{TETRAGON_VERSION}"
TETRAGON_POLICY_KIND, TETRAGON_POLICY_PLURAL = "TracingPolicy", "tracingpolicies"
TETRAGON_NAMESPACED_KIND, TETRAGON_NAMESPACED_PLURAL = "TracingPolicyNamespaced", "tracingpoliciesnamespaced"

POSTURE_ANNOTATION = "stellaops.io/observe-posture"  # written by the operator: effective posture
POSTURE_REASON_ANNOTATION = "stellaops.io/observe-posture-reason"
OBSERVE_LABEL = "stellaops.io/observe"  # "true" exactly when eBPF tracing applies (ActiveTracing or more)
OBSERVE_DEEP_LABEL = "stellaops.io/observe-deep"  # "true" at EbpfDeep or more
OBSERVE_FULL_LABEL = "stellaops.io/observe-full"  # "true" at FullInstrumentation
LEVEL_LABEL_KEYS = (OBSERVE_LABEL, OBSERVE_DEEP_LABEL, OBSERVE_FULL_LABEL)
# Written by the operator from the computed posture: a policy's podSelector may not use them.
RESERVED_POD_LABEL_KEYS = (*LEVEL_LABEL_KEYS, OBSERVE_OFF_LABEL)
MANAGED_BY = ("app.kubernetes.io/managed-by", "stellaops-runtime")
FEATURE_LABEL_PREFIX = "feature.stellaops.io/"
CONFIG_HASH_ANNOTATION = "stellaops.io/config-hash"  # on the agent pod template
OBSERVER_LABEL = "stellaops.io/observer"  # on every object a RuntimeObserver owns
POLICY_KIND_LABEL = "stellaops.io/policy-kind"  # on rendered Tetragon policies
POLICY_NAME_LABEL = "stellaops.io/policy-name"
POLICY_NAMESPACE_LABEL = "stellaops.io/policy-namespace"

DEFAULT_AGENT_NAMESPACE = "stellaops-agent"  # privileged PSA; the operator runs in stellaops-system
DEFAULT_TETRAGON_ADDRESS = "unix:///var/run/tetragon/tetragon.sock"  # Helm default since v1.7
# Where the node's root filesystem appears inside Tetragon's own container (the
# Helm chart mounts the host's /proc at /procRoot): uprobe paths are resolved
# by Tetragon in its filesystem view, so a host binary /usr/bin/x is
# /procRoot/1/root/usr/bin/x to it.
DEFAULT_TETRAGON_HOST_ROOT = "/procRoot/1/root"

# The posture levels in order (controller.posture.Posture has the same values).
LEVELS = ("None", "Passive", "ActiveTracing", "EbpfDeep", "FullInstrumentation")
Level = Literal["None", "Passive", "ActiveTracing", "EbpfDeep", "FullInstrumentation"]

# Every reason SpecError can carry (condition reasons, CamelCase).
SPEC_ERROR_REASONS = (
    "InvalidSpec",  # wrong type, unknown key, out of range, missing required field
    "InvalidRegex",
    "UnknownSyscall",
    "ConflictingSelectors",
    "InvalidLabelSelector",
    "InvalidFunction",  # a function entry without exactly one of binaryPath / purl
    "InvalidPurl",
    "InvalidRateLimit",
    "NamespaceSelectorNotAllowed",  # namespaceSelector on the namespaced kind
    "DuplicateEntry",
)

# Tetragon's Post rateLimit: a period in seconds (bare or "s"), minutes or hours.
RATE_LIMIT_PATTERN = r"^[1-9][0-9]{0,5}[smh]?$"
_RATE_LIMIT_RE = re.compile(RATE_LIMIT_PATTERN)
_RATE_LIMIT_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600}

# Kubernetes label syntax (apimachinery validation: qualified names and values).
_LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_SYMBOL_RE = re.compile(r"^\S{1,1024}$")


class SpecError(ValueError):
    """A custom resource's spec is invalid; ``reason`` is the condition reason, ``message`` says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


# ---------------------------------------------------------------- shared pieces


class LabelSelectorRequirement(_Model):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()


class LabelSelector(_Model):
    """A Kubernetes LabelSelector; the empty selector matches everything."""

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: tuple[LabelSelectorRequirement, ...] = Field(default=(), alias="matchExpressions")

    def to_dict(self) -> dict[str, Any]:
        """The selector as Kubernetes writes it (empty parts left out, so ``{}`` selects all)."""
        out: dict[str, Any] = {}
        if self.match_labels:
            out["matchLabels"] = dict(sorted(self.match_labels.items()))
        if self.match_expressions:
            out["matchExpressions"] = [
                {"key": r.key, "operator": r.operator, **({"values": list(r.values)} if r.values else {})}
                for r in self.match_expressions
            ]
        return out


# ---------------------------------------------------------------- RuntimeObserver


class Toleration(_Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: StrictInt | None = Field(None, alias="tolerationSeconds")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


Quantity = str | StrictInt
# Kubernetes resource quantities (apimachinery's serialization format).
_NUMBER = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
QUANTITY_PATTERN = rf"^(\+|-)?{_NUMBER}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_NUMBER}))?$"


DEFAULT_REQUESTS: dict[str, Quantity] = {"cpu": "100m", "memory": "128Mi"}
DEFAULT_LIMITS: dict[str, Quantity] = {"memory": "512Mi"}


class Resources(_Model):
    requests: dict[str, Quantity] = Field(default_factory=lambda: dict(DEFAULT_REQUESTS))
    limits: dict[str, Quantity] = Field(default_factory=lambda: dict(DEFAULT_LIMITS))


# Linux capabilities a container can add, as Kubernetes writes them (without ``CAP_``).
LINUX_CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)  # fmt: skip
Capability = Literal[
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]  # fmt: skip


class AgentSpec(_Model):
    # Unset: this release's image (stellaops_runtime.image.IMAGE), so agents follow operator upgrades.
    image: str = Field(IMAGE, min_length=1)
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field("IfNotPresent", alias="pullPolicy")
    resources: Resources = Field(default_factory=Resources)  # type: ignore[arg-type]
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    # None: tolerate every taint (a node agent belongs on every node); [] tolerates none.
    tolerations: tuple[Toleration, ...] | None = None
    priority_class_name: str | None = Field(None, alias="priorityClassName")
    # None: the default of the agent's source (controller.render_agent.default_capabilities);
    # else exactly these are added, all others dropped.
    capabilities: tuple[Capability, ...] | None = None


class TetragonSpec(_Model):
    address: str = DEFAULT_TETRAGON_ADDRESS
    timeout_seconds: float = Field(5.0, alias="timeoutSeconds", gt=0, le=300)


class HotSymbolsSpec(_Model):
    window_seconds: StrictInt = Field(60, alias="windowSeconds", ge=1, le=86_400)
    min_confidence_threshold: float = Field(0.2, alias="minConfidenceThreshold", ge=0.0, le=1.0)
    flush_interval_seconds: float = Field(10.0, alias="flushIntervalSeconds", gt=0, le=3_600)


class PrivacySpec(_Model):
    redact_arguments: StrictBool = Field(True, alias="redactArguments")
    default_patterns: StrictBool = Field(True, alias="defaultPatterns")
    extra_patterns: tuple[str, ...] = Field(default=(), alias="extraPatterns")
    symbol_id_only: StrictBool = Field(False, alias="symbolIdOnly")
    allowed_namespaces: tuple[str, ...] = Field(default=(), alias="allowedNamespaces")


class SecretKeyRef(_Model):
    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


class StoreSpec(_Model):
    secret_ref: SecretKeyRef = Field(alias="secretRef")


class MetricsSpec(_Model):
    port: StrictInt = Field(8080, ge=1, le=65535)


class RuntimeObserverSpec(_Model):
    agent: AgentSpec = Field(default_factory=AgentSpec)  # type: ignore[arg-type]
    agent_namespace: str = Field(DEFAULT_AGENT_NAMESPACE, alias="agentNamespace")
    tetragon: TetragonSpec = Field(default_factory=TetragonSpec)  # type: ignore[arg-type]
    hot_symbols: HotSymbolsSpec = Field(default_factory=HotSymbolsSpec, alias="hotSymbols")  # type: ignore[arg-type]
    privacy: PrivacySpec = Field(default_factory=PrivacySpec)  # type: ignore[arg-type]
    store: StoreSpec
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)  # type: ignore[arg-type]


# ---------------------------------------------------------------- policies


class FunctionSpec(_Model):
    """One function list entry: a node-visible binary path or a package URL, plus symbols."""

    binary_path: str | None = Field(None, alias="binaryPath")
    purl: str | None = None
    symbols: tuple[str, ...] = Field(min_length=1)


class StackTracesSpec(_Model):
    kernel: StrictBool = False
    user: StrictBool = False


class PolicySpec(_Model):
    pod_selector: LabelSelector = Field(default_factory=LabelSelector, alias="podSelector")  # type: ignore[arg-type]
    namespace_selector: LabelSelector | None = Field(None, alias="namespaceSelector")
    max_level: Level = Field("EbpfDeep", alias="maxLevel")
    syscalls: tuple[str, ...] = ()
    functions: tuple[FunctionSpec, ...] = ()
    stack_traces: StackTracesSpec = Field(default_factory=StackTracesSpec, alias="stackTraces")  # type: ignore[arg-type]
    rate_limit: str | None = Field(None, alias="rateLimit")
    tcp_state: StrictBool = Field(False, alias=TCP_STATE_FIELD)  # contracts/tcp_state.py
    tetragon_host_root: str = Field(DEFAULT_TETRAGON_HOST_ROOT, alias="tetragonHostRoot")

    @property
    def rate_limit_seconds(self) -> int | None:
        """The rate limit period in seconds (None when unlimited)."""
        return rate_limit_seconds(self.rate_limit) if self.rate_limit else None


# ---------------------------------------------------------------- parsing


def _format_validation(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        path = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"spec.{path}: {msg}" if path != "spec" else f"spec: {msg}")
    return "; ".join(parts)


def _validate(model: type[_Model], spec: Mapping[str, Any] | None) -> Any:
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise SpecError("InvalidSpec", f"spec must be an object, got {type(spec).__name__}")
    try:
        return model.model_validate(dict(spec))
    except ValidationError as e:
        raise SpecError("InvalidSpec", _format_validation(e)) from None


def rate_limit_seconds(text: str) -> int:
    """Seconds of a Tetragon rateLimit period (``"30"``, ``"30s"``, ``"5m"``, ``"1h"``); raises SpecError."""
    if not _RATE_LIMIT_RE.match(text):
        raise SpecError(
            "InvalidRateLimit",
            f"rateLimit {text!r} is not a period: a positive integer of seconds, optionally followed by "
            "s, m or h (e.g. 30s, 1m, 1h)",
        )
    unit = text[-1] if text[-1] in "smh" else ""
    return int(text[: len(text) - len(unit)]) * _RATE_LIMIT_UNIT[unit]


def check_label_key(key: str, *, where: str) -> None:
    """Kubernetes qualified-name rules for a label key; raises SpecError(InvalidLabelSelector)."""
    prefix, slash, name = key.rpartition("/")
    ok = bool(name) and len(name) <= 63 and _LABEL_NAME_RE.match(name) is not None
    if slash:
        ok = ok and 0 < len(prefix) <= 253 and _DNS_SUBDOMAIN_RE.match(prefix) is not None
    if not ok:
        raise SpecError("InvalidLabelSelector", f"{where}: {key!r} is not a valid label key")


def check_label_value(value: str, *, where: str) -> None:
    if len(value) > 63 or not _LABEL_VALUE_RE.match(value):
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
    if not re.match(DNS_LABEL_PATTERN, model.agent_namespace) or len(model.agent_namespace) > 63:
        raise SpecError(
            "InvalidSpec", f"spec.agentNamespace {model.agent_namespace!r} is not a namespace name"
        )
    for i, pattern in enumerate(model.privacy.extra_patterns):
        try:
            re.compile(pattern)
        except re.error as e:
            raise SpecError(
                "InvalidRegex", f"spec.privacy.extraPatterns[{i}] {pattern!r} does not compile: {e}"
            ) from None
    address = model.tetragon.address
    if address.startswith("unix://"):
        if not address[len("unix://") :].startswith("/"):
            raise SpecError(
                "InvalidSpec", f"spec.tetragon.address {address!r}: unix:// needs an absolute path"
            )
    else:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SpecError(
                "InvalidSpec", f"spec.tetragon.address {address!r}: expected HOST:PORT or unix:///path"
            )
    for part, quantities in (
        ("requests", model.agent.resources.requests),
        ("limits", model.agent.resources.limits),
    ):
        for key, q in quantities.items():
            if isinstance(q, str) and not re.match(QUANTITY_PATTERN, q):
                raise SpecError("InvalidSpec", f"spec.agent.resources.{part}.{key}: {q!r} is not a quantity")
    for key, value in model.agent.node_selector.items():
        check_label_key(key, where="spec.agent.nodeSelector")
        check_label_value(value, where=f"spec.agent.nodeSelector[{key}]")
    for i, t in enumerate(model.agent.tolerations or ()):
        if t.operator == "Exists" and t.value:
            raise SpecError("InvalidSpec", f"spec.agent.tolerations[{i}]: operator Exists takes no value")
        if not t.key and t.operator != "Exists":
            raise SpecError("InvalidSpec", f"spec.agent.tolerations[{i}]: an empty key needs operator Exists")
    caps = model.agent.capabilities or ()
    if len(set(caps)) != len(caps):
        raise SpecError("DuplicateEntry", "spec.agent.capabilities lists a capability twice")
    return model


def _check_function(i: int, fn: FunctionSpec) -> None:
    at = f"spec.functions[{i}]"
    if (fn.binary_path is None) == (fn.purl is None):
        raise SpecError("InvalidFunction", f"{at}: set exactly one of binaryPath and purl")
    if fn.binary_path is not None:
        p = fn.binary_path
        if not p.startswith("/") or "\0" in p or "/../" in p + "/" or "/./" in p + "/":
            raise SpecError(
                "InvalidFunction", f"{at}.binaryPath {p!r}: expected an absolute, normalized path on the node"
            )
    if fn.purl is not None:
        try:
            purl = PackageURL.from_string(fn.purl)
        except ValueError as e:
            raise SpecError("InvalidPurl", f"{at}.purl {fn.purl!r}: {e}") from None
        if not purl.name:
            raise SpecError("InvalidPurl", f"{at}.purl {fn.purl!r}: no package name")
    for j, sym in enumerate(fn.symbols):
        if not _SYMBOL_RE.match(sym):
            raise SpecError("InvalidFunction", f"{at}.symbols[{j}] {sym!r}: a symbol is one word")
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
                f"spec.syscalls[{i}] {name!r} is not a Linux system call on x86_64 or arm64{hint}",
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
