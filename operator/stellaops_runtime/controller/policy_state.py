"""A valid policy's overall condition, from what was applied and how the nodes report it.

Pure: ``policy_state`` takes the apply errors, refusals and the folded
rollout (``rollout.fold_rollout``) and returns the one condition that is
True (``conditions.state_conditions`` writes all four), its reason and its
message. The order of precedence: not ours (``NotOwned``), apply errors
(``TetragonNotInstalled``, ``ApplyFailed``), load errors (``LoadFailed``),
partial loads (``PartiallyLoaded``), nodes that cannot reach Tetragon for
longer than the bound (``TetragonUnreachable``), nodes whose Tetragon
answers while their agent has got no events for longer than the same bound
(``NoEventSource``, naming them: nothing the policy traces there is observed),
a Tetragon object of the policy being deleted (``Progressing``/``WaitingForDeletion``: not
applied, made again once it is gone; ``Degraded`` with the same reason once held for the bound),
nodes still pending (``Progressing``/``RollingOut``; a node
whose Tetragon loaded it while its agent gets no events, for less than the bound, is pending
and named), no node running it (``Progressing``/
``NoNodeRunning``: no node at all, or every node stale, native or skipping
it; a ``Ready`` there would rest on nothing), else ``Ready``/``RolledOut``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stellaops_runtime.controller.conditions import WAITING_FOR_DELETION, State
from stellaops_runtime.controller.ownership import NOT_OWNED_REASON, NotOwnedError
from stellaops_runtime.controller.rollout import FAILED_STATES, NodeReport
from stellaops_runtime.controller.rollout_partial import NO_SOURCE_STATE

# Progressing: the policy is applied, but no fresh Tetragon node runs it (docs/operator.md, Status).
NO_NODE_RUNNING = "NoNodeRunning"


def policy_state(
    *,
    names: list[str],
    rollout: Mapping[str, Any],
    errors: list[str],
    missing_crd: bool,
    refused: list[NotOwnedError] | None = None,
    unreachable: tuple[list[NodeReport], list[NodeReport]] = ([], []),
    unreachable_after: float = 120.0,
    no_source: tuple[list[NodeReport], list[NodeReport]] = ([], []),
    terminating: list[str] | None = None,
    held_too_long: list[str] | None = None,
    held_after: float = 90.0,
) -> tuple[State, str, str]:
    """The overall condition of a valid policy from what was applied and how nodes report it.

    ``unreachable``: the nodes whose Tetragon is unreachable for
    ``unreachable_after`` seconds or more, and for less. The first make the
    policy Degraded (``TetragonUnreachable``, naming them): a terminal answer
    for ``kubectl wait`` and GitOps health checks instead of ``RollingOut``
    forever; the second only show in the Progressing message. ``no_source``: the same split of the
    nodes whose agent gets no events while Tetragon answers (``rollout_overdue.no_source_nodes``),
    Degraded ``NoEventSource`` after the same bound. ``terminating``: what ``owned.TerminatingError``
    said of each rendered object being deleted (not applied, so never Ready on it);
    ``held_too_long``: those of them held (a finalizer) for ``held_after`` seconds or more
    (``owned.held_too_long``): Degraded, so GitOps tools show it instead of waiting for ever.
    """
    overdue, recent = unreachable
    deaf_overdue, deaf_recent = no_source if names else ([], [])
    if refused:
        return "Degraded", NOT_OWNED_REASON, "; ".join([*map(str, refused), *errors])
    if errors:
        if missing_crd:
            return (
                "Degraded",
                "TetragonNotInstalled",
                ("Tetragon's TracingPolicy CRDs are not installed: " + "; ".join(errors)),
            )
        return "Degraded", "ApplyFailed", "; ".join(errors)
    total, running = rollout["nodesTotal"], rollout["nodesRunning"]
    if rollout["nodesFailed"]:
        first: dict[str, Any] = next((f for f in rollout["failures"] if f.get("state") in FAILED_STATES), {})
        detail = (
            f": {first.get('node')}: {first.get('policy')} {first.get('state')}: {first.get('message')}"
            if first
            else ""
        )
        return "Degraded", "LoadFailed", f"{rollout['nodesFailed']}/{total} nodes failed to load it{detail}"
    if rollout.get("nodesPartial"):  # loaded, but some hooks not: not running as asked
        partial: dict[str, Any] = next(
            (f for f in rollout["failures"] if f.get("state") == "PARTIALLY_ENABLED"), {}
        )
        detail = (
            f": {partial.get('node')}: {partial.get('policy')}: {partial.get('message')}" if partial else ""
        )
        n = rollout["nodesPartial"]
        return "Degraded", "PartiallyLoaded", f"{n}/{total} nodes loaded it only partially{detail}"
    if overdue:
        shown = ", ".join(unreachable_text(r) for r in overdue[:3])
        more = f" and {len(overdue) - 3} more" if len(overdue) > 3 else ""
        return (
            "Degraded",
            "TetragonUnreachable",
            f"{len(overdue)}/{total} nodes cannot reach Tetragon for {unreachable_after:g}s or more, so the "
            f"policy is not loaded there: {shown}{more}; {running}/{total} nodes running",
        )
    if deaf_overdue:
        shown = ", ".join(_since_text(r, r.no_source_since, "") for r in deaf_overdue[:3])
        more = f" and {len(deaf_overdue) - 3} more" if len(deaf_overdue) > 3 else ""
        return (
            "Degraded",
            NO_SOURCE_STATE,
            f"{len(deaf_overdue)}/{total} nodes have delivered no events for {unreachable_after:g}s or more "
            f"(source none), so nothing the policy traces is observed there: {shown}{more}; "
            f"{running}/{total} nodes running",
        )
    if held_too_long:  # a finalizer that never goes: a problem to show, not progress to wait for
        return (
            "Degraded",
            WAITING_FOR_DELETION,
            f"{'; '.join(held_too_long)}; held for {held_after:g}s or more; {running}/{total} nodes running",
        )
    if terminating:  # a rendered object about to go: not applied, whatever the nodes say of it
        return (
            "Progressing",
            WAITING_FOR_DELETION,
            f"{'; '.join(terminating)}; {running}/{total} nodes running",
        )
    if rollout["nodesPending"]:
        waiting = (
            f" ({len(recent)} with Tetragon unreachable: Degraded after {unreachable_after:g}s)"
            if recent
            else ""
        )
        if timed := [r for r in deaf_recent if r.no_source_since is not None]:
            waiting += f" ({len(timed)} with no event source: Degraded after {unreachable_after:g}s)"
        if untimed := len(deaf_recent) - len(timed):  # an older agent: never Degraded, so not promised
            waiting += f" ({untimed} with no event source, its agent does not say since when)"
        deaf: dict[str, Any] = next((f for f in rollout["failures"] if f.get("state") == NO_SOURCE_STATE), {})
        if deaf:  # loaded there, but its agent gets no events: why that node is not running
            waiting += f"; {deaf.get('node')}: no event source: {deaf.get('message')}"
        return (
            "Progressing",
            "RollingOut",
            f"{running}/{total} nodes running, {rollout['nodesPending']} pending{waiting}",
        )
    what = f"{len(names)} Tetragon policies" if names else "no Tetragon policy (native probe entry only)"
    if not running:  # Ready is read as "watched" (kubectl wait, Argo CD, Flux): never on no node at all
        return "Progressing", NO_NODE_RUNNING, f"{what}; no node runs it yet: {_not_running(rollout)}"
    return "Ready", "RolledOut", f"{what}; {running}/{total} nodes running, {rollout['nodesStale']} stale"


def _not_running(rollout: Mapping[str, Any]) -> str:
    """Why no node runs the policy: the nodes there are, by kind, or that there are none."""
    parts = [
        f"{rollout.get(key) or 0} {what}"
        for key, what in (
            ("nodesStale", "stale"),
            ("nodesNative", "native (their agents report no per-policy load state)"),
            ("nodesSkipped", "skipped by the policy's nodeSelector"),
        )
        if rollout.get(key)
    ]
    return f"0/{rollout['nodesTotal']} nodes running" + (
        ": " + ", ".join(parts) if parts else "; no ObservationNode"
    )


def unreachable_text(report: NodeReport) -> str:
    return _since_text(report, report.unreachable_since, report.unreachable_message)


def _since_text(report: NodeReport, since: datetime | None, message: str) -> str:
    when = f" since {since.strftime('%Y-%m-%dT%H:%M:%SZ')}" if since is not None else ""
    detail = f" ({message})" if message else ""
    return f"{report.name}{when}{detail}"
