"""Observation policies: parse and render them, apply their Tetragon objects, fold the rollout.

A policy's reconcile renders its Tetragon ``TracingPolicy`` or
``TracingPolicyNamespaced`` objects (``render_policy``), writes the
difference through the ownership-checked writer (``owned``), removes the
objects it no longer renders, folds how the nodes report them into
``status.rollout`` (``rollout.fold_rollout``) and writes the status. Parsing
and rendering are cached by the policy's uid and spec, so a reconcile of an
unchanged policy costs no parse. The same parsed views decide which pods a
policy selects (``reconcile_pods``) and what goes into the agents' native
probe ConfigMap (``reconcile_observers``).

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

import collections
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import (
    CLUSTER_POLICY_KIND,
    POLICY_KIND,
    PolicySpec,
    SpecError,
    parse_policy_spec,
)
from stellaops_runtime.controller.conditions import state_conditions
from stellaops_runtime.controller.in_force import in_force_cap
from stellaops_runtime.controller.naming import canonical_json
from stellaops_runtime.controller.owned import OwnedWriter
from stellaops_runtime.controller.ownership import NOT_OWNED_REASON, NotOwnedError, Owner
from stellaops_runtime.controller.policy_state import policy_state as _policy_state
from stellaops_runtime.controller.posture import PolicyView, policy_selects, policy_view
from stellaops_runtime.controller.purl_coverage import fold_purl_functions
from stellaops_runtime.controller.render_policy import (
    OMITTED_NOTE,
    RenderedPolicy,
    probe_entry_key,
    render_policy,
)
from stellaops_runtime.controller.rollout import NodeReport, awaiting_since, fold_rollout, index_nodes
from stellaops_runtime.controller.rollout_overdue import timed_splits
from stellaops_runtime.controller.state import (
    INDEX_NAMESPACES,
    INDEX_OBSERVATION_NODES,
    INDEX_PODS,
    INDEX_PODS_BY_NODE,
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


@dataclass(slots=True)
class _Parsed:
    fingerprint: str
    spec: PolicySpec | None
    error: SpecError | None
    rendered: RenderedPolicy | None = None
    view: PolicyView | None = None


def policy_owner(kind: str, namespace: str | None, name: str, uid: str | None = None) -> Owner:
    """The owner a policy's Tetragon objects must name (see ``ownership``)."""
    return Owner(
        api_version=crds.API_VERSION,
        kind=kind,
        name=name,
        uid=uid or "",
        entry=probe_entry_key(kind=kind, namespace=namespace, name=name),
    )


class PolicyReconciler(OwnedWriter):
    """Policy parsing, views and reconciles (mixed into ``reconcile.Reconciler``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parsed: dict[tuple[str, str | None, str], _Parsed] = {}
        self._views: list[PolicyView] | None = None
        self._views_by_ns: dict[str, list[PolicyView]] = {}
        self._cluster_views: list[PolicyView] = []
        self._terminating: set[str] = set()  # namespaces being deleted: nothing is created there
        self._stale_nodes: set[str] | None = None  # as of the last rollout fold (None: not folded yet)
        self._omitted_entries: set[str] = set()  # probe entries the probe ConfigMap could not hold

    # -- namespaces being deleted ---------------------------------------------------------------

    def namespace_terminating(self, *, name: str, terminating: bool) -> None:
        """A namespace's deletion state (from its watch events); a namespace back in use re-renders."""
        if terminating:
            self._terminating.add(name)
        elif name in self._terminating:
            self._terminating.discard(name)
            for kind, ns, policy in [k for k, _ in self._items(INDEX_POLICIES)]:
                if ns == name:
                    self.trigger_policy(kind, ns, policy)

    def _notice_staleness(self, stale: set[str]) -> None:
        """Nodes that went stale (or fresh) since the last fold: their labels and pods again.

        A heartbeat that stops sends no event; the periodic refold of the
        rollouts (``rollout_refresh_seconds``) is what notices it.
        """
        before, self._stale_nodes = self._stale_nodes, stale
        if before is None or before == stale:
            return
        trigger = getattr(self, "trigger", None)
        trigger_pods = getattr(self, "trigger_pods", None)
        for node in sorted(before ^ stale):
            if trigger is not None:
                trigger(("node", node))
            if trigger_pods is not None:
                trigger_pods(self._all(INDEX_PODS_BY_NODE, node))

    def trigger_policy(self, kind: str, namespace: str | None, name: str) -> None:
        """Reconcile one policy (``reconcile.Reconciler`` routes it to its scheduler)."""
        trigger = getattr(self, "trigger", None)
        if trigger is not None:
            trigger(("policy", kind, namespace, name))

    # -- policies: parsing, views ---------------------------------------------------------------

    def _policy_body(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        seen = self._one(INDEX_POLICIES, (kind, namespace, name))
        return self._resource((crds.API_VERSION, kind, namespace, name), seen)

    def _parse(self, kind: str, namespace: str | None, name: str) -> _Parsed | None:
        """Parse (cached by spec and uid) a policy from the index; None if absent or being deleted."""
        body = self._policy_body(kind, namespace, name)
        key = (kind, namespace, name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            self._parsed.pop(key, None)
            return None
        meta = body.get("metadata") or {}
        fp = canonical_json([meta.get("uid"), body.get("spec")])
        cached = self._parsed.get(key)
        if cached is not None and cached.fingerprint == fp:
            return cached
        try:
            spec = parse_policy_spec(body.get("spec") or {}, cluster=kind == CLUSTER_POLICY_KIND)
        except SpecError as e:
            parsed = _Parsed(fingerprint=fp, spec=None, error=e)
        else:
            parsed = _Parsed(
                fingerprint=fp,
                spec=spec,
                error=None,
                view=policy_view(kind=kind, namespace=namespace, name=name, spec=spec),
            )
        self._parsed[key] = parsed
        return parsed

    def _rendered(self, kind: str, namespace: str | None, name: str) -> RenderedPolicy | None:
        parsed = self._parse(kind, namespace, name)
        if parsed is None or parsed.spec is None:
            return None
        if parsed.rendered is None:
            body = self._policy_body(kind, namespace, name) or {}
            parsed.rendered = render_policy(
                kind=kind,
                name=name,
                namespace=namespace,
                uid=str((body.get("metadata") or {}).get("uid") or ""),
                spec=parsed.spec,
            )
        return parsed.rendered

    def policy_views(self) -> list[PolicyView]:
        """Views of every valid policy not being deleted (cached until a policy changes)."""
        if self._views is None:
            views = []
            for (kind, ns, name), _ in self._items(INDEX_POLICIES):
                parsed = self._parse(kind, ns, name)
                if parsed is not None and parsed.view is not None:
                    views.append(parsed.view)
            self._views = views
            self._views_by_ns = collections.defaultdict(list)
            self._cluster_views = []
            for v in views:
                if v.kind == POLICY_KIND:
                    self._views_by_ns[v.namespace or ""].append(v)
                else:
                    self._cluster_views.append(v)
        return self._views

    def _pods_selected_by(self, views: Iterable[PolicyView]) -> set[tuple[str, str]]:
        views = list(views)
        out: set[tuple[str, str]] = set()
        if not views:
            return out
        for (ns, name), pod in self._items(INDEX_PODS):
            ns_labels = self._one(INDEX_NAMESPACES, ns) or {}
            for v in views:
                if policy_selects(v, pod_labels=pod.labels, namespace=ns, namespace_labels=ns_labels):
                    out.add((ns, name))
                    break
        return out

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
        missing_crd = False
        missing: list[str] = []  # rendered objects not applied: pods get no more than the rest give
        wanted = {obj_key(o) for o in rendered.tracing_policies}
        for obj in rendered.tracing_policies:
            try:
                await self.apply(obj)
            except NotOwnedError as e:
                refused.append(e)
                missing.append(obj["metadata"]["name"])
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
            note((kind, namespace, name), in_force_cap(rendered.tracing_policies, missing))
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

    def note_omitted_entries(self, omitted: set[str]) -> None:
        """The probe ConfigMap's ``policiesOmitted``; the policies that joined or left it again."""
        changed, self._omitted_entries = omitted ^ self._omitted_entries, omitted
        if changed and omitted:
            log.warning(
                "the probe ConfigMap cannot hold every policy's probe entry (1 MiB): the native probes "
                "do not cover %d: %s",
                len(omitted),
                ", ".join(sorted(omitted)[:20]),
            )
        for (kind, ns, name), _ in list(self._items(INDEX_POLICIES)):
            if probe_entry_key(kind=kind, namespace=ns, name=name) in changed:
                self.trigger_policy(kind, ns, name)

    def probe_entries(self) -> dict[str, dict]:
        """Every valid policy's native-probe entry (policies being deleted are left out)."""
        entries: dict[str, dict] = {}
        for (kind, ns, name), _ in self._items(INDEX_POLICIES):
            rendered = self._rendered(kind, ns, name)
            if rendered is not None:
                entries[probe_entry_key(kind=kind, namespace=ns, name=name)] = rendered.probe_entry
        return entries


def _namespace_terminating(e: ApiError) -> bool:
    """NamespaceLifecycle's refusal: 403 '... because it is being terminated'."""
    return e.status == 403 and "being terminated" in e.message
