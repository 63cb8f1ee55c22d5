"""Which pods each policy of the probe ConfigMap selects, and which native probes it asks for there.

On a Tetragon node a policy's probes reach only the pods its rendered
TracingPolicies select (docs/operator.md, "Rendering"): the policy's
``podSelector`` plus the level label its probes need, within the policy's
namespace (ObservationPolicy) or the namespaces its ``namespaceSelector``
matches (ClusterObservationPolicy). The probe ConfigMap entry
(controller/render_policy.py) carries the same facts: ``podSelector`` already
holds ``stellaops.io/observe=true`` (what syscalls and TCP state need) and
the requirements on ``kubernetes.io/metadata.name`` folded in as Tetragon's
pseudo-label ``k8s:io.kubernetes.pod.namespace``; ``namespaceSelector`` is the
user's, whole. Functions (uprobes, named by ``binaryPath`` or ``purl``) also
need ``stellaops.io/observe-deep=true``, as their rendered object requires.

``parse_policies`` reads those entries into :class:`SelectionPolicy` values.
An entry of the wrong shape selects nothing and is counted: it must not cost
the other policies their selection, nor widen its own. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stellaops_runtime.contracts.crd_names import CLUSTER_POLICY_KIND, OBSERVE_DEEP_LABEL, POLICY_KIND
from stellaops_runtime.contracts.label_selector import Selector, SelectorError, parse_selector
from stellaops_runtime.native.policy_config import DEFAULT_HOST_ROOT, MAX_POD_FIELD

# Tetragon's podSelector names a pod's namespace through this pseudo-label
# (controller.policy_selectors.NAMESPACE_PSEUDO_LABEL; a test checks they agree).
NAMESPACE_PSEUDO_LABEL = "k8s:io.kubernetes.pod.namespace"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace
DEEP_LABEL = OBSERVE_DEEP_LABEL  # what uprobes need besides the entry's podSelector
MAX_POLICIES = 4096


class EntryError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SelectionPolicy:
    key: str  # ``<kind>/<namespace>/<name>``, the ConfigMap key
    kind: str
    namespace: str  # "" for a ClusterObservationPolicy
    pod_selector: Selector  # includes stellaops.io/observe=true
    namespace_selector: Selector | None  # ClusterObservationPolicy only; None: every namespace
    syscalls: frozenset[str]
    tcp_state: bool
    paths: frozenset[tuple[str, str]]  # (node path as events report it, symbol) of binaryPath functions
    purls: frozenset[tuple[str, str]]  # (purl, symbol)
    # stackTraces of its syscalls (the operator sets them only at EbpfDeep): Tetragon's stacks object
    # selects stellaops.io/observe-deep=true, so pods without that label get the calls without stacks.
    kernel_stacks: bool = False
    user_stacks: bool = False

    def selects(
        self, namespace: str, pod_labels: Mapping[str, str], namespace_labels: Mapping[str, str] | None
    ) -> bool:
        """Whether this policy's syscall/TCP probes reach a pod (``pod_labels`` include the pseudo-label)."""
        if self.kind == POLICY_KIND:
            if namespace != self.namespace:
                return False
        elif self.namespace_selector is not None:
            ns_labels = {**(namespace_labels or {}), NAMESPACE_NAME_LABEL: namespace}
            if not self.namespace_selector.matches(ns_labels):
                return False
        return self.pod_selector.matches(pod_labels)


def _strings(v: Any, where: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(s, str) and s and "\x00" not in s for s in v):
        raise EntryError(f"{where}: expected a list of non-empty strings")
    return v


def parse_entry(key: str, entry: Any, *, host_root: str = DEFAULT_HOST_ROOT) -> SelectionPolicy:
    """One probe ConfigMap entry; raises EntryError (or SelectorError) when it has the wrong shape."""
    if not isinstance(entry, Mapping):
        raise EntryError(f"{key}: expected an entry object, got {type(entry).__name__}")
    kind = entry.get("kind")
    namespace = entry.get("namespace") or ""
    if kind not in (POLICY_KIND, CLUSTER_POLICY_KIND):
        raise EntryError(f"{key}.kind: {str(kind)[:64]!r} is not a policy kind")
    if not isinstance(namespace, str) or len(namespace) > MAX_POD_FIELD or "\x00" in namespace:
        raise EntryError(f"{key}.namespace: expected a namespace name")
    if kind == POLICY_KIND and not namespace:
        raise EntryError(f"{key}.namespace: an ObservationPolicy selects in its namespace; none given")
    pods = parse_selector(entry.get("podSelector"), where=f"{key}.podSelector")
    if pods is None:  # the operator always writes one (with the level label): a missing one selects nothing
        raise EntryError(f"{key}.podSelector: missing")
    namespaces = None
    if kind == CLUSTER_POLICY_KIND:
        namespaces = parse_selector(entry.get("namespaceSelector"), where=f"{key}.namespaceSelector")
    syscalls = []
    for i, sc in enumerate(entry.get("syscalls") or []):
        if not isinstance(sc, Mapping) or not isinstance(sc.get("name"), str):
            raise EntryError(f"{key}.syscalls[{i}]: expected {{name, ...}}")
        syscalls.append(sc["name"])
    paths: set[tuple[str, str]] = set()
    purls: set[tuple[str, str]] = set()
    functions = entry.get("functions") or []
    if not isinstance(functions, list):
        raise EntryError(f"{key}.functions: expected a list")
    for i, fn in enumerate(functions):
        where = f"{key}.functions[{i}]"
        if not isinstance(fn, Mapping):
            raise EntryError(f"{where}: expected an object")
        symbols = _strings(fn.get("symbols"), f"{where}.symbols")
        path, purl = fn.get("binaryPath"), fn.get("purl")
        if isinstance(path, str) and path.startswith("/") and "\x00" not in path and purl is None:
            paths.update((host_root + path, s) for s in symbols)
        elif isinstance(purl, str) and purl and "\x00" not in purl and path is None:
            purls.update((purl, s) for s in symbols)
        else:
            raise EntryError(f"{where}: expected exactly one of binaryPath (absolute) and purl")
    tcp = entry.get("tcpState", False)
    if type(tcp) is not bool:
        raise EntryError(f"{key}.tcpState: expected true or false")
    stacks = entry.get("stackTraces") or {}
    flags = (stacks.get("kernel", False), stacks.get("user", False)) if isinstance(stacks, Mapping) else ()
    if len(flags) != 2 or any(type(f) is not bool for f in flags):
        raise EntryError(f"{key}.stackTraces: expected {{kernel: bool, user: bool}}")
    return SelectionPolicy(
        key=key, kind=kind, namespace=namespace if kind == POLICY_KIND else "", pod_selector=pods,
        namespace_selector=namespaces, syscalls=frozenset(syscalls), tcp_state=tcp,
        paths=frozenset(paths), purls=frozenset(purls),
        kernel_stacks=flags[0], user_stacks=flags[1],
    )  # fmt: skip


def parse_policies(
    policies: Mapping[str, Any], *, host_root: str = DEFAULT_HOST_ROOT
) -> tuple[tuple[SelectionPolicy, ...], list[str]]:
    """Every usable entry (sorted by key) and a message per entry left out (it then selects nothing)."""
    out: list[SelectionPolicy] = []
    bad: list[str] = []
    for n, key in enumerate(sorted(policies)):
        if n >= MAX_POLICIES:
            bad.append(f"more than {MAX_POLICIES} policies: {len(policies) - MAX_POLICIES} left out")
            break
        try:
            out.append(parse_entry(str(key)[:600], policies[key], host_root=host_root))
        except (EntryError, SelectorError) as e:
            bad.append(str(e)[:300])
    return tuple(out), bad


def pod_match_labels(namespace: str, labels: Mapping[str, str]) -> dict[str, str]:
    """A pod's labels as a rendered podSelector sees them: its own plus the namespace pseudo-label."""
    return {**labels, NAMESPACE_PSEUDO_LABEL: namespace}
