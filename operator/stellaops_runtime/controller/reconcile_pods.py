"""Pods: the effective observation posture, written back as ``stellaops.io/`` annotations and a label.

For each pod: min(the level its annotation requests, the highest level of
the policies selecting it, its node's ceiling) (``posture.compute_posture``),
written as the annotations ``stellaops.io/observe-posture`` and
``stellaops.io/observe-posture-reason`` and the level labels
``stellaops.io/observe``, ``stellaops.io/observe-deep`` and
``stellaops.io/observe-full`` (``posture.level_labels``,
``patches.pod_posture_patch``), or, for a pod whose annotation opts it out
(``None``), the label ``stellaops.io/observe-off=true``, which tells the
agent to drop its events even where Tetragon exports no annotations
(``privacy/optout.py``). Those keys are the
only part of a pod the operator ever changes; the optional admission policy
in ``manifests/admission/`` holds it to that (docs/security.md).
"""

from __future__ import annotations

from dataclasses import replace

from stellaops_runtime.contracts.crds import OBSERVE_LEVEL_ANNOTATION, POSTURE_REASON_ANNOTATION
from stellaops_runtime.controller.patches import pod_posture_patch
from stellaops_runtime.controller.posture import (
    NodeCapabilities,
    PostureDecision,
    allowed_levels_message,
    compute_posture,
    node_capabilities,
    shown_value,
)
from stellaops_runtime.controller.reconcile_policies import PolicyReconciler
from stellaops_runtime.controller.rollout import is_stale
from stellaops_runtime.controller.state import (
    INDEX_NAMESPACES,
    INDEX_OBSERVATION_NODES,
    INDEX_PODS,
    PodSnapshot,
    utcnow,
)
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import ApiError


class PodReconciler(PolicyReconciler):
    """Pod postures (mixed into ``reconcile.Reconciler``)."""

    def _node_caps(self, node: str) -> NodeCapabilities | None:
        if not node:
            return None
        seen = self._one(INDEX_OBSERVATION_NODES, node)
        cached = self._caps.get(node)
        if cached is not None and cached[0] is seen:
            caps = cached[1]
        else:
            caps = node_capabilities(seen) if seen is not None else None
            self._caps[node] = (seen, caps)
        stale_after = self.config.stale_after_seconds
        if (
            caps is not None
            and seen is not None
            and is_stale(seen, now=utcnow(), stale_after_seconds=stale_after)
        ):
            return replace(caps, stale=True)  # the agent stopped heart-beating: nothing it said holds
        return caps

    def pod_decision(self, pod: PodSnapshot) -> PostureDecision:
        self.policy_views()
        candidates = self._views_by_ns.get(pod.namespace, []) + self._cluster_views
        return compute_posture(
            annotations=pod.annotations,
            pod_labels=pod.labels,
            namespace=pod.namespace,
            namespace_labels=self._one(INDEX_NAMESPACES, pod.namespace) or {},
            policies=candidates,
            node=self._node_caps(pod.node),
        )

    async def reconcile_pod(self, namespace: str, name: str) -> None:
        key = ("v1", "Pod", namespace, name)
        seen: PodSnapshot | None = self._one(INDEX_PODS, (namespace, name))
        pod = self._pod((namespace, name))
        if seen is None or pod is None or pod.deleting:
            return
        decision = self.pod_decision(pod)
        patch = pod_posture_patch(
            annotations=pod.annotations,
            labels=pod.labels,
            posture=decision.posture.value,
            reason=decision.reason,
            level_labels=decision.labels,
        )
        if decision.invalid_level is not None:
            await self._report_invalid_level(pod, decision, writing=patch is not None)
        if patch is None:
            return
        try:
            await self.api.patch(r.PODS, name=name, namespace=namespace, patch=patch)
        except ApiError as e:
            if e.not_found:
                return
            raise
        self.stats.writes["pod"] += 1
        self._remember(key, (seen.labels, seen.annotations), pod.patched(patch))

    async def _report_invalid_level(
        self, pod: PodSnapshot, decision: PostureDecision, *, writing: bool
    ) -> None:
        value = decision.invalid_level or ""
        mark = (pod.uid, value)
        if mark in self._reported_levels:
            return
        self._reported_levels.add(mark)
        if not writing and pod.annotations.get(POSTURE_REASON_ANNOTATION) == decision.reason:
            return  # recorded on the pod already: an earlier operator process posted the Event
        message = (
            f"{OBSERVE_LEVEL_ANNOTATION}={shown_value(value)} is not an observe level and is ignored; "
            f"{allowed_levels_message()}. Effective posture: {decision.posture} ({decision.reason})"
        )
        await self._event(pod.ref, type="Warning", reason="InvalidObserveLevel", message=message)
