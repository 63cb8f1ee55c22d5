"""RuntimeObservers: render and keep converged the agent fleet, and report it in the status.

One reconcile per RuntimeObserver: render its ServiceAccount, ConfigMap,
DaemonSet and metrics Service in the agent namespace (``render_agent``) and
the native probes' ConfigMap (``render_policy.render_probe_configmap``, every
valid policy's entry), write the difference through the ownership-checked
writer (``owned``), delete what it no longer renders, and fold the
DaemonSet's status, the pods' postures and the ObservationNodes into the
observer's status. Its cluster RBAC is not rendered: the agents' ClusterRole
and ClusterRoleBinding come with the manifests (docs/security.md says why).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import POSTURE_ANNOTATION, SpecError, parse_observer_spec
from stellaops_runtime.controller.conditions import State, state_conditions
from stellaops_runtime.controller.ownership import NOT_OWNED_REASON, NotOwnedError, Owner
from stellaops_runtime.controller.posture import Posture, node_capabilities
from stellaops_runtime.controller.reconcile_policies import PolicyReconciler
from stellaops_runtime.controller.render_agent import probe_configmap_name, render_agent_objects
from stellaops_runtime.controller.render_policy import render_probe_configmap
from stellaops_runtime.controller.rollout import parse_time
from stellaops_runtime.controller.state import (
    INDEX_OBSERVATION_NODES,
    INDEX_OBSERVERS,
    INDEX_PODS,
    obj_key,
    utcnow,
)
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import ApiError

OBSERVER_STATUS_KEYS = (
    "observedGeneration",
    "conditions",
    "desiredAgents",
    "readyAgents",
    "postureCounts",
    "nodes",
)
# What a RuntimeObserver owns, all in its agent namespace.
AGENT_KINDS = frozenset({"ServiceAccount", "ConfigMap", "DaemonSet", "Service"})


def observer_owner(name: str = "", uid: str = "") -> Owner:
    """The owner the agent objects of a RuntimeObserver must name (by name, or by uid once it is gone)."""
    return Owner(api_version=crds.API_VERSION, kind=crds.OBSERVER_KIND, name=name, uid=uid)


class ObserverReconciler(PolicyReconciler):
    """The agent fleet of each RuntimeObserver (mixed into ``reconcile.Reconciler``)."""

    async def reconcile_observer(self, name: str) -> None:
        seen = self._one(INDEX_OBSERVERS, name)
        key = (crds.API_VERSION, crds.OBSERVER_KIND, None, name)
        body = self._resource(key, seen)
        if body is None:
            return  # its objects carry owner references: the garbage collector removes them
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return
        uid = str(meta.get("uid") or "")
        generation = meta.get("generation")
        try:
            spec = parse_observer_spec(body.get("spec") or {})
        except SpecError as err:
            status = {
                "observedGeneration": generation,
                "conditions": state_conditions(
                    state="Stalled",
                    reason=err.reason,
                    message=f"{err.message} (the agents keep their last valid configuration)",
                    generation=generation,
                ),
            }
            if await self._write_status(r.RUNTIME_OBSERVERS, key, seen, body, status, owned=()):
                await self._event(body, type="Warning", reason=err.reason, message=err.message)
            return
        namespace = spec.agent_namespace
        desired = render_agent_objects(name=name, uid=uid, namespace=namespace, spec=spec)
        desired.append(
            render_probe_configmap(
                name=probe_configmap_name(name),
                namespace=namespace,
                entries=self.probe_entries(),
                owner=body,
            )
        )
        errors: list[str] = []
        refused: list[NotOwnedError] = []
        for obj in desired:
            try:
                await self.apply(obj)
            except NotOwnedError as e:
                refused.append(e)
            except ApiError as e:
                errors.append(f"{obj['kind']} {obj['metadata']['name']}: {e.status} {e.reason}: {e.message}")
        wanted = {obj_key(o) for o in desired}
        if uid:
            stale = {c for c in self._children(("uid", uid)) - wanted if c[1] in AGENT_KINDS}
            refused += await self.delete_children(stale, observer_owner(name))
        ds_key = next(obj_key(o) for o in desired if o["kind"] == "DaemonSet")
        ds = self._owned(ds_key) or {}
        status = self._observer_status(
            ds=ds, generation=generation, errors=[*map(str, refused), *errors], namespace=namespace
        )
        if refused:
            message = "; ".join([*map(str, refused), *errors])
            status["conditions"] = state_conditions(
                state="Degraded", reason=NOT_OWNED_REASON, message=message, generation=generation
            )
        written = await self._write_status(
            r.RUNTIME_OBSERVERS, key, seen, body, status, owned=OBSERVER_STATUS_KEYS
        )
        if refused and written:
            await self._event(body, type="Warning", reason=NOT_OWNED_REASON, message=message)
        if errors or refused:
            raise RuntimeError("; ".join([*errors, *map(str, refused)]))

    def posture_counts(self) -> dict[str, int]:
        counts = {p.value: 0 for p in Posture}
        for key, pod in self._items(INDEX_PODS):
            value = (self._pod(key) or pod).annotations.get(POSTURE_ANNOTATION)
            if value in counts:
                counts[value] += 1
        return counts

    def node_counts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"total": 0, "tetragon": 0, "native": 0, "none": 0, "stale": 0}
        ceilings = {p.value: 0 for p in Posture}
        now = utcnow()
        for _, node in self._items(INDEX_OBSERVATION_NODES):
            out["total"] += 1
            status = node.get("status") or {}
            beat = parse_time(status.get("heartbeatTime"))
            if beat is None or (now - beat).total_seconds() > self.config.stale_after_seconds:
                out["stale"] += 1
                continue
            source = status.get("source")
            out[source if source in ("tetragon", "native") else "none"] += 1
            caps = node_capabilities(node)
            if caps is not None:
                ceilings[caps.ceiling()[0].value] += 1
        out["maxPosture"] = ceilings
        return out

    def _observer_status(
        self, *, ds: Mapping[str, Any], generation: Any, errors: list[str], namespace: str
    ) -> dict[str, Any]:
        ds_status = ds.get("status") or {}
        desired = int(ds_status.get("desiredNumberScheduled") or 0)
        ready = int(ds_status.get("numberReady") or 0)
        updated = int(ds_status.get("updatedNumberScheduled") or 0)
        ds_gen = (ds.get("metadata") or {}).get("generation")
        ds_seen = ds_status.get("observedGeneration")
        state: State
        if errors:
            state, reason, message = "Degraded", "ApplyFailed", "; ".join(errors)
        elif not ds_status or (ds_gen is not None and ds_seen is not None and ds_seen < ds_gen):
            state, reason, message = (
                "Progressing",
                "WaitingForDaemonSet",
                (f"the agent DaemonSet in {namespace} has not reported this configuration yet"),
            )
        elif desired == 0:
            state, reason, message = "Progressing", "NoNodes", "no node matches the agent's nodeSelector yet"
        elif ready < desired or updated < desired:
            state, reason, message = (
                "Progressing",
                "RollingOut",
                (f"{ready}/{desired} agents ready, {updated}/{desired} updated"),
            )
        else:
            state, reason, message = "Ready", "AgentsReady", f"{ready}/{desired} agents ready"
        return {
            "observedGeneration": generation,
            "conditions": state_conditions(
                state=state, reason=reason, message=message, generation=generation
            ),
            "desiredAgents": desired,
            "readyAgents": ready,
            "postureCounts": self.posture_counts(),
            "nodes": self.node_counts(),
        }
