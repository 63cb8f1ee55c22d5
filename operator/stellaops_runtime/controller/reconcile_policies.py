"""Observation policies: parse and render them, apply their Tetragon objects, fold the rollout.

A policy's reconcile renders its Tetragon ``TracingPolicy`` or
``TracingPolicyNamespaced`` objects (``render_policy``), writes the
difference through the ownership-checked writer (``owned``), removes the
objects it no longer renders, folds how the nodes report them into
``status.rollout`` (``rollout.fold_rollout``) and writes the status. Parsing,
rendering and the policy views it builds on are in ``policy_parsing``.

An object of a rendered name that is not ours (another team's Tetragon
policy, say) is never overwritten or deleted: the policy becomes Degraded
with reason ``NotOwned`` and a Warning Event says which object and why.

An ObservationPolicy in a namespace being deleted (``deletionTimestamp`` or
phase ``Terminating``) is left alone: nothing is created there (the API
server's NamespaceLifecycle admission would refuse it with a 403) and no
status is written; the namespace's deletion removes the policy and its
objects. A 403 that says the namespace is being terminated marks it so too.
"""

from __future__ import annotations

import logging
from typing import Any

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import POLICY_KIND
from stellaops_runtime.controller.conditions import state_conditions
from stellaops_runtime.controller.in_force import in_force_cap
from stellaops_runtime.controller.owned import TerminatingError, held_too_long
from stellaops_runtime.controller.ownership import NOT_OWNED_REASON, NotOwnedError, Owner
from stellaops_runtime.controller.policy_parsing import PolicyParsing
from stellaops_runtime.controller.policy_state import policy_state as _policy_state
from stellaops_runtime.controller.purl_coverage import fold_purl_functions
from stellaops_runtime.controller.render_policy import OMITTED_NOTE, probe_entry_key
from stellaops_runtime.controller.rollout import NodeReport, awaiting_since, fold_rollout, index_nodes
from stellaops_runtime.controller.rollout_overdue import timed_splits
from stellaops_runtime.controller.state import (
    INDEX_OBSERVATION_NODES,
    INDEX_POLICIES,
    ObjKey,
    obj_key,
    utcnow,
)
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import ApiError

log = logging.getLogger(__name__)

POLICY_STATUS_KEYS = (
    "observedGeneration",
    "conditions",
    "tetragonPolicies",
    "unresolvedFunctions",
    "notes",
    "rollout",
    "purlFunctions",
)
TETRAGON_KINDS = frozenset({crds.TETRAGON_POLICY_KIND, crds.TETRAGON_NAMESPACED_KIND})


def policy_owner(kind: str, namespace: str | None, name: str, uid: str | None = None) -> Owner:
    """The owner a policy's Tetragon objects must name (see ``ownership``)."""
    return Owner(
        api_version=crds.API_VERSION,
        kind=kind,
        name=name,
        uid=uid or "",
        entry=probe_entry_key(kind=kind, namespace=namespace, name=name),
    )


class PolicyReconciler(PolicyParsing):
    """Policy reconciles (mixed into ``reconcile.Reconciler``); parsing and views: ``policy_parsing``."""

    # -- policies ----------------------------------------------------------------------------------

    def _policy_children(self, kind: str, namespace: str | None, name: str, uid: str | None) -> set[ObjKey]:
        owners: list[Any] = [("policy", probe_entry_key(kind=kind, namespace=namespace, name=name))]
        if uid:
            owners.append(("uid", uid))
        return {k for k in self._children(*owners) if k[1] in TETRAGON_KINDS}

    async def reconcile_policy(self, kind: str, namespace: str | None, name: str) -> None:
        seen = self._one(INDEX_POLICIES, (kind, namespace, name))
        key = (crds.API_VERSION, kind, namespace, name)
        body = self._resource(key, seen)
        res = r.OBSERVATION_POLICIES if kind == POLICY_KIND else r.CLUSTER_OBSERVATION_POLICIES
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            self._forget_policy((kind, namespace, name))
            uid = ((body or {}).get("metadata") or {}).get("uid")
            children = self._policy_children(kind, namespace, name, uid)
            # Refusals are logged by the writer; they do not hold the policy's deletion.
            await self.delete_children(children, policy_owner(kind, namespace, name, uid))
            return
        if kind == POLICY_KIND and namespace in self._terminating:
            log.debug("%s %s/%s: namespace is being deleted; nothing rendered", kind, namespace, name)
            return
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        generation = meta.get("generation")
        parsed = self._parse(kind, namespace, name)
        assert parsed is not None
        owner = policy_owner(kind, namespace, name, uid)
        if parsed.error is not None:
            self._apply_caps.pop((kind, namespace, name), None)
            await self.delete_children(self._policy_children(kind, namespace, name, uid), owner)
            err = parsed.error
            status = {
                "observedGeneration": generation,
                "conditions": state_conditions(
                    state="Stalled", reason=err.reason, message=err.message, generation=generation
                ),
                "tetragonPolicies": [],
                "unresolvedFunctions": [],
                "notes": [],
            }
            # The Event goes with the status change: once per new error, not once per reconcile.
            if await self._write_status(res, key, seen, body, status, owned=POLICY_STATUS_KEYS):
                await self._event(body, type="Warning", reason=err.reason, message=err.message)
            return
        rendered = self._rendered(kind, namespace, name)
        assert rendered is not None
        errors: list[str] = []
        refused: list[NotOwnedError] = []
        terminating: list[TerminatingError] = []  # not applied; made again on their DELETED event
        missing_crd = False
        missing: list[str] = []  # rendered objects not applied: pods get no more than the rest give
        deleting: list[str] = []  # of them, those being deleted (the pods' reason says so)
        wanted = {obj_key(o) for o in rendered.tracing_policies}
        for obj in rendered.tracing_policies:
            try:
                await self.apply(obj)
            except NotOwnedError as e:
                refused.append(e)
                missing.append(obj["metadata"]["name"])
            except TerminatingError as e:
                terminating.append(e)
                missing.append(obj["metadata"]["name"])
                deleting.append(obj["metadata"]["name"])
            except ApiError as e:
                if e.throttled:  # not a failure of the policy: the scheduler retries after Retry-After
                    raise
                if kind == POLICY_KIND and namespace and _namespace_terminating(e):
                    log.info("%s %s/%s: namespace is being deleted; nothing rendered", kind, namespace, name)
                    self._terminating.add(namespace)
                    return
                missing_crd = missing_crd or e.kind_not_served  # not a 404 for one object
                if self._owned(obj_key(obj)) is None:  # an older version of ours still traces: not missing
                    missing.append(obj["metadata"]["name"])
                errors.append(f"{obj['kind']} {obj['metadata']['name']}: {e.status} {e.reason}: {e.message}")
        if (note := getattr(self, "note_in_force", None)) is not None:  # pod posture (reconcile_pods)
            note((kind, namespace, name), in_force_cap(rendered.tracing_policies, missing, deleting))
        refused += await self.delete_children(
            self._policy_children(kind, namespace, name, uid) - wanted, owner
        )
        names = [o["metadata"]["name"] for o in rendered.tracing_policies]
        nodes = [n for _, n in self._items(INDEX_OBSERVATION_NODES)]
        now = utcnow()
        stale_after, beats = self.config.stale_after_seconds, self.heartbeats.received_all(nodes, now=now)
        reports = index_nodes(nodes, now=now, stale_after_seconds=stale_after, beats=beats)
        self._notice_staleness({r.name for r in reports if r.kind == "stale"})
        spec_written, versions = self.written_versions(wanted)
        deaf: list[NodeReport] = []  # counted pending for NoEventSource: Degraded after the bound
        rollout = fold_rollout(
            tetragon_policies=[(namespace, n) for n in names],
            nodes=(),
            now=now,
            stale_after_seconds=stale_after,
            max_messages=self.config.max_rollout_messages,
            reports=reports,
            written=spec_written,
            versions=versions,
            deaf=deaf,
        )
        # Refolded on the next report of a node that has not reported since the write (reconcile.py).
        if (waiting := awaiting_since(reports, spec_written)) is not None:
            self._awaiting_reports[(kind, namespace, name)] = waiting
        else:
            self._awaiting_reports.pop((kind, namespace, name), None)
        held, next_in = held_too_long(terminating, now=now, bound=stale_after)
        if next_in is not None:  # no event comes when a finalizer stays: look again at the bound
            self.look_again(("policy", kind, namespace, name), next_in + 0.05)
        after = self.config.tetragon_unreachable_seconds  # since when: on the operator's clock
        unreachable, no_source = timed_splits(
            reports if names else (), deaf, now=now, after_seconds=after, heartbeats=self.heartbeats
        )
        state, reason, message = _policy_state(
            names=names,
            rollout=rollout,
            errors=errors,
            missing_crd=missing_crd,
            refused=refused,
            unreachable=unreachable,
            unreachable_after=after,
            no_source=no_source,
            terminating=[str(e) for e in terminating],
            held_too_long=[str(e) for e in held],
            held_after=stale_after,
        )
        purl_functions = fold_purl_functions(  # which source covers each function named by purl
            policy=probe_entry_key(kind=kind, namespace=namespace, name=name),
            functions=rendered.unresolved_functions,
            nodes=nodes,
            now=now,
            stale_after_seconds=stale_after,
            beats=beats,  # staleness on the operator's clock (heartbeats)
        )
        status = {
            "observedGeneration": generation,
            "conditions": state_conditions(
                state=state, reason=reason, message=message, generation=generation
            ),
            "tetragonPolicies": names,
            "unresolvedFunctions": rendered.unresolved_functions,
            "notes": [*rendered.notes, OMITTED_NOTE]
            if probe_entry_key(kind=kind, namespace=namespace, name=name) in self._omitted_entries
            else rendered.notes,
            "rollout": rollout,
            "purlFunctions": purl_functions,
        }
        written = await self._write_status(res, key, seen, body, status, owned=POLICY_STATUS_KEYS)
        if refused and written:  # once per change of the condition, not once per retry
            await self._event(body, type="Warning", reason=NOT_OWNED_REASON, message=message)
        if errors or refused:
            raise RuntimeError("; ".join([*errors, *map(str, refused)]))  # retried with backoff


def _namespace_terminating(e: ApiError) -> bool:
    """NamespaceLifecycle's refusal: 403 '... because it is being terminated'."""
    return e.status == 403 and "being terminated" in e.message
