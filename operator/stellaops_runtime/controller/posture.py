"""A pod's effective observation posture: the annotation, the selecting policies and the node.

Levels, lowest first: None < Passive < ActiveTracing < EbpfDeep < FullInstrumentation.

- ``Passive``: process exec/exit (and loader) events only, the base sensor; no pod-specific probes.
- ``ActiveTracing``: plus the syscall probes of the policies that select the pod.
- ``EbpfDeep``: plus uprobes on the listed functions and kernel/user stack traces.
- ``FullInstrumentation``: plus USDT / language-runtime probes.

The effective posture is ``min(requested, policy maximum, node ceiling)``:
*requested* is the pod's ``stellaops.io/observe-level`` annotation, or, without
one, whatever the selecting policies allow (policies opt pods in; the
annotation lowers the level or opts out with ``None``, or with ``off``,
``false``, ``no``, ``0``, ``disabled``, ``opt-out``...: any value that is
not a level fails closed to ``None``, with a Warning Event, since a typo
must never observe a pod that asked not to be). The *policy maximum*
is the highest ``maxLevel`` among the policies selecting the pod; with none,
it is ``Passive`` (process events are collected on every node that runs an
agent). The *node ceiling* comes from its ObservationNode (what the agent
detected); a node without one is ``None``. The reason names which of the
three set the result (annotation, then policy, then node, on ties).

The node ceiling is what the node's *working* source delivers now, never
what its kernel could do: Tetragon answering on the node (``source:
tetragon`` and ``tetragon.reachable``) gives the capability-based ceiling;
Tetragon's event stream still delivering while its API does not answer gives
``Passive`` (only when the agent says so in ``status.maxPosture``); anything
else (``source: none``, an agent of an older version reporting ``source:
tetragon`` beside ``reachable: false``) gives ``None``. The ``native``
source (the agent's own BCC probes, while Tetragon is unreachable) gives
what the agent's capability report says they deliver (``status.maxPosture``,
from native/detect.py), and ``None`` when the agent reports no ceiling.
An agent's own ``status.maxPosture`` can lower the ceiling further, never
raise it. A node whose agent stopped heart-beating
(``stale``) is ``None``, whatever it last said.

The **level labels** say which probes may select a pod, one label per level
reached (``level_labels``): ``stellaops.io/observe=true`` at ActiveTracing or
more, ``stellaops.io/observe-deep=true`` at EbpfDeep or more,
``stellaops.io/observe-full=true`` at FullInstrumentation. Each rendered
Tetragon object requires the label of the level its probes need
(``render_policy``), so a pod lowered to ActiveTracing gets a policy's
syscall probes but not its uprobes or stack traces.

A pod whose annotation reads as ``None`` (``read_level``) has **opted out**
(``PostureDecision.opted_out``): besides losing every level label it gets
``stellaops.io/observe-off=true``. Tetragon exports pod labels with every
event but annotations only with ``--enable-pod-annotations``, so this label
is how the agent learns of the opt-out when annotations do not reach it; the
agent drops such a pod's events before they are counted
(``privacy/optout.py``). ``read_level`` (``opts_out``) is the one reading of
the annotation value both sides use, so they agree on spelling, case,
whitespace and invalid values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# The names, not the CRD models: the agent imports this module (NodeCapabilities, for its
# ObservationNode) and must not load pydantic (tests/unit/test_agent_imports.py).
from stellaops_runtime.contracts.crd_names import (
    CLUSTER_POLICY_KIND,
    OBSERVE_DEEP_LABEL,
    OBSERVE_FULL_LABEL,
    OBSERVE_LABEL,
    OBSERVE_LEVEL_ANNOTATION,
    OBSERVE_OFF_LABEL,
    POLICY_KIND,
)
from stellaops_runtime.contracts.posture import (
    ALLOWED_LEVELS,
    OPT_OUT_SPELLINGS,
    Posture,
    parse_level,
    read_level,
)
from stellaops_runtime.contracts.posture import ORDER as _ORDER
from stellaops_runtime.contracts.posture import opts_out as opts_out

if TYPE_CHECKING:
    from stellaops_runtime.contracts.crd_specs import PolicySpec

# One label per level reached (see the module docstring): the key a probe needing that level selects on.
LEVEL_LABELS: tuple[tuple[Posture, str], ...] = (
    (Posture.ACTIVE_TRACING, OBSERVE_LABEL),
    (Posture.EBPF_DEEP, OBSERVE_DEEP_LABEL),
    (Posture.FULL_INSTRUMENTATION, OBSERVE_FULL_LABEL),
)
LEVEL_LABEL_KEYS = tuple(key for _, key in LEVEL_LABELS)
# Every pod label the operator maintains: the level labels and the opt-out label.
POD_LABEL_KEYS = (*LEVEL_LABEL_KEYS, OBSERVE_OFF_LABEL)


def level_labels(posture: Posture) -> dict[str, str]:
    """The level labels a pod at ``posture`` carries (``{}`` below ActiveTracing)."""
    return {key: "true" for level, key in LEVEL_LABELS if posture >= level}


def level_label(level: Posture) -> str:
    """The label a probe that needs ``level`` (ActiveTracing or more) requires on the pod."""
    for at, key in LEVEL_LABELS:
        if at == level:
            return key
    raise ValueError(f"no pod label selects on {level} (probes need ActiveTracing or more)")


def allowed_levels_message() -> str:
    """What the annotation accepts (for the Event posted on a pod with an unknown value)."""
    names = ", ".join(p.value for p in _ORDER)
    return (
        f"{OBSERVE_LEVEL_ANNOTATION} accepts {names} (or {', '.join(ALLOWED_LEVELS)}; any case), "
        f"and {', '.join(OPT_OUT_SPELLINGS)} for None; any other value is read as None (opted out)"
    )


@dataclass(frozen=True, slots=True)
class PolicyView:
    """What posture needs of one ObservationPolicy / ClusterObservationPolicy."""

    kind: str
    namespace: str | None
    name: str
    max_level: Posture
    pod_selector: dict
    namespace_selector: dict | None
    note: str = ""  # why ``max_level`` is lower than the spec's (``in_force``: an object not applied)

    @property
    def ref(self) -> str:
        """``Kind/namespace/name`` or ``Kind/name``, as reasons and statuses name a policy."""
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


def policy_view(*, kind: str, namespace: str | None, name: str, spec: PolicySpec) -> PolicyView:
    """The view of a parsed policy (``kind`` is ObservationPolicy or ClusterObservationPolicy)."""
    if kind not in (POLICY_KIND, CLUSTER_POLICY_KIND):
        raise ValueError(f"not a policy kind: {kind!r}")
    return PolicyView(
        kind=kind,
        namespace=namespace if kind == POLICY_KIND else None,
        name=name,
        max_level=Posture(spec.max_level),
        pod_selector=spec.pod_selector.to_dict(),
        namespace_selector=spec.namespace_selector.to_dict() if spec.namespace_selector is not None else None,
    )


@dataclass(frozen=True, slots=True)
class NodeCapabilities:
    """An ObservationNode's source, detected capabilities and its agent's own ceiling."""

    source: str = ""  # "tetragon" | "native" | "none" | "" (an agent that did not say)
    kernel_version: str = ""
    btf: bool = False
    bpf_permitted: bool = False
    tracepoints: bool = False
    uprobes: bool = False
    kprobes: bool = False
    usdt: bool = False
    ring_buffer: bool = False
    tetragon_reachable: bool = False
    tetragon_version: str = ""
    agent_max: Posture | None = None  # status.maxPosture: the agent's ceiling (None: not reported)
    agent_max_reason: str = ""
    stale: bool = False  # no heartbeat within the operator's stale_after_seconds: nothing it says holds

    @property
    def working_source(self) -> str:
        """The source that delivers events on the node now (``tetragon`` or ``native``, see
        ``ceiling``), else ``none``."""
        if self.ceiling()[0] == Posture.NONE:
            return "none"
        return "native" if self.source == "native" else "tetragon"

    def capability_ceiling(self) -> tuple[Posture, str]:
        """What a working Tetragon on this node can deliver, from the kernel's probe kinds."""
        if not self.uprobes:
            return Posture.ACTIVE_TRACING, "no uprobes"
        if not self.usdt:
            return Posture.EBPF_DEEP, "no USDT probes"
        return Posture.FULL_INSTRUMENTATION, "every probe kind is available"

    def ceiling(self) -> tuple[Posture, str]:
        """The highest posture this node's working source delivers now, and why not more."""
        if self.stale:
            return Posture.NONE, "its agent's heartbeat is stale: nothing it reported can be trusted"
        if self.source == "tetragon" and self.tetragon_reachable:
            level, why = self.capability_ceiling()
        elif self.source == "tetragon" and self.agent_max is not None and self.agent_max >= Posture.PASSIVE:
            level = Posture.PASSIVE
            why = "Tetragon's events arrive but its API does not answer: process events only"
        elif self.source == "native":
            if self.agent_max is None or self.agent_max < Posture.PASSIVE:
                return Posture.NONE, "the native probes report no posture: nothing observes this node"
            return self.agent_max, self.agent_max_reason or "the agent's native probes (BCC) deliver events"
        elif self.source == "tetragon" or not self.tetragon_reachable:
            return Posture.NONE, "Tetragon is unreachable: no source delivers events"
        else:
            return Posture.NONE, "Tetragon answers but the agent receives no events from it (source: none)"
        if self.agent_max is not None and self.agent_max < level:
            return self.agent_max, self.agent_max_reason or f"the agent reports at most {self.agent_max}"
        return level, why


def _bool(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() == "true")


def node_capabilities(observation_node: Mapping[str, Any] | None) -> NodeCapabilities | None:
    """Capabilities from an ObservationNode object (None when there is none: no agent on the node)."""
    if observation_node is None:
        return None
    status = observation_node.get("status")
    if not isinstance(status, Mapping):  # a hand-edited status of the wrong type says nothing
        status = {}
    caps = status.get("capabilities") or {}
    if not isinstance(caps, Mapping):
        caps = {}
    tetragon = caps.get("tetragon") or {}
    if not isinstance(tetragon, Mapping):
        tetragon = {}
    raw_max = status.get("maxPosture")
    agent_max = parse_level(raw_max) if isinstance(raw_max, str) else None
    if raw_max is not None and agent_max is None:
        agent_max = Posture.NONE  # a ceiling we cannot read claims nothing
    return NodeCapabilities(
        source=str(status.get("source") or ""),
        kernel_version=str(caps.get("kernelVersion") or ""),
        btf=_bool(caps.get("btf")),
        bpf_permitted=_bool(caps.get("bpfPermitted")),
        tracepoints=_bool(caps.get("tracepoints")),
        uprobes=_bool(caps.get("uprobes")),
        kprobes=_bool(caps.get("kprobes")),
        usdt=_bool(caps.get("usdt")),
        ring_buffer=_bool(caps.get("ringBuffer")),
        tetragon_reachable=_bool(tetragon.get("reachable")),
        tetragon_version=str(tetragon.get("version") or ""),
        agent_max=agent_max,
        agent_max_reason=str(status.get("maxPostureReason") or "")[:256],
    )


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics; an empty selector matches everything, None matches nothing."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.get("matchExpressions") or ():
        key, op, values = req.get("key"), req.get("operator"), req.get("values") or ()
        present = key in labels
        if op == "In":
            ok = present and labels[key] in values
        elif op == "NotIn":
            ok = not present or labels[key] not in values
        elif op == "Exists":
            ok = present
        elif op == "DoesNotExist":
            ok = not present
        else:  # an unknown operator selects nothing (the API server would have rejected it)
            ok = False
        if not ok:
            return False
    return True


def policy_selects(
    policy: PolicyView, *, pod_labels: Mapping[str, str], namespace: str, namespace_labels: Mapping[str, str]
) -> bool:
    """Whether ``policy`` selects a pod with these labels in this namespace."""
    if policy.kind == POLICY_KIND:
        if policy.namespace != namespace:
            return False
    elif policy.namespace_selector is not None:
        # Every namespace carries this label since Kubernetes 1.21; add it for callers that drop it.
        ns_labels = {"kubernetes.io/metadata.name": namespace, **namespace_labels}
        if not selector_matches(policy.namespace_selector, ns_labels):
            return False
    return selector_matches(policy.pod_selector, pod_labels)


@dataclass(frozen=True, slots=True)
class PostureDecision:
    posture: Posture
    reason: str
    observe_label: bool
    invalid_level: str | None
    opted_out: bool = False  # the annotation requests None (the posture is then None too)

    @property
    def labels(self) -> dict[str, str]:
        """The operator's labels the pod carries (of ``POD_LABEL_KEYS``): its level labels, or the opt-out."""
        out = level_labels(self.posture)
        if self.opted_out:
            out[OBSERVE_OFF_LABEL] = "true"
        return out


SHOWN_VALUE_CHARS = 64


def shown_value(value: str) -> str:
    """An annotation value for a reason or an Event: quoted, cut to ``SHOWN_VALUE_CHARS``.

    The reason is itself a pod annotation, and a pod's annotations share one
    256 KiB limit: copying a huge value whole would make the posture patch
    itself too big for the API server (422), on every retry.
    """
    if len(value) <= SHOWN_VALUE_CHARS:
        return repr(value)
    return f"{value[:SHOWN_VALUE_CHARS]!r}... ({len(value)} characters)"


def compute_posture(
    *,
    annotations: Mapping[str, str],
    pod_labels: Mapping[str, str],
    namespace: str,
    namespace_labels: Mapping[str, str],
    policies: Sequence[PolicyView],
    node: NodeCapabilities | None,
) -> PostureDecision:
    """The effective posture of one pod (see the module docstring for the rules)."""
    raw = annotations.get(OBSERVE_LEVEL_ANNOTATION)
    requested, bad = read_level(raw)  # an unknown value fails closed to None (contracts/posture.py)
    invalid = (raw if isinstance(raw, str) else repr(raw)) if bad else None

    selecting = [
        p
        for p in policies
        if policy_selects(p, pod_labels=pod_labels, namespace=namespace, namespace_labels=namespace_labels)
    ]
    # highest level first; ties broken by a stable name order so the reason is deterministic
    selecting.sort(key=lambda p: (-p.max_level.rank, p.kind, p.namespace or "", p.name))
    if selecting:
        top = selecting[0]
        policy_max = top.max_level
        more = f" (and {len(selecting) - 1} more)" if len(selecting) > 1 else ""
        policy_why = f"policy {top.ref}{more} allows at most {policy_max}{top.note}"
    else:
        policy_max = Posture.PASSIVE
        policy_why = "no ObservationPolicy or ClusterObservationPolicy selects the pod (process events only)"

    if node is None:
        node_max, node_why = Posture.NONE, "node has no StellaOps agent (no ObservationNode)"
    else:
        node_max, why = node.ceiling()
        node_why = f"node supports at most {node_max} ({why})"

    candidates: list[tuple[Posture, str]] = []
    if requested is not None:
        candidates.append((requested, f"annotation {OBSERVE_LEVEL_ANNOTATION} requests {requested}"))
    candidates.append((policy_max, policy_why))
    candidates.append((node_max, node_why))
    posture = min(c[0] for c in candidates)
    reason = next(why for level, why in candidates if level == posture)
    if requested is not None and requested == Posture.NONE:
        reason = f"annotation {OBSERVE_LEVEL_ANNOTATION} opts the pod out (None)"
    if invalid is not None:
        reason = (
            f"invalid {OBSERVE_LEVEL_ANNOTATION} {shown_value(invalid)}, not an observe level: "
            "the pod is opted out (None) until the value is one"
        )
    return PostureDecision(
        posture=posture,
        reason=reason,
        observe_label=posture >= Posture.ACTIVE_TRACING,
        invalid_level=invalid,
        opted_out=requested is Posture.NONE,
    )


def posture_counts(postures: Sequence[Posture]) -> dict[str, int]:
    """``{"None": n, "Passive": n, ...}`` with every level present (for a RuntimeObserver's status)."""
    counts = {p.value: 0 for p in _ORDER}
    for p in postures:
        counts[p.value] += 1
    return counts
