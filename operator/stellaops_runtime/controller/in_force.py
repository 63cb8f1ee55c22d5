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

The same holds per node for what each node's Tetragon did with them
(``load_failures``, ``node_load_cap``): an object the node's agent lists in
a failed state (``LOAD_ERROR``, ``ERROR``, ``DISABLED``; or only a policy of
its name that came from no Kubernetes object, ``NOT_FROM_API``) does not run
there, whatever version of it was listed, so the policy gives the pods on that
node at most the level below what the object needs, and the reason names the
node, the object, the state and Tetragon's error. An object listed running,
pending (not listed yet, ``LOADING``) or ``PARTIALLY_ENABLED`` caps nothing:
lowering a pod's level takes its level labels away, which would stop the
hooks that did load (and a policy being rolled out would strip every pod's
labels for a moment); the policy's own status says ``PartiallyLoaded``.

On a node whose working source is the native probes this does not apply:
they read the policy from the probe ConfigMap, not from Tetragon's objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from stellaops_runtime.contracts.posture import ORDER, Posture
from stellaops_runtime.controller.loaded_version import not_from_api
from stellaops_runtime.controller.posture import LEVEL_LABELS, PolicyView
from stellaops_runtime.controller.rollout import FAILED_STATES, HELD_BY_ANOTHER, entry_state

InForceCap = tuple[Posture, str]  # (the highest level the applied objects give, why)
ObjectRef = tuple[str, str]  # a Tetragon object as a node lists it: (namespace or "", name)
# Of Tetragon's error, what a pod's reason shows (the reason is a pod annotation: 256 KiB for them all).
ERROR_CHARS = 160
LoadFailures = dict[ObjectRef, tuple[str, str]]  # -> (state, Tetragon's error) on one node


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


def load_failures(policies: Any) -> LoadFailures:
    """The objects a node's ``status.policies`` lists only in a failed state: (state, error) each.

    Of an object listed more than once, the worst of the entries from the API server decides;
    listed only as a policy of its name not from the API server, it is ``NOT_FROM_API``.
    """
    by_key: dict[ObjectRef, list[Mapping[str, Any]]] = {}
    for entry in policies if isinstance(policies, list) else ():
        if isinstance(entry, Mapping) and entry.get("name"):
            by_key.setdefault((str(entry.get("namespace") or ""), str(entry["name"])), []).append(entry)
    out: LoadFailures = {}
    for key, entries in by_key.items():
        ours = [e for e in entries if not not_from_api(e)]
        if not ours:
            out[key] = ("NOT_FROM_API", HELD_BY_ANOTHER)
            continue
        failed = [e for e in ours if entry_state(e) in FAILED_STATES]  # a failed entry is the worst
        if failed:
            out[key] = (entry_state(failed[0]), str(failed[0].get("error") or ""))
    return out


def node_load_cap(
    objects: Iterable[Mapping[str, Any]], failures: Mapping[ObjectRef, tuple[str, str]], *, node: str
) -> InForceCap | None:
    """The cap a node's failed loads set on a policy (``objects``: its rendered ones), or None."""
    failed: list[tuple[Posture, str, tuple[str, str]]] = []
    for o in objects:
        meta = o.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if key in failures:
            failed.append((object_level(o), key[1], failures[key]))
    if not failed:
        return None
    cap = ORDER[min(level for level, _, _ in failed).rank - 1]
    names = ", ".join(sorted(name for _, name, _ in failed))
    state, error = min(failed, key=lambda f: (f[0].rank, f[1]))[2]
    shown = error if len(error) <= ERROR_CHARS else f"{error[:ERROR_CHARS]}... ({len(error)} characters)"
    why = f"{state}: {shown!r}" if error else state
    return (
        cap,
        f"; its Tetragon object(s) {names} failed to load on node {node} ({why}), "
        f"so it gives at most {cap} here",
    )
