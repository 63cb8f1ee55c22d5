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

A policy counts only with the probes it has in force (``in_force``: on a
Tetragon node, one with an object refused or not applied, or one that node's
Tetragon failed to load, gives at most the level below what that object
needs; on a native node, one whose entry the
probe ConfigMap left out, ``policiesOmitted``, gives at most Passive: the
native probes load only the entries it holds), and a pod of an
agent DaemonSet the operator rendered (recognised by that DaemonSet's uid,
``_agent_of``) is always ``None``: the agents do not observe themselves.
"""

from __future__ import annotations

from dataclasses import replace

from stellaops_runtime.contracts.crds import (
    API_VERSION,
    OBSERVE_LEVEL_ANNOTATION,
    OBSERVER_KIND,
    POSTURE_REASON_ANNOTATION,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.controller.in_force import (
    InForceCap,
    LoadFailures,
    capped,
    load_failures,
    node_load_cap,
)
from stellaops_runtime.controller.ownership import controller_of
from stellaops_runtime.controller.patches import pod_posture_patch
from stellaops_runtime.controller.posture import (
    NodeCapabilities,
    PolicyView,
    PostureDecision,
    allowed_levels_message,
    compute_posture,
    node_capabilities,
    policy_selects,
    shown_value,
)
from stellaops_runtime.controller.reconcile_policies import PolicyReconciler
from stellaops_runtime.controller.render_policy import probe_entry_key
from stellaops_runtime.controller.state import (
    INDEX_NAMESPACES,
    INDEX_OBSERVATION_NODES,
    INDEX_OWNED,
    INDEX_PODS,
    INDEX_POLICIES,
    PodSnapshot,
    obj_key,
    pod_part,
)
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import ApiError

# Why a policy gives a pod on a native node no more than process events (compute_posture's reason).
NATIVE_OMITTED = (
    "; its probe entry is left out of the agents' probe ConfigMap (1 MiB), so the native probes do "
    "not load it and it gives at most Passive here"
)


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
        if caps is not None and seen is not None and self._is_stale(seen):
            return replace(caps, stale=True)  # the agent stopped heart-beating: nothing it said holds
        return caps

    def _load_failures(self, node: str) -> LoadFailures:
        """The objects ``node``'s Tetragon lists as failed to load (``in_force.load_failures``)."""
        seen = self._one(INDEX_OBSERVATION_NODES, node) if node else None
        cached = self._failures.get(node)
        if cached is not None and cached[0] is seen:
            return cached[1]
        status = seen.get("status") if isinstance(seen, dict) else None
        failures = load_failures(status.get("policies") if isinstance(status, dict) else None)
        self._failures[node] = (seen, failures)
        return failures

    def _loaded_on(self, views: list[PolicyView], node: str) -> list[PolicyView]:
        """``views`` with each policy lowered to what ``node``'s Tetragon loaded of it (``in_force``)."""
        failures = self._load_failures(node)
        if not failures:
            return views
        caps: dict[tuple[str, str | None, str], InForceCap] = {}
        for v in views:
            rendered = self._rendered(v.kind, v.namespace, v.name)
            if rendered is None:
                continue
            objects = rendered.tracing_policies
            if not any(
                ((o["metadata"].get("namespace") or ""), o["metadata"]["name"]) in failures for o in objects
            ):
                continue
            _, versions = self.written_versions({obj_key(o) for o in objects})  # which entry is current
            cap = node_load_cap(objects, failures, node=node, versions=versions)
            if cap is not None:
                caps[(v.kind, v.namespace, v.name)] = cap
        return capped(views, caps) if caps else views

    def note_in_force(self, key: tuple[str, str | None, str], cap: InForceCap | None) -> None:
        """Record what a policy's applied objects give (``in_force``); its pods again when that changed,
        or when it is the first this process knows of it (``_awaits_in_force`` held them)."""
        first = key not in self._in_force_known
        self._in_force_known.add(key)
        if not first and self._apply_caps.get(key) == cap:
            return
        if cap is None:
            self._apply_caps.pop(key, None)
        else:
            self._apply_caps[key] = cap
        parsed = self._parse(*key)
        trigger_pods = getattr(self, "trigger_pods", None)  # reconcile.Reconciler routes them
        if parsed is not None and parsed.view is not None and trigger_pods is not None:
            trigger_pods(self._pods_selected_by([parsed.view]))

    def note_omitted_entries(self, omitted: set[str]) -> None:
        """The probe ConfigMap's ``policiesOmitted`` (reconcile_policies.py); the pods of the policies
        that joined or left it are decided again (on native nodes they give at most Passive)."""
        changed = omitted ^ self._omitted_entries
        super().note_omitted_entries(omitted)
        trigger_pods = getattr(self, "trigger_pods", None)  # reconcile.Reconciler routes them
        if not changed or trigger_pods is None:
            return
        views = [
            parsed.view
            for (kind, ns, name), _ in list(self._items(INDEX_POLICIES))
            if probe_entry_key(kind=kind, namespace=ns, name=name) in changed
            and (parsed := self._parse(kind, ns, name)) is not None
            and parsed.view is not None
        ]
        trigger_pods(self._pods_selected_by(views))

    def _in_probe_config(self, views: list[PolicyView]) -> list[PolicyView]:
        """``views`` with each policy the probe ConfigMap left out lowered to Passive: the native
        probes load only the entries it holds (native/policy_config.py)."""
        if not self._omitted_entries:
            return views
        return [
            replace(v, max_level=Posture.PASSIVE, note=NATIVE_OMITTED)
            if v.max_level > Posture.PASSIVE
            and probe_entry_key(kind=v.kind, namespace=v.namespace, name=v.name) in self._omitted_entries
            else v
            for v in views
        ]

    def _awaits_in_force(self, pod: PodSnapshot) -> bool:
        """A policy selecting ``pod`` on a Tetragon node has not been applied by this process yet, so
        what it gives is not known: its cap (``in_force``) is memory, and a restarted operator lifted
        a capped pod to the full level and back. Its first reconcile decides the pod again."""
        self.policy_views()
        unknown = [
            v
            for v in (*self._views_by_ns.get(pod.namespace, ()), *self._cluster_views)
            if (v.kind, v.namespace, v.name) not in self._in_force_known
        ]
        if not unknown:
            return False
        node = self._node_caps(pod.node)
        if node is None or node.working_source != "tetragon":
            return False  # the native probes and no source: no applied object decides anything there
        ns_labels = self._one(INDEX_NAMESPACES, pod.namespace) or {}
        return any(
            policy_selects(v, pod_labels=pod.labels, namespace=pod.namespace, namespace_labels=ns_labels)
            for v in unknown
        )

    def pod_decision(self, pod: PodSnapshot) -> PostureDecision:
        self.policy_views()
        candidates = self._views_by_ns.get(pod.namespace, []) + self._cluster_views
        node = self._node_caps(pod.node)
        if node is not None and node.working_source == "native":
            candidates = self._in_probe_config(candidates)  # only what the native probes load
        elif node is not None:
            if self._apply_caps:
                candidates = capped(candidates, self._apply_caps)  # only what their applied objects trace
            candidates = self._loaded_on(candidates, pod.node)  # ... and what the node's Tetragon loaded
        decision = compute_posture(
            annotations=pod.annotations,
            pod_labels=pod.labels,
            namespace=pod.namespace,
            namespace_labels=self._one(INDEX_NAMESPACES, pod.namespace) or {},
            policies=candidates,
            node=node,
        )
        agent = self._agent_of(pod)
        if agent is not None and not decision.opted_out:  # opted out: that says None, and more
            why = f"a StellaOps agent pod (DaemonSet {pod.namespace}/{pod.controller and pod.controller[1]} "
            why += f"of RuntimeObserver {agent}): the agents do not observe themselves"
            decision = replace(decision, posture=Posture.NONE, reason=why, observe_label=False)
        return decision

    def _agent_of(self, pod: PodSnapshot) -> str | None:
        """The RuntimeObserver whose agent DaemonSet (one the operator owns, by uid) runs ``pod``.

        Never by name or labels alone, which any pod may copy: the pod's controller must be the
        very DaemonSet object (same uid) that the operator rendered for a RuntimeObserver.
        """
        ref = pod.controller
        if ref is None or ref[0] != "DaemonSet" or not ref[2]:
            return None
        ds = self._one(INDEX_OWNED, ("apps/v1", "DaemonSet", pod.namespace or None, ref[1]))
        meta = ds.get("metadata") if isinstance(ds, dict) else None
        if not isinstance(meta, dict) or meta.get("uid") != ref[2]:
            return None
        owner = controller_of(ds or {})
        if owner is None or owner.get("kind") != OBSERVER_KIND or owner.get("apiVersion") != API_VERSION:
            return None
        return str(owner.get("name") or "")

    async def reconcile_pod(self, namespace: str, name: str) -> None:
        key = ("v1", "Pod", namespace, name)
        seen: PodSnapshot | None = self._one(INDEX_PODS, (namespace, name))
        pod = self._pod((namespace, name))
        if seen is None or pod is None or pod.deleting or self._awaits_in_force(pod):
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
        if pod.uid:  # a precondition: a pod made again under the name since the read is not this one
            patch["metadata"]["uid"] = pod.uid
        try:
            await self.api.patch(r.PODS, name=name, namespace=namespace, patch=patch)
        except ApiError as e:
            if e.not_found or e.uid_mismatch:  # gone, or replaced: the new pod's event reconciles it
                return
            raise
        self.stats.writes["pod"] += 1
        self._remember(key, pod_part(seen), pod.patched(patch))

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
            f"{OBSERVE_LEVEL_ANNOTATION}={shown_value(value)} is not an observe level, so the pod is "
            f"opted out (None) until it is one; {allowed_levels_message()}. "
            f"Effective posture: {decision.posture} ({decision.reason})"
        )
        await self._event(pod.ref, type="Warning", reason="InvalidObserveLevel", message=message)
