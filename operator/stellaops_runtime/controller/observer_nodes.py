"""The ObservationNode side of a RuntimeObserver's status: its node counts and ``NotObservedBacked``.

Split from ``reconcile_observers`` (which renders the agent fleet and writes the
status): what the fresh ObservationNodes in kopf's index say, read with no API
call. ``node_backing`` folds only the nodes the observer's agents may run on
(``spec.agent.nodeSelector`` against the Node labels kopf indexes).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import timedelta
from typing import Any

from stellaops_runtime.contracts.crd_names import OBSERVER_LABEL
from stellaops_runtime.controller.node_backing import (
    CONTAINERS,
    TRANSIENT,
    Backing,
    fold_backing,
    node_problem,
    outdated,
    registry_transition,
)
from stellaops_runtime.controller.posture import Posture, node_capabilities
from stellaops_runtime.controller.reconcile_policies import PolicyReconciler
from stellaops_runtime.controller.rollout import parse_time
from stellaops_runtime.controller.state import INDEX_NODES, INDEX_OBSERVATION_NODES, utcnow


class ObserverNodes(PolicyReconciler):
    """What the ObservationNodes say for a RuntimeObserver's status (mixed into ``ObserverReconciler``)."""

    def node_counts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"total": 0, "tetragon": 0, "native": 0, "none": 0, "stale": 0}
        ceilings = {p.value: 0 for p in Posture}
        now = utcnow()
        for _, node in self._items(INDEX_OBSERVATION_NODES):
            out["total"] += 1
            status = node.get("status")
            if not isinstance(status, Mapping):  # a status of the wrong type says nothing: stale
                status = {}
            if self._is_stale(node, now=now):  # heartbeats: on the operator's clock
                out["stale"] += 1
                continue
            source = status.get("source")
            out[source if source in ("tetragon", "native") else "none"] += 1
            caps = node_capabilities(node)
            if caps is not None:
                ceilings[caps.ceiling()[0].value] += 1
        out["maxPosture"] = ceilings
        return out

    def node_backing(
        self,
        generation: Any,
        selector: Mapping[str, str],
        *,
        template: str | None = None,
        rolled: bool = False,
        running: Mapping[str, Collection[str]] | None = None,
    ) -> Backing:
        """Whether the fresh nodes' agents can back "not observed" (``node_backing``; no API call).

        Only the nodes its agents may run on (``spec.agent.nodeSelector`` against the Node's labels
        in kopf's index; all nodes without one): a node of another RuntimeObserver is not its fault.
        A node's ``RegistryNotInSync`` that has lasted ``registry_not_in_sync_seconds`` (timed by
        ``heartbeats``) is late: Degraded. The 30 s observer timer re-folds when that time comes.

        ``template``: the agent pod template's rollout the operator renders now (None: not known,
        as for a spec that did not parse); a report of another one is that node's rollout in
        progress, timed once the DaemonSet said every agent updated and ready (``rolled``) and
        late after ``stale_after_seconds``: a new agent writes on its first poll.

        ``running``: node name -> the rollouts its live agent pods run (``agent_templates``); a node
        there without an ObservationNode is silent, as one whose report is stale. Until
        the DaemonSet says every agent updated and ready, a report of an older rollout whose agent
        still runs there is that agent's word now (the rollout has not reached the node, or is stuck
        before it): judged as written, not set aside as "their new agent has not written yet", which
        hid a running agent's fault (NotObservedBacked Unknown) for as long as the rollout lasted.
        """
        now = utcnow()
        grace, bound = self.config.registry_not_in_sync_seconds, self.config.stale_after_seconds
        fresh, late, rolling, rolling_late = [], set(), set(), set()
        silent, silent_late, listed = [], set(), set()
        for name, node in self._items(INDEX_OBSERVATION_NODES):
            listed.add(str(name))
            if selector and not _selects(selector, self._one(INDEX_NODES, name)):
                continue
            if self._is_stale(node, now=now):
                if (running or {}).get(str(name)):  # its agent runs there, but reports nothing
                    silent.append(str(name))
                    # silent since it went stale, on the operator's clock (kept across a restart: the
                    # arrival of its last report is judged again from the Node's labels); a node that
                    # never reported, since its creation (the API server's stamp, never after now)
                    meta = node.get("metadata")
                    created = parse_time(meta.get("creationTimestamp")) if isinstance(meta, Mapping) else None
                    arrived = self.heartbeats.received(node, now=now) or (created and min(created, now))
                    since = self.heartbeats.silent_since(str(name), now=now, timed=rolled)
                    if since is not None and arrived:
                        since = arrived + timedelta(seconds=bound)
                    if since is not None and (now - since).total_seconds() >= bound:
                        silent_late.add(str(name))
                continue
            self.heartbeats.reporting(str(name))
            status = node.get("status")
            fresh.append((str(name), status if isinstance(status, Mapping) else None))
            own = (fresh[-1][1] or {}).get("agentTemplate")
            still = not rolled and isinstance(own, str) and own in (running or {}).get(str(name), ())
            if template is not None and outdated(fresh[-1][1], template) and not still:
                rolling.add(str(name))
                since = self.heartbeats.outdated_since(str(name), template, now=now, timed=rolled)
                if since is not None and (now - since).total_seconds() >= bound:
                    rolling_late.add(str(name))
                continue
            self.heartbeats.current(str(name))
            if node_problem(fresh[-1][1]) != (CONTAINERS, TRANSIENT):
                self.heartbeats.in_sync(str(name), now=now)
                continue
            stamped, elapsed = registry_transition(fresh[-1][1])
            since = self.heartbeats.not_in_sync_since(str(name), stamped, elapsed, now=now)
            if (now - since).total_seconds() >= grace:
                late.add(str(name))
        # Its agent runs there and made no ObservationNode at all (refused create, a writer failing
        # from the start): silent too, timed from when the DaemonSet said every agent ready
        # (tests/integration/test_operator_observer_no_report.py).
        for name in sorted(set(running or {}) - listed):
            silent.append(name)
            since = self.heartbeats.silent_since(name, now=now, timed=rolled)
            if since is not None and (now - since).total_seconds() >= bound:
                silent_late.add(name)
        return fold_backing(
            fresh,
            generation=generation,
            late=late,
            grace_seconds=grace,
            rolling=rolling,
            rolling_late=rolling_late,
            report_seconds=bound,
            silent=silent,
            silent_late=silent_late,
        )


def agent_templates(pods: Iterable[tuple[Any, Any]], namespace: str, observer: str) -> dict[str, set[str]]:
    """Node name -> the ``stellaops.io/agent-template`` of ``observer``'s live agent pods there, of
    kopf's pod index items (``PodSnapshot``)."""
    out: dict[str, set[str]] = {}
    for (ns, _), pod in pods:
        mine = ns == namespace and pod.labels.get(OBSERVER_LABEL) == observer and not pod.deleting
        if mine and pod.node and pod.agent_template:
            out.setdefault(pod.node, set()).add(pod.agent_template)
    return out


def _selects(selector: Mapping[str, str], labels: Any) -> bool:
    """The Node's labels (kopf's index; None: Node unknown, no agent of this observer) match."""
    return isinstance(labels, Mapping) and all(labels.get(k) == v for k, v in selector.items())


def raw_selector(body: Mapping[str, Any]) -> dict[str, str]:
    """``spec.agent.nodeSelector`` of a spec that did not parse (the agents' last valid one is not
    known here): the string pairs it has."""
    spec = body.get("spec")
    agent = spec.get("agent") if isinstance(spec, Mapping) else None
    sel = agent.get("nodeSelector") if isinstance(agent, Mapping) else None
    if not isinstance(sel, Mapping):
        return {}
    return {str(k): v for k, v in sel.items() if isinstance(v, str)}
