"""Whether an object in the cluster is the operator's to overwrite or delete.

The operator writes Tetragon ``TracingPolicy`` and ``TracingPolicyNamespaced``
objects in any namespace, and Tetragon's policies are also how other teams
enforce things. RBAC cannot limit those writes to the operator's own objects:

- RBAC has no label or owner selectors; a rule matches every object of a
  resource (in a namespace, or cluster-wide);
- ``resourceNames`` could list names, but the operator's names derive from
  policies users create at any time, and ``create`` (like ``list``,
  ``watch`` and ``deletecollection``) cannot be limited by ``resourceNames``
  at all, because the name is not part of the request's URL.

So the check is in the operator, before every write (patch or delete) of an
object it believes it owns. An object is ours when it carries the label
``app.kubernetes.io/managed-by: stellaops-runtime`` and

- its controller owner reference names the expected owner (kind and name,
  or uid when only the uid is known: the owner is gone), or
- it has no controller owner reference (someone stripped it) and our
  annotation ``stellaops.io/policy`` (Tetragon objects) or label
  ``stellaops.io/observer`` (agent objects) names the expected owner.

Anything else is refused with :class:`NotOwnedError`, which the reconciles
report as a ``NotOwned`` condition reason and a Warning Event; the foreign
object is left untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stellaops_runtime.contracts.crds import MANAGED_BY, OBSERVER_KIND, OBSERVER_LABEL

POLICY_ANNOTATION = "stellaops.io/policy"  # on rendered Tetragon policies: probe_entry_key of the parent
NOT_OWNED_REASON = "NotOwned"


@dataclass(frozen=True, slots=True)
class Owner:
    """Who should own an object: group/version, kind, and name or uid; ``entry`` for Tetragon objects."""

    api_version: str
    kind: str
    name: str = ""
    uid: str = ""
    entry: str | None = None  # the stellaops.io/policy annotation the owner's Tetragon objects carry

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def __str__(self) -> str:
        return f"{self.kind} {self.name or self.uid}"

    @classmethod
    def of_desired(cls, desired: Mapping[str, Any]) -> Owner | None:
        """The owner a rendered object names (its controller owner reference), if any."""
        meta = desired.get("metadata") or {}
        ref = controller_of(desired)
        if ref is None:
            return None
        entry = (meta.get("annotations") or {}).get(POLICY_ANNOTATION)
        return cls(
            api_version=str(ref.get("apiVersion") or ""),
            kind=str(ref.get("kind") or ""),
            name=str(ref.get("name") or ""),
            uid=str(ref.get("uid") or ""),
            entry=str(entry) if entry else None,
        )


class NotOwnedError(RuntimeError):
    """A write the operator refused: the object in the cluster is not (or no longer) the operator's."""

    reason = NOT_OWNED_REASON

    def __init__(self, *, kind: str, namespace: str | None, name: str, why: str) -> None:
        where = f"{namespace}/{name}" if namespace else name
        super().__init__(f"{kind} {where} is not ours: {why}; it is left as it is")
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.why = why


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The owner reference marked ``controller: true``, if there is one."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return ref
    return None


def why_not_ours(current: Mapping[str, Any], owner: Owner | None) -> str | None:
    """None when ``current`` is ours to write (for ``owner``, if known); else the reason it is not."""
    meta = current.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY[0]) != MANAGED_BY[1]:
        return f"it is not labelled {MANAGED_BY[0]}={MANAGED_BY[1]}"
    if owner is None:
        return None
    ref = controller_of(current)
    if ref is not None:
        group = str(ref.get("apiVersion") or "").rpartition("/")[0]
        same_kind = (group, ref.get("kind")) == (owner.group, owner.kind)
        same_object = ref.get("name") == owner.name if owner.name else ref.get("uid") == owner.uid
        if same_kind and same_object:
            return None
        return f"its controller is {ref.get('kind')} {ref.get('name')}, not {owner}"
    annotations = meta.get("annotations") or {}
    if owner.entry is not None and annotations.get(POLICY_ANNOTATION) == owner.entry:
        return None
    if owner.kind == OBSERVER_KIND and owner.name and labels.get(OBSERVER_LABEL) == owner.name:
        return None
    return f"it has no controller owner reference to {owner}"
