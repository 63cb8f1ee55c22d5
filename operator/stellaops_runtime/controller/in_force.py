"""Which posture a policy really gives a pod on a Tetragon node: only what its applied objects trace.

A policy's posture promise (``maxLevel``) rests on its Tetragon objects being
in the cluster. When one of them was refused (another owner holds the name,
``NotOwned``) or could not be created (``ApplyFailed``, ``TetragonNotInstalled``),
a pod it selects must not be labelled and annotated as if its probes ran:
the posture says what is collected, and an ``EbpfDeep`` pod without its
uprobes object has no uprobes. The policy then gives such pods at most the
level just below the lowest level any missing object needs (each rendered
object requires the level label of what its probes need,
``render_policy``), and the pod's reason says which objects are missing (and which of
them are being deleted, ``owned.TerminatingError``: not an apply error).
A failed update of an object of ours that exists is not a missing object:
its previous version still traces (and a transient API error must not strip
the pods' level labels, which would stop that tracing too).

The same holds per node for what each node's Tetragon did with them
(``load_failures``, ``node_load_cap``): an object the node's agent lists in
a failed state (``LOAD_ERROR``, ``ERROR``, ``DISABLED``; or only a policy of
its name that came from no Kubernetes object, ``NOT_FROM_API``) does not run
there, so the policy gives the pods on that
node at most the level below what the object needs, and the reason names the
node, the object, the state and Tetragon's error. An object listed running,
pending (not listed yet, ``LOADING``) or ``PARTIALLY_ENABLED`` caps nothing:
lowering a pod's level takes its level labels away, which would stop the
hooks that did load (and a policy being rolled out would strip every pod's
labels for a moment); the policy's own status says ``PartiallyLoaded``.
Of an object listed more than once, the entries naming its current version
(and those naming none) decide when one names it: a failed entry of an object
of the name deleted since, or of another generation, beside the current one
loaded, caps nothing, as the rollout counts that node running; when no entry
names the current version (not reloaded yet), a failed one caps, whatever
version it names: nothing of ours is known to run there.

On a node whose working source is the native probes this does not apply:
they read the policy from the probe ConfigMap, not from Tetragon's objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from stellaops_runtime.contracts.posture import ORDER, Posture
from stellaops_runtime.controller.loaded_version import Version, not_from_api, reported_version
from stellaops_runtime.controller.posture import LEVEL_LABELS, PolicyView
from stellaops_runtime.controller.rollout import FAILED_STATES, HELD_BY_ANOTHER, entry_state

InForceCap = tuple[Posture, str]  # (the highest level the applied objects give, why)
ObjectRef = tuple[str, str]  # a Tetragon object as a node lists it: (namespace or "", name)
# Of Tetragon's error, what a pod's reason shows (the reason is a pod annotation: 256 KiB for them all).
ERROR_CHARS = 160
Listed = tuple[str, str, Version | None]  # an entry of ours: (state, Tetragon's error, the version it names)
LoadFailures = dict[ObjectRef, tuple[Listed, ...]]  # an object failed in some entry -> each entry of ours


def object_level(obj: Mapping[str, Any]) -> Posture:
    """The level a rendered Tetragon object needs: the highest level label its podSelector requires."""
    spec = obj.get("spec")
    selector = spec.get("podSelector") if isinstance(spec, Mapping) else None
    labels = selector.get("matchLabels") if isinstance(selector, Mapping) else None
    needed = [
        level for level, key in LEVEL_LABELS if isinstance(labels, Mapping) and labels.get(key) == "true"
    ]
    return max(needed, default=Posture.ACTIVE_TRACING)


def in_force_cap(
    objects: Iterable[Mapping[str, Any]], missing: Iterable[str], deleting: Iterable[str] = ()
) -> InForceCap | None:
    """The cap the policy's applied objects set, or None when every rendered object is applied.

    ``missing``: the names of the rendered objects that were refused or failed to apply;
    ``deleting``: those of them being deleted (``owned.TerminatingError``), which the reason says.
    """
    gone = set(missing)
    levels = [object_level(o) for o in objects if (o.get("metadata") or {}).get("name") in gone]
    if not levels:
        return None
    cap = ORDER[min(levels).rank - 1]
    going = gone & set(deleting)
    why = [f"{', '.join(sorted(gone - going))} could not be applied"] if gone - going else []
    if going:
        why.append(f"{', '.join(sorted(going))} {'is' if len(going) == 1 else 'are'} being deleted")
    return cap, f"; its Tetragon object(s) {' and '.join(why)}, so it gives at most {cap} here"


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
    """The objects a node's ``status.policies`` lists in a failed state, each with every entry of ours
    (failed ones first); listed only as a policy of its name not from the API server, ``NOT_FROM_API``.
    ``node_load_cap`` decides which entries speak for the object's current version.
    """
    by_key: dict[ObjectRef, list[Mapping[str, Any]]] = {}
    for entry in policies if isinstance(policies, list) else ():
        if isinstance(entry, Mapping) and entry.get("name"):
            by_key.setdefault((str(entry.get("namespace") or ""), str(entry["name"])), []).append(entry)
    out: LoadFailures = {}
    for key, entries in by_key.items():
        ours = [e for e in entries if not not_from_api(e)]
        if not ours:
            out[key] = (("NOT_FROM_API", HELD_BY_ANOTHER, None),)
            continue
        listed = [(entry_state(e), str(e.get("error") or ""), reported_version(e)) for e in ours]
        if any(state in FAILED_STATES for state, _, _ in listed):
            out[key] = tuple(sorted(listed, key=lambda e: e[0] not in FAILED_STATES))  # stable: in order
    return out


def _failed(listed: tuple[Listed, ...], current: Version | None) -> tuple[str, str] | None:
    """(state, error) of the failed entry that speaks for the object, or None when none does.

    When an entry names the ``current`` version, an entry naming another (an object of the name
    deleted since, an older generation) says nothing of it; one naming none might be it, and counts.
    """
    if current is not None and any(v == current for _, _, v in listed):
        listed = tuple(e for e in listed if e[2] is None or e[2] == current)
    return next(((state, error) for state, error, _ in listed if state in FAILED_STATES), None)


def node_load_cap(
    objects: Iterable[Mapping[str, Any]],
    failures: Mapping[ObjectRef, tuple[Listed, ...]],
    *,
    node: str,
    versions: Mapping[ObjectRef, Version] | None = None,
) -> InForceCap | None:
    """The cap a node's failed loads set on a policy (``objects``: its rendered ones), or None.

    ``versions``: each object's (uid, generation) now (``owned.written_versions``), so a failed entry
    of another version listed beside the loaded current one caps nothing (the rollout counts that
    node running); without it, or with no entry naming it, the worst entry decides.
    """
    failed: list[tuple[Posture, str, tuple[str, str]]] = []
    for o in objects:
        meta = o.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if key in failures and (found := _failed(failures[key], (versions or {}).get(key))) is not None:
            failed.append((object_level(o), key[1], found))
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
