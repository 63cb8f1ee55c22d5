"""Our custom resources' specs as frozen models, and the error a spec that is not valid raises.

Keys are the camelCase names of the CRDs; models are populated by alias and
expose snake_case attributes. Pydantic checks types, ranges and unknown keys
here; what a schema cannot say is checked in ``contracts/crd_validation.py``,
which turns every failure into a :class:`SpecError`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from stellaops_runtime.contracts.crd_names import (
    DEFAULT_AGENT_NAMESPACE,
    DEFAULT_TETRAGON_ADDRESS,
    DEFAULT_TETRAGON_HOST_ROOT,
    DEFAULT_TETRAGON_METRICS_URL,
    Level,
)
from stellaops_runtime.contracts.runtime_socket import DEFAULT_RUNTIME_SOCKETS, RuntimeKind
from stellaops_runtime.contracts.tcp_state import FIELD as TCP_STATE_FIELD
from stellaops_runtime.image import IMAGE

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
    "InvalidSocketPath",  # spec.containerRuntime.socketPath (contracts/runtime_socket.py)
)

# Tetragon's Post rateLimit: a period in seconds (bare or "s"), minutes or hours.
RATE_LIMIT_PATTERN = r"^[1-9][0-9]{0,5}[smh]?$"
_RATE_LIMIT_RE = re.compile(RATE_LIMIT_PATTERN)
_RATE_LIMIT_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600}


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
# A 1,000,000-key storm with the store lagging peaks at ~650-690 MB (the outage buffer at its
# default bound, maxPendingRows; docs/benchmarks.md, "Eleventh pass"): 512Mi would OOM-kill it.
DEFAULT_LIMITS: dict[str, Quantity] = {"memory": "1Gi"}


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
    # None: the default of the agent's source (controller.agent_capabilities.default_capabilities);
    # else exactly these are added, all others dropped.
    capabilities: tuple[Capability, ...] | None = None


class TetragonSpec(_Model):
    address: str = DEFAULT_TETRAGON_ADDRESS
    timeout_seconds: float = Field(5.0, alias="timeoutSeconds", gt=0, le=300)
    # Tetragon's drop counters, read as gaps (sources/tetragon_metrics.py); "" turns the scrape off.
    metrics_url: str = Field(
        DEFAULT_TETRAGON_METRICS_URL,
        alias="metricsUrl",
        max_length=1024,
        pattern=r"^(https?://[^\x00-\x20\x7f]+)?$",
    )


class ContainerRuntimeSpec(_Model):
    """Where the node's container runtime socket is; the operator mounts it (controller/runtime_socket.py)."""

    kind: RuntimeKind
    # None: the kind's usual socket (DEFAULT_RUNTIME_SOCKETS); checked by contracts/runtime_socket.py.
    socket_path: str | None = Field(None, alias="socketPath")

    @property
    def socket(self) -> str:
        return DEFAULT_RUNTIME_SOCKETS[self.kind] if self.socket_path is None else self.socket_path


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
    # None: containerd's /run/containerd and CRI-O's /var/run/crio are mounted, the agent picks (auto).
    container_runtime: ContainerRuntimeSpec | None = Field(None, alias="containerRuntime")
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


def rate_limit_seconds(text: str) -> int:
    """Seconds of a Tetragon rateLimit period (``"30"``, ``"30s"``, ``"5m"``, ``"1h"``); raises SpecError."""
    if not _RATE_LIMIT_RE.fullmatch(text):  # fullmatch: "30s\n" passed match, then int() raised
        raise SpecError(
            "InvalidRateLimit",
            f"rateLimit {text!r} is not a period: a positive integer of seconds, optionally followed by "
            "s, m or h (e.g. 30s, 1m, 1h)",
        )
    unit = text[-1] if text[-1] in "smh" else ""
    return int(text[: len(text) - len(unit)]) * _RATE_LIMIT_UNIT[unit]
