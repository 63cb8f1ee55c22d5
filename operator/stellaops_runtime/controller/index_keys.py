"""How kopf's indexes are keyed and what their entries hold, for the reconciler's state.

Split from controller/state.py (398 lines, over the module limit) without a change: the index ids,
an object's key (``obj_key``), the snapshots an index keeps (``snapshot``, ``PodSnapshot``) and the
parts of an entry a write is based on (``pod_part``, ``status_part``, ``owned_part``: the
read-your-writes overlay's). controller/state.py re-exports every name, so its importers are
unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from stellaops_runtime.contracts.crd_names import AGENT_TEMPLATE_ANNOTATION
from stellaops_runtime.contracts.crds import (
    OBSERVE_LEVEL_ANNOTATION,
    POSTURE_ANNOTATION,
    POSTURE_REASON_ANNOTATION,
)
from stellaops_runtime.controller.agent_pods import ContainerProblem, container_problems
from stellaops_runtime.controller.patches import managed_view

# kopf index ids (the handlers module registers them; the reconciler reads them).
INDEX_POLICIES = "stellaops_policies"  # (kind, ns|None, name) -> object snapshot
INDEX_OBSERVERS = "stellaops_observers"  # name -> object snapshot
INDEX_NAMESPACES = "stellaops_namespaces"  # name -> labels
INDEX_OBSERVATION_NODES = "stellaops_observation_nodes"  # node name -> object snapshot
INDEX_NODES = "stellaops_nodes"  # node name -> its labels (a dict; no uid)
INDEX_PODS = "stellaops_pods"  # (ns, name) -> PodSnapshot
INDEX_PODS_BY_NODE = "stellaops_pods_by_node"  # node name -> (ns, name)
INDEX_PODS_BY_NAMESPACE = "stellaops_pods_by_namespace"  # ns -> (ns, name)
INDEX_OWNED = "stellaops_owned"  # ObjKey -> object snapshot
INDEX_CHILDREN = "stellaops_children"  # ("uid", owner uid) | ("policy", entry key) -> ObjKey
INDEXES = (
    INDEX_POLICIES,
    INDEX_OBSERVERS,
    INDEX_NAMESPACES,
    INDEX_OBSERVATION_NODES,
    INDEX_NODES,
    INDEX_PODS,
    INDEX_PODS_BY_NODE,
    INDEX_PODS_BY_NAMESPACE,
    INDEX_OWNED,
    INDEX_CHILDREN,
)

ObjKey = tuple[str, str, str | None, str]  # apiVersion, kind, namespace, name


def obj_key(obj: Mapping[str, Any]) -> ObjKey:
    meta = obj.get("metadata") or {}
    return (
        str(obj.get("apiVersion", "")),
        str(obj.get("kind", "")),
        meta.get("namespace") or None,
        meta["name"],
    )


def _uid_of(value: Any) -> str | None:
    """The uid of an index value (an object snapshot or a PodSnapshot), if it has one."""
    if isinstance(value, Mapping):
        meta = value.get("metadata")
        return str(meta.get("uid") or "") or None if isinstance(meta, Mapping) else None
    return getattr(value, "uid", None) or None


def pod_part(pod: PodSnapshot) -> tuple[str, dict[str, str], dict[str, str]]:
    """What a pod write is based on (the overlay's part): its uid, labels and annotations.

    The uid, because a pod deleted and made again under its name in a watch gap (kopf re-lists
    after 410 Gone) comes back with the same labels and annotations (a StatefulSet's pod): without
    it the new pod was read as the dead one patched, and never given its posture.
    """
    return (pod.uid, pod.labels, pod.annotations)


def status_part(seen: Mapping[str, Any] | None) -> tuple[str | None, Any]:
    """What a status write is based on: the object's uid and its status (see ``pod_part``)."""
    return (_uid_of(seen), seen.get("status")) if seen is not None else (None, None)


def owned_part(seen: Mapping[str, Any] | None) -> tuple[str | None, dict[str, Any]] | None:
    """What a write of an owned object is based on: its uid and managed view (see ``pod_part``;
    an object restored under its name as it was before our patch is not the patched one)."""
    return (_uid_of(seen), managed_view(seen)) if seen is not None else None


def snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain deep copy of a watched object for an index (without managedFields)."""
    obj = copy.deepcopy(dict(body))
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def _controller_ref(meta: Mapping[str, Any]) -> tuple[str, str, str] | None:
    refs = meta.get("ownerReferences")
    for ref in refs if isinstance(refs, list) else ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return str(ref.get("kind") or ""), str(ref.get("name") or ""), str(ref.get("uid") or "")
    return None


@dataclass(frozen=True, slots=True)
class PodSnapshot:
    """What the operator needs of a pod: identity, labels, our annotations, its node.

    ``problems``: containers the kubelet reports stuck (``agent_pods``), read for
    the agent pods' part of a RuntimeObserver's status.
    """

    namespace: str
    name: str
    uid: str
    labels: dict[str, str]
    annotations: dict[str, str]  # only OBSERVE_LEVEL, POSTURE and POSTURE_REASON
    node: str
    deleting: bool
    problems: tuple[ContainerProblem, ...] = ()
    controller: tuple[str, str, str] | None = None  # (kind, name, uid) of its controller ownerReference
    agent_template: str = ""  # an agent pod's stellaops.io/agent-template: which rollout it runs

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> PodSnapshot:
        meta = body.get("metadata") or {}
        ann = meta.get("annotations") or {}
        keep = (OBSERVE_LEVEL_ANNOTATION, POSTURE_ANNOTATION, POSTURE_REASON_ANNOTATION)
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            labels=dict(meta.get("labels") or {}),
            annotations={k: str(ann[k]) for k in keep if k in ann},
            node=str((body.get("spec") or {}).get("nodeName") or ""),
            deleting=bool(meta.get("deletionTimestamp")),
            problems=container_problems(body),
            controller=_controller_ref(meta),
            agent_template=str(ann.get(AGENT_TEMPLATE_ANNOTATION) or ""),
        )

    def patched(self, patch: Mapping[str, Any]) -> PodSnapshot:
        meta = patch.get("metadata") or {}
        annotations = dict(self.annotations)
        for k, v in (meta.get("annotations") or {}).items():
            if v is None:
                annotations.pop(k, None)
            else:
                annotations[k] = v
        labels = dict(self.labels)
        for k, v in (meta.get("labels") or {}).items():
            if v is None:
                labels.pop(k, None)
            else:
                labels[k] = v
        return replace(self, annotations=annotations, labels=labels)

    @property
    def ref(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid},
        }
