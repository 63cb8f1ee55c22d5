"""Observation policies parsed, rendered and viewed: what every reconcile reads of the policies.

Split from controller/reconcile_policies.py (395 lines, at the module limit) without a change:
the parse and render cache (by the policy's uid and spec, so a reconcile of an unchanged policy
costs no parse), the policy views that decide which pods a policy selects (``reconcile_pods``),
every policy's native-probe entry (``reconcile_observers``), the namespaces being deleted, and the
node staleness noticed on a rollout fold. ``reconcile_policies.PolicyReconciler`` builds on it.
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
from stellaops_runtime.controller.naming import canonical_json
from stellaops_runtime.controller.owned import OwnedWriter
from stellaops_runtime.controller.posture import PolicyView, policy_selects, policy_view
from stellaops_runtime.controller.render_policy import RenderedPolicy, probe_entry_key, render_policy
from stellaops_runtime.controller.state import (
    INDEX_NAMESPACES,
    INDEX_OWNED,
    INDEX_PODS,
    INDEX_PODS_BY_NODE,
    INDEX_POLICIES,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Parsed:
    fingerprint: str
    spec: PolicySpec | None
    error: SpecError | None
    rendered: RenderedPolicy | None = None
    view: PolicyView | None = None


class PolicyParsing(OwnedWriter):
    """Policy parsing, views and probe entries (the base of ``reconcile_policies.PolicyReconciler``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parsed: dict[tuple[str, str | None, str], _Parsed] = {}
        self._views: list[PolicyView] | None = None
        self._views_by_ns: dict[str, list[PolicyView]] = {}
        self._cluster_views: list[PolicyView] = []
        self._stale_nodes: set[str] | None = None  # as of the last rollout fold (None: not folded yet)
        self._omitted_entries: set[str] = set()  # probe entries the probe ConfigMap could not hold

    # -- namespaces being deleted ---------------------------------------------------------------

    def namespace_terminating(self, *, name: str, terminating: bool) -> None:
        """A namespace's deletion state (from its watch events); a namespace back in use re-renders."""
        if terminating:
            if name not in self._terminating:
                self._terminating.add(name)
                self._owners_of_going_objects(name)
        elif name in self._terminating:
            self._terminating.discard(name)
            for kind, ns, policy in [k for k, _ in self._items(INDEX_POLICIES)]:
                if ns == name:
                    self.trigger_policy(kind, ns, policy)

    def _owners_of_going_objects(self, namespace: str) -> None:
        """Reconcile the owners of our objects being deleted in ``namespace``, which just started going.

        Their WaitingForDeletion message promised the object back; no event of the object follows
        (it was being deleted already), so the namespace's event is what turns it to "not created
        again" (tests/integration/test_owned_terminating.py), not the bound's timer.
        """
        for key, body in self._items(INDEX_OWNED):
            meta = body.get("metadata") if isinstance(body, dict) else None
            if key[2] != namespace or not isinstance(meta, dict) or not meta.get("deletionTimestamp"):
                continue
            for ref in meta.get("ownerReferences") or ():
                kind, owner = (ref.get("kind"), ref.get("name")) if isinstance(ref, dict) else (None, None)
                if not isinstance(owner, str):
                    continue
                if kind == crds.OBSERVER_KIND:
                    trigger = getattr(self, "trigger", None)
                    if trigger is not None:
                        trigger(("observer", owner))
                elif kind in (POLICY_KIND, CLUSTER_POLICY_KIND):
                    self.trigger_policy(kind, namespace if kind == POLICY_KIND else None, owner)

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
