"""Nodes: the ``feature.stellaops.io/`` labels that say what each node's agent can observe.

From a node's ObservationNode (written by its agent) the operator derives
labels such as ``feature.stellaops.io/btf`` or ``max-posture``
(``node_labels.node_feature_labels``) and patches the Node's labels under that
prefix only (``patches.labels_patch``): nothing else of a Node is ever
written. The optional admission policy in ``manifests/admission/`` holds it
to that (docs/security.md).

``max-posture`` is what the node's working source delivers now: ``None``
while the agent reports no working source, or once it stopped heart-beating
(stale; a stopped heartbeat sends no event, so the periodic refold of the
policies' rollouts notices it and triggers the node again).
"""

from __future__ import annotations

from stellaops_runtime.contracts.crds import FEATURE_LABEL_PREFIX
from stellaops_runtime.controller.node_labels import node_feature_labels
from stellaops_runtime.controller.patches import labels_patch
from stellaops_runtime.controller.state import INDEX_NODES, INDEX_OBSERVATION_NODES, ReconcilerState
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import ApiError


class NodeReconciler(ReconcilerState):
    """Node feature labels (mixed into ``reconcile.Reconciler``)."""

    async def reconcile_node(self, name: str) -> None:
        seen = self._one(INDEX_NODES, name)
        key = ("v1", "Node", None, name)
        if seen is None:
            self._written.pop(key, None)
            return
        hit, value = self._overlay(key, seen)
        labels = value if hit else seen
        obs = self._one(INDEX_OBSERVATION_NODES, name)
        stale = obs is not None and self._is_stale(obs)
        desired = node_feature_labels(obs, stale=stale) if obs is not None else {}
        patch = labels_patch(labels, desired, prefix=FEATURE_LABEL_PREFIX)
        if patch is None:
            return
        try:
            await self.api.patch(r.NODES, name=name, patch={"metadata": {"labels": patch}})
        except ApiError as e:
            if e.not_found:
                return
            raise
        self.stats.writes["node"] += 1
        new = {k: v for k, v in labels.items() if k not in patch}
        new.update({k: v for k, v in patch.items() if v is not None})
        self._remember(key, seen, new)
