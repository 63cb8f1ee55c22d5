"""The smallest merge patch that brings an object to what the operator wants, or None.

GitOps tools and the API server both count writes, so the operator writes
only when the cluster differs from what it renders, and then only the fields
it sets. These pure functions decide that:

- ``owned_patch``: for objects the operator owns (Tetragon policies, the
  agent's DaemonSet, ConfigMaps, RBAC...). "Differs" means a field the
  operator sets has another value in the cluster; fields the API server
  defaults (``dnsPolicy``, ``terminationMessagePath``...) or other
  controllers add are left alone. Because a merge patch cannot remove a key
  it does not name, each owned object carries the annotation
  ``stellaops.io/applied-fields``: the key skeleton of what was last applied.
  A key that was applied before and is no longer rendered (a removed
  ``nodeSelector`` entry, say) is sent as ``null`` and so removed.
- ``status_patch``: for the status of our own custom resources.
- ``pod_posture_patch`` and ``labels_patch``: the few annotations and labels
  the operator maintains on objects it does not own (pods, nodes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from stellaops_runtime.contracts.crds import POSTURE_ANNOTATION, POSTURE_REASON_ANNOTATION
from stellaops_runtime.controller.posture import POD_LABEL_KEYS

APPLIED_FIELDS_ANNOTATION = "stellaops.io/applied-fields"
# When the operator last wrote the object's spec (RFC 3339): node reports made before then are about
# an older version (rollout.fold_rollout); on the object, so a restarted operator still knows it.
SPEC_WRITTEN_ANNOTATION = "stellaops.io/spec-written-at"
_IDENTITY_KEYS = ("apiVersion", "kind", "status")
_OWNED_METADATA = ("labels", "annotations", "ownerReferences")


def _empty(value: Any) -> bool:
    """Values the API server drops when serializing (Go's omitempty): absent and these look alike."""
    return value is None or value is False or value == 0 or value == "" or value == {} or value == []


def covers(actual: Any, desired: Any) -> bool:
    """Whether ``actual`` has every field of ``desired`` with the same value (extra fields allowed).

    Dicts are compared key by key, lists element by element (same length), scalars by equality.
    An absent field covers an empty desired value (``{}``, ``[]``, ``""``, ``0``, ``false``).
    """
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            return actual is None and all(_empty(v) for v in desired.values())
        for key, want in desired.items():
            if key not in actual:
                if not _empty(want):
                    return False
            elif not covers(actual[key], want):
                return False
        return True
    if isinstance(desired, list):
        if actual is None:
            return not desired
        if not isinstance(actual, list) or len(actual) != len(desired):
            return False
        return all(covers(a, d) for a, d in zip(actual, desired, strict=True))
    if actual is None:
        return _empty(desired)
    return bool(actual == desired)


def field_skeleton(value: Any) -> Any:
    """The keys of ``value`` (nested dicts); lists and scalars are 1 (a merge patch replaces them whole)."""
    if isinstance(value, Mapping):
        return {str(k): field_skeleton(v) for k, v in sorted(value.items())}
    return 1


def managed_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an object the operator manages: metadata labels/annotations/owners and the body."""
    meta = obj.get("metadata") or {}
    view: dict[str, Any] = {k: v for k, v in obj.items() if k not in (*_IDENTITY_KEYS, "metadata")}
    managed_meta = {k: meta[k] for k in _OWNED_METADATA if k in meta}
    annotations = dict(managed_meta.get("annotations") or {})
    annotations.pop(APPLIED_FIELDS_ANNOTATION, None)
    if annotations:
        managed_meta["annotations"] = annotations
    else:
        managed_meta.pop("annotations", None)
    view["metadata"] = managed_meta
    return view


def _skeleton_text(desired: Mapping[str, Any]) -> str:
    return json.dumps(field_skeleton(managed_view(desired)), sort_keys=True, separators=(",", ":"))


def for_create(desired: Mapping[str, Any]) -> dict[str, Any]:
    """``desired`` with the applied-fields annotation, ready to POST."""
    obj = json.loads(json.dumps(desired))
    meta = obj.setdefault("metadata", {})
    meta.setdefault("annotations", {})[APPLIED_FIELDS_ANNOTATION] = _skeleton_text(desired)
    return obj


def _removals(previous: Any, desired: Any) -> Any:
    """Keys of the ``previous`` skeleton that ``desired`` no longer has, as ``None`` (nested)."""
    if not isinstance(previous, Mapping) or not isinstance(desired, Mapping):
        return None
    out: dict[str, Any] = {}
    for key, sub in previous.items():
        if key not in desired:
            out[key] = None
        elif isinstance(sub, Mapping) and isinstance(desired[key], Mapping):
            nested = _removals(sub, desired[key])
            if nested:
                out[key] = nested
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        elif key not in base:
            base[key] = value


def owned_patch(desired: Mapping[str, Any], actual: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch that makes ``actual`` carry ``desired`` (None when it already does).

    Only the managed view is compared (labels, annotations, owner references
    and everything outside ``metadata`` and ``status``). A field the previous
    apply set and ``desired`` dropped is removed with ``null``.
    """
    want = managed_view(desired)
    have = managed_view(actual)
    skeleton = _skeleton_text(desired)
    recorded = ((actual.get("metadata") or {}).get("annotations") or {}).get(APPLIED_FIELDS_ANNOTATION)
    if recorded == skeleton and covers(have, want):
        return None
    patch: dict[str, Any] = json.loads(json.dumps(want))
    if recorded:
        try:
            previous = json.loads(recorded)
        except ValueError:
            previous = None
        removals = _removals(previous, field_skeleton(want))
        if removals:
            _merge(patch, removals)
    patch.setdefault("metadata", {}).setdefault("annotations", {})[APPLIED_FIELDS_ANNOTATION] = skeleton
    return patch


def status_patch(
    current: Mapping[str, Any] | None, desired: Mapping[str, Any], *, owned_keys: Iterable[str] = ()
) -> dict[str, Any] | None:
    """``{"status": {...}}`` with the keys whose value changed, ``null`` for owned keys no longer set.

    None when nothing changed: an unchanged reconcile writes nothing.
    """
    current = current or {}
    changes: dict[str, Any] = {k: v for k, v in desired.items() if current.get(k) != v}
    for key in owned_keys:
        if key not in desired and current.get(key) is not None:
            changes[key] = None
    return {"status": changes} if changes else None


def labels_patch(
    current: Mapping[str, str] | None, desired: Mapping[str, str], *, prefix: str
) -> dict[str, str | None] | None:
    """Labels to set (``desired``) and to remove (ours, under ``prefix``, not desired); None if none."""
    current = current or {}
    out: dict[str, str | None] = {k: v for k, v in desired.items() if current.get(k) != v}
    for key in current:
        if key.startswith(prefix) and key not in desired:
            out[key] = None
    return out or None


def pod_posture_patch(
    *,
    annotations: Mapping[str, str] | None,
    labels: Mapping[str, str] | None,
    posture: str,
    reason: str,
    level_labels: Mapping[str, str],
) -> dict[str, Any] | None:
    """The one merge patch that records a pod's posture (annotations) and its labels; None if set.

    ``level_labels`` are the labels the pod should carry out of
    ``POD_LABEL_KEYS`` (the level labels and ``stellaops.io/observe-off``); the
    others of those keys are removed (never set to ``false``), so a selector
    ``key=true`` matches exactly the pods at that level (or opted out).
    """
    annotations = annotations or {}
    labels = labels or {}
    meta: dict[str, Any] = {}
    want = {POSTURE_ANNOTATION: posture, POSTURE_REASON_ANNOTATION: reason}
    ann = {k: v for k, v in want.items() if annotations.get(k) != v}
    if ann:
        meta["annotations"] = ann
    lab: dict[str, str | None] = {}
    for key in POD_LABEL_KEYS:
        value = level_labels.get(key)
        if value is not None and labels.get(key) != value:
            lab[key] = value
        elif value is None and key in labels:
            lab[key] = None
    if lab:
        meta["labels"] = lab
    return {"metadata": meta} if meta else None
