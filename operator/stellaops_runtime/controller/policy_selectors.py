"""The podSelector of a rendered Tetragon policy: the user's selector, namespaces folded in, a level label.

Each Tetragon object selects pods by the policy's podSelector **and** the
level label of what its probes need (``posture.level_labels``:
``stellaops.io/observe=true`` for syscall kprobes,
``stellaops.io/observe-deep=true`` for uprobes and stack traces). A
ClusterObservationPolicy's namespaceSelector is carried into Tetragon's
podSelector where Tetragon can express it: requirements on
``kubernetes.io/metadata.name`` become the pseudo-label
``k8s:io.kubernetes.pod.namespace``; other namespace labels are enforced
through the observe label alone, and a note (``RenderedPolicy.notes``) says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stellaops_runtime.contracts.crd_specs import PolicySpec
from stellaops_runtime.controller.posture import Posture, level_label

NAMESPACE_PSEUDO_LABEL = "k8s:io.kubernetes.pod.namespace"  # Tetragon's podSelector namespace label
_NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def with_level(
    selector: Mapping[str, Any], level: Posture, *, below: Posture | None = None
) -> dict[str, Any]:
    """``selector`` plus the level label ``level`` needs (and, with ``below``, not ``below``'s label)."""
    match_labels = dict(selector.get("matchLabels") or {})
    match_labels[level_label(level)] = "true"
    expressions = [dict(e) for e in selector.get("matchExpressions") or ()]
    if below is not None:
        expressions.append({"key": level_label(below), "operator": "DoesNotExist"})
    out: dict[str, Any] = {"matchLabels": dict(sorted(match_labels.items()))}
    if expressions:
        out["matchExpressions"] = expressions
    return out


def tetragon_pod_selector(spec: PolicySpec, *, cluster: bool, notes: list[str]) -> dict[str, Any]:
    """The user's selector in Tetragon's terms (namespace requirements folded in), without level labels."""
    selector = spec.pod_selector.to_dict()
    match_labels = dict(selector.get("matchLabels", {}))
    expressions = list(selector.get("matchExpressions", []))
    ns_sel = spec.namespace_selector
    if cluster and ns_sel is not None:
        dropped = []
        for key, value in sorted(ns_sel.match_labels.items()):
            if key == _NAMESPACE_NAME_LABEL:
                expressions.append({"key": NAMESPACE_PSEUDO_LABEL, "operator": "In", "values": [value]})
            else:
                dropped.append(key)
        for req in ns_sel.match_expressions:
            if req.key == _NAMESPACE_NAME_LABEL:
                expr: dict[str, Any] = {"key": NAMESPACE_PSEUDO_LABEL, "operator": req.operator}
                if req.values:
                    expr["values"] = list(req.values)
                expressions.append(expr)
            else:
                dropped.append(req.key)
        if dropped:
            notes.append(
                "namespaceSelector labels "
                + ", ".join(sorted(set(dropped)))
                + " cannot be expressed in Tetragon's podSelector; Tetragon scopes this policy through "
                "the stellaops.io/observe level labels, which another policy selecting the same pod "
                "can also set"
            )
    out: dict[str, Any] = {"matchLabels": dict(sorted(match_labels.items()))}
    if expressions:
        out["matchExpressions"] = expressions
    return out
