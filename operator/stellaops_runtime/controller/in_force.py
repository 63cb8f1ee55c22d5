"""Which posture a policy really gives a pod on a Tetragon node: only what its applied objects trace.

A policy's posture promise (``maxLevel``) rests on its Tetragon objects being
in the cluster. When one of them was refused (another owner holds the name,
``NotOwned``) or could not be created (``ApplyFailed``, ``TetragonNotInstalled``),
a pod it selects must not be labelled and annotated as if its probes ran:
the posture says what is collected, and an ``EbpfDeep`` pod without its
uprobes object has no uprobes. The policy then gives such pods at most the
level just below the lowest level any missing object needs (each rendered
object requires the level label of what its probes need,
``render_policy``), and the pod's reason says which objects are missing.
A failed update of an object of ours that exists is not a missing object:
its previous version still traces (and a transient API error must not strip
the pods' level labels, which would stop that tracing too).

On a node whose working source is the native probes this does not apply:
they read the policy from the probe ConfigMap, not from Tetragon's objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from stellaops_runtime.contracts.posture import ORDER, Posture
from stellaops_runtime.controller.posture import LEVEL_LABELS, PolicyView

InForceCap = tuple[Posture, str]  # (the highest level the applied objects give, why)


def object_level(obj: Mapping[str, Any]) -> Posture:
    """The level a rendered Tetragon object needs: the highest level label its podSelector requires."""
    spec = obj.get("spec")
    selector = spec.get("podSelector") if isinstance(spec, Mapping) else None
    labels = selector.get("matchLabels") if isinstance(selector, Mapping) else None
    needed = [
        level for level, key in LEVEL_LABELS if isinstance(labels, Mapping) and labels.get(key) == "true"
    ]
    return max(needed, default=Posture.ACTIVE_TRACING)


def in_force_cap(objects: Iterable[Mapping[str, Any]], missing: Iterable[str]) -> InForceCap | None:
    """The cap the policy's applied objects set, or None when every rendered object is applied.

    ``missing``: the names of the rendered objects that were refused or failed to apply.
    """
    gone = set(missing)
    levels = [object_level(o) for o in objects if (o.get("metadata") or {}).get("name") in gone]
    if not levels:
        return None
    cap = ORDER[min(levels).rank - 1]
    names = ", ".join(sorted(gone))
    return cap, f"; its Tetragon object(s) {names} could not be applied, so it gives at most {cap} here"


def capped(
    views: Iterable[PolicyView], caps: Mapping[tuple[str, str | None, str], InForceCap]
) -> list[PolicyView]:
    """``views`` with each policy's level lowered to what its applied objects give (see the module)."""
    out = []
    for v in views:
        cap = caps.get((v.kind, v.namespace, v.name))
        if cap is not None and cap[0] < v.max_level:
            v = replace(v, max_level=cap[0], note=cap[1])
        out.append(v)
    return out
