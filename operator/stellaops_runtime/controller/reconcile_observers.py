"""RuntimeObservers: render and keep converged the agent fleet, and report it in the status.

One reconcile per RuntimeObserver: render its ServiceAccount, ConfigMap,
DaemonSet and metrics Service in the agent namespace (``render_agent``) and
the native probes' ConfigMap (``render_policy.render_probe_configmap``, every
valid policy's entry and every pod opted out by its annotation, terminating
ones included since their processes still run), write the difference through the ownership-checked
writer (``owned``), delete what it no longer renders, and fold the
DaemonSet's status, the pods' postures and the ObservationNodes into the
observer's status. Its cluster RBAC is not rendered: the agents' ClusterRole
and ClusterRoleBinding come with the manifests (docs/security.md says why).

Two inputs besides the observer itself:

- the store Secret (``spec.store.secretRef``, in the agent namespace) is read
  on every reconcile (a GET; the operator may read only that one Secret by
  name, manifests/operator/rbac.yaml) and its uid/resourceVersion hashed into
  the pod template, so a changed Secret rolls the agents. Secrets are not
  watched (that needs list on every Secret): a RuntimeObserver is also
  reconciled every ``rollout_refresh_seconds`` (30 s) by a timer, which
  bounds how late a Secret change rolls the agents;
- the agent pods' container statuses (kopf's pod index): a pod the kubelet
  cannot start (``agent_pods``: a capability the node lacks, a missing
  Secret, an image that cannot be pulled) makes the observer Degraded with
  the kubelet's reason and message;
- the fresh ObservationNodes' ``ContainersKnown`` and ``ExportPositionRecorded``
  (``node_backing``, kopf's index, no API call): the ``NotObservedBacked``
  condition, and Degraded (Progressing for ``RegistryNotInSync`` until it has
  lasted ``registry_not_in_sync_seconds``) once the agents are ready but
  some cannot back "not observed" (at once for an agent holding what it
  read: it answers ``/readyz`` 503, so it is never ready); a node whose
  report is still an older rollout's agent's (``status.agentTemplate``) is
  Progressing (``AgentsRollingOut``) until its new agent writes, Degraded
  (``AgentReportOutdated``) if it has not ``stale_after_seconds`` after the
  DaemonSet said every agent updated and ready.

An agent object being deleted (``deletionTimestamp`` set, a finalizer pending) is not applied
(``owned.TerminatingError``): the observer is Progressing, ``WaitingForDeletion``, naming it, until
its DELETED event reconciles the observer, which creates it again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import (
    OBSERVE_LEVEL_ANNOTATION,
    OBSERVER_LABEL,
    POSTURE_ANNOTATION,
    SpecError,
    parse_observer_spec,
)
from stellaops_runtime.contracts.posture import names_a_level
from stellaops_runtime.controller.agent_pods import fleet_problem
from stellaops_runtime.controller.conditions import WAITING_FOR_DELETION, State, state_conditions
from stellaops_runtime.controller.node_backing import BACKING_CONDITION
from stellaops_runtime.controller.observer_nodes import ObserverNodes, agent_templates, raw_selector
from stellaops_runtime.controller.opted_out import OptedOutPod
from stellaops_runtime.controller.owned import TerminatingError, held_too_long
from stellaops_runtime.controller.ownership import NOT_OWNED_REASON, NotOwnedError, Owner
from stellaops_runtime.controller.posture import Posture, opts_out
from stellaops_runtime.controller.render_agent import (
    agent_resource_name,
    probe_configmap_name,
    render_agent_objects,
    rendered_agent_template,
    store_secret_token,
)
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY, render_probe_configmap
from stellaops_runtime.controller.runtime_socket import socket_mounted_alone
from stellaops_runtime.controller.state import (
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
log = logging.getLogger(__name__)

# What a RuntimeObserver owns, all in its agent namespace.
AGENT_KINDS = frozenset({"ServiceAccount", "ConfigMap", "DaemonSet", "Service"})
# Read (get) only, never listed or watched: the store Secret named by a RuntimeObserver.
SECRETS = r.Resource("v1", "Secret", "secrets", True)


def observer_owner(name: str = "", uid: str = "") -> Owner:
    """The owner the agent objects of a RuntimeObserver must name (by name, or by uid once it is gone)."""
    return Owner(api_version=crds.API_VERSION, kind=crds.OBSERVER_KIND, name=name, uid=uid)


class ObserverReconciler(ObserverNodes):
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
                "conditions": [
                    *state_conditions(
                        state="Stalled",
                        reason=err.reason,
                        message=f"{err.message} (the agents keep their last valid configuration)",
                        generation=generation,
                    ),
                    self.node_backing(generation, raw_selector(body)).condition,  # they still run
                ],
            }
            if await self._write_status(r.RUNTIME_OBSERVERS, key, seen, body, status, owned=()):
                await self._event(body, type="Warning", reason=err.reason, message=err.message)
            await self._keep_probe_configmap(name, body, uid)
            return
        namespace = spec.agent_namespace
        secret_ref = spec.store.secret_ref
        desired = render_agent_objects(
            name=name,
            uid=uid,
            namespace=namespace,
            spec=spec,
            store_secret=await self.store_secret_version(namespace, secret_ref.name),
        )
        probe_cm = render_probe_configmap(
            name=probe_configmap_name(name),
            namespace=namespace,
            entries=self.probe_entries(),
            owner=body,
            opted_out=self.opted_out_pods(),
            opted_in=self.opted_in_pods(),
        )
        if '"optedOutOmitted"' in probe_cm["data"][PROBE_CONFIG_KEY]:
            log.warning(
                "more opted-out pods than the probe ConfigMap %s/%s holds: the rest rely on the "
                "annotation or label reaching the agents",
                namespace,
                probe_cm["metadata"]["name"],
            )
        doc = probe_cm["data"][PROBE_CONFIG_KEY]
        left_out = json.loads(doc)["policiesOmitted"] if '"policiesOmitted"' in doc else []
        self.note_omitted_entries(set(left_out))  # logged once per change; their status says so
        desired.append(probe_cm)
        errors: list[str] = []
        refused: list[NotOwnedError] = []
        terminating: list[TerminatingError] = []  # not applied; made again on their DELETED event
        for obj in desired:
            try:
                await self.apply(obj)
            except NotOwnedError as e:
                refused.append(e)
            except TerminatingError as e:
                terminating.append(e)
            except ApiError as e:
                if e.throttled:  # not a failure of the agents: the scheduler retries after Retry-After
                    raise
                errors.append(f"{obj['kind']} {obj['metadata']['name']}: {e.status} {e.reason}: {e.message}")
        wanted = {obj_key(o) for o in desired}
        if uid:
            stale = {c for c in self._children(("uid", uid)) - wanted if c[1] in AGENT_KINDS}
            refused += await self.delete_children(stale, observer_owner(name))
        template = rendered_agent_template(desired)  # which rollout the agents are to run
        ds_key = next(obj_key(o) for o in desired if o["kind"] == "DaemonSet")
        ds = self._owned(ds_key) or {}
        status = self._observer_status(
            ds=ds,
            generation=generation,
            errors=[*map(str, refused), *errors],
            namespace=namespace,
            observer=name,
            selector=spec.agent.node_selector,
            socket_alone=socket_mounted_alone(spec),
            template=template,
            terminating=terminating,
        )
        if refused:
            message = "; ".join([*map(str, refused), *errors])
            status["conditions"] = state_conditions(
                state="Degraded", reason=NOT_OWNED_REASON, message=message, generation=generation
            ) + [c for c in status["conditions"] if c["type"] == BACKING_CONDITION]
        written = await self._write_status(
            r.RUNTIME_OBSERVERS, key, seen, body, status, owned=OBSERVER_STATUS_KEYS
        )
        if refused and written:
            await self._event(body, type="Warning", reason=NOT_OWNED_REASON, message=message)
        if errors or refused:
            raise RuntimeError("; ".join([*errors, *map(str, refused)]))

    async def _keep_probe_configmap(self, name: str, body: Mapping[str, Any], uid: str) -> None:
        """While the observer's spec is invalid: its probe ConfigMap stays current, and is made again
        beside the agents' DaemonSet when it was deleted (test_operator_observer_stalled.py).

        The agents keep their last valid configuration, but the probe ConfigMap is not part of
        it: it lists every policy's probe entry (a deleted policy's finalizer waits for its
        entry to leave) and the opted-out pods every agent drops the events of.
        """
        cm_name = probe_configmap_name(name)
        children = self._children(("uid", uid)) if uid else set()
        where = {str(c[2]) for c in children if c[1] == "ConfigMap" and c[3] == cm_name and c[2]}
        if not where:  # deleted: where the agents run, the DaemonSet of their last valid configuration
            ds = agent_resource_name(name)
            where = {str(c[2]) for c in children if c[1] == "DaemonSet" and c[3] == ds and c[2]}
        for namespace in sorted(where):
            probe_cm = render_probe_configmap(
                name=cm_name,
                namespace=namespace,
                entries=self.probe_entries(),
                owner=body,
                opted_out=self.opted_out_pods(),
                opted_in=self.opted_in_pods(),
            )
            try:
                await self.apply(probe_cm)
            except TerminatingError as e:  # its DELETED event reconciles the observer again
                log.info("%s", e)

    async def store_secret_version(self, namespace: str, name: str) -> str:
        """``render_agent.store_secret_token`` of the store Secret (``unreadable`` on 403, logged once)."""
        try:
            secret = await self.api.get(SECRETS, name=name, namespace=namespace)
        except ApiError as e:
            if e.status != 403:
                raise
            if (namespace, name) not in self._unreadable_secrets:
                self._unreadable_secrets.add((namespace, name))
                log.warning(
                    "may not read Secret %s/%s (%s): a change to it will not roll the agents; "
                    "grant get on it (manifests/operator/rbac.yaml)",
                    namespace,
                    name,
                    e.message,
                )
            return "unreadable"
        self._unreadable_secrets.discard((namespace, name))
        return store_secret_token(secret)

    def agent_pod_problem(self, namespace: str, observer: str) -> tuple[str, str] | None:
        """Condition reason and message when agent pods of ``observer`` cannot start (``agent_pods``)."""
        pods = []
        for (ns, pod_name), pod in self._items(INDEX_PODS):
            if ns == namespace and pod.labels.get(OBSERVER_LABEL) == observer and not pod.deleting:
                pods.append((pod_name, pod.node, pod.problems))
        return fleet_problem(pods)

    def opted_out_pods(self) -> list[OptedOutPod]:
        """Every known pod whose ``stellaops.io/observe-level`` opts it out (terminating ones too)."""
        out = []
        for key, pod in self._items(INDEX_PODS):
            view = self._pod(key) or pod
            if opts_out(view.annotations.get(OBSERVE_LEVEL_ANNOTATION)):
                out.append(OptedOutPod(namespace=view.namespace, name=view.name, uid=view.uid))
        return out

    def opted_in_pods(self) -> list[str]:
        """The uids of every known pod whose ``stellaops.io/observe-level`` names a level (``optedIn``)."""
        views = ((self._pod(key) or pod) for key, pod in self._items(INDEX_PODS))
        return [v.uid for v in views if names_a_level(v.annotations.get(OBSERVE_LEVEL_ANNOTATION))]

    def posture_counts(self) -> dict[str, int]:
        counts = {p.value: 0 for p in Posture}
        for key, pod in self._items(INDEX_PODS):
            value = (self._pod(key) or pod).annotations.get(POSTURE_ANNOTATION)
            if value in counts:
                counts[value] += 1
        return counts

    def _observer_status(
        self,
        *,
        ds: Mapping[str, Any],
        generation: Any,
        errors: list[str],
        namespace: str,
        observer: str,
        selector: Mapping[str, str],
        socket_alone: str | None = None,
        template: str | None = None,
        terminating: list[TerminatingError] | None = None,
    ) -> dict[str, Any]:
        ds_status = ds.get("status") or {}
        desired = int(ds_status.get("desiredNumberScheduled") or 0)
        ready = int(ds_status.get("numberReady") or 0)
        updated = int(ds_status.get("updatedNumberScheduled") or 0)
        ds_gen = (ds.get("metadata") or {}).get("generation")
        ds_seen = ds_status.get("observedGeneration")
        state: State
        stuck = self.agent_pod_problem(namespace, observer)
        waiting = not ds_status or (ds_gen is not None and ds_seen is not None and ds_seen < ds_gen)
        rolled = not waiting and 0 < desired <= min(ready, updated)  # every agent updated and ready
        running = agent_templates(self._items(INDEX_PODS), namespace, observer)  # old agents still there
        backing = self.node_backing(generation, selector, template=template, rolled=rolled, running=running)
        if errors:
            state, reason, message = "Degraded", "ApplyFailed", "; ".join(errors)
        elif stuck is not None:
            state, (reason, message) = "Degraded", stuck
        elif terminating:  # an agent object about to go: not applied, whatever the DaemonSet says
            bound = self.config.stale_after_seconds
            held, next_in = held_too_long(terminating, now=utcnow(), bound=bound)
            if next_in is not None:  # no event comes while a finalizer stays: look again at the bound
                self.look_again(("observer", observer), next_in + 0.05)
            if held:  # a finalizer that never goes: Degraded, so GitOps tools show it
                state, reason = "Degraded", WAITING_FOR_DELETION
                message = f"{'; '.join(map(str, held))}; held for {bound:g}s or more"
            else:
                state, reason, message = "Progressing", WAITING_FOR_DELETION, "; ".join(map(str, terminating))
        elif waiting:
            state, reason, message = (
                "Progressing",
                "WaitingForDaemonSet",
                (f"the agent DaemonSet in {namespace} has not reported this configuration yet"),
            )
        elif desired == 0:
            state, reason, message = "Progressing", "NoNodes", "no node matches the agent's nodeSelector yet"
        elif backing.held:  # its agents answer /readyz 503: "all ready" would never come
            state, reason = "Degraded", backing.reason
            message = f"{ready}/{desired} agents ready; {backing.summary}"
        elif ready < desired or updated < desired:
            state, reason, message = (
                "Progressing",
                "RollingOut",
                (f"{ready}/{desired} agents ready, {updated}/{desired} updated"),
            )
            if socket_alone and updated >= desired:  # runtime_socket: the kubelet checks it exists
                message += (
                    f"; an agent whose node has no {socket_alone} waits in ContainerCreating "
                    "(spec.containerRuntime's socket is mounted alone, type Socket: "
                    "see its pod's FailedMount event)"
                )
        elif backing.state is not None:  # the agents run, but not all of them can back "not observed"
            state, reason = backing.state, backing.reason
            message = f"{ready}/{desired} agents ready; {backing.summary}"
        else:
            state, reason, message = "Ready", "AgentsReady", f"{ready}/{desired} agents ready"
        return {
            "observedGeneration": generation,
            "conditions": [
                *state_conditions(state=state, reason=reason, message=message, generation=generation),
                backing.condition,
            ],
            "desiredAgents": desired,
            "readyAgents": ready,
            "postureCounts": self.posture_counts(),
            "nodes": self.node_counts(),
        }

    def _probe_configmap_entries(self, observer: str) -> set[str]:
        body = self._current_observer_child_configmap(observer)
        if body is None:
            return set()
        try:
            doc = json.loads((body.get("data") or {}).get(PROBE_CONFIG_KEY) or "{}")
        except ValueError:
            return set()
        policies = doc.get("policies") if isinstance(doc, dict) else None
        return set(policies) if isinstance(policies, dict) else set()

    def _current_observer_child_configmap(self, observer: str) -> dict | None:
        obs = self._resource(
            (crds.API_VERSION, crds.OBSERVER_KIND, None, observer), self._one(INDEX_OBSERVERS, observer)
        )
        if obs is None:
            return None
        spec = obs.get("spec")
        ns = (spec.get("agentNamespace") if isinstance(spec, dict) else None) or crds.DEFAULT_AGENT_NAMESPACE
        return self._owned(("v1", "ConfigMap", str(ns), probe_configmap_name(observer)))
