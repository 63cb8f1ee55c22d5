"""Which fresh nodes have kept a policy from running for longer than the bound, and which not yet.

Split from ``controller.rollout`` (which folds the nodes into a rollout): a
node whose agent cannot reach Tetragon (``TetragonUnreachable``), or whose
Tetragon answers while its agent gets no events from it (``source: none``,
``NoEventSource``), counts as pending there; ``policy_state`` turns the policy
Degraded, naming such nodes, once one of them has been so for
``tetragon_unreachable_seconds`` or more, so ``kubectl wait`` and a GitOps
health check get a terminal answer instead of ``RollingOut`` for ever. A
shorter episode (an agent's restart before its event stream connects) leaves
the policy Progressing, its message saying when it turns Degraded.

Since when is the agent's own stamp (the ``lastTransitionTime`` of its
ObservationNode's ``Ready=False``, or of ``EventSource=False``), or, with
``since``, that stamp timed on the operator's clock
(``heartbeats.Heartbeats.unreachable_since`` / ``no_source_since``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from stellaops_runtime.controller.rollout import NodeReport

if TYPE_CHECKING:
    from stellaops_runtime.controller.heartbeats import Heartbeats

Since = Callable[[NodeReport], datetime | None]
Split = tuple[list[NodeReport], list[NodeReport]]  # (for the bound or longer, for less)


def _split(
    reports: Sequence[NodeReport],
    which: Callable[[NodeReport], bool],
    stamp: Callable[[NodeReport], datetime | None],
    *,
    now: datetime,
    after_seconds: float,
    unsaid_overdue: bool,
) -> Split:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    overdue: list[NodeReport] = []
    recent: list[NodeReport] = []
    for r in reports:
        if r.kind != "tetragon" or not which(r):
            continue
        at = stamp(r)
        if (at is None and unsaid_overdue) or (
            at is not None and (now - at).total_seconds() >= after_seconds
        ):
            overdue.append(r)
        else:
            recent.append(r)
    return overdue, recent


def unreachable_nodes(
    reports: Sequence[NodeReport], *, now: datetime, after_seconds: float, since: Since | None = None
) -> Split:
    """Fresh nodes with Tetragon unreachable: (for ``after_seconds`` or more, for less).

    A node that does not say since when counts as unreachable for long
    enough: nothing it reports will make the policy load sooner. ``since``:
    since when, on the operator's clock (``heartbeats.Heartbeats.unreachable_since``),
    instead of the agent's stamp.
    """
    return _split(
        reports,
        lambda r: r.unreachable,
        (lambda r: r.unreachable_since) if since is None else since,
        now=now,
        after_seconds=after_seconds,
        unsaid_overdue=True,
    )


def no_source_nodes(
    reports: Sequence[NodeReport], *, now: datetime, after_seconds: float, since: Since | None = None
) -> Split:
    """Fresh nodes whose Tetragon answers while their agent gets no events: (for ``after_seconds``
    or more, for less).

    A node that does not say since when (an agent that writes no ``EventSource``
    condition, or an unreadable time) counts as recent: no time is assumed, and
    the policy stays Progressing, naming it. ``since``: on the operator's clock
    (``heartbeats.Heartbeats.no_source_since``).
    """
    return _split(
        reports,
        lambda r: r.no_source is not None,
        (lambda r: r.no_source_since) if since is None else since,
        now=now,
        after_seconds=after_seconds,
        unsaid_overdue=False,
    )


def timed_splits(
    reports: Sequence[NodeReport],
    deaf: Sequence[NodeReport],
    *,
    now: datetime,
    after_seconds: float,
    heartbeats: Heartbeats,
) -> tuple[Split, Split]:
    """``unreachable_nodes`` of ``reports`` and ``no_source_nodes`` of ``deaf`` (the nodes the fold
    counted pending for NoEventSource), each timed on the operator's clock by ``heartbeats``."""
    return (
        unreachable_nodes(
            reports,
            now=now,
            after_seconds=after_seconds,
            since=lambda n: heartbeats.unreachable_since(n.name, n.unreachable_since, now=now, beat=n.beat),
        ),
        no_source_nodes(
            deaf,
            now=now,
            after_seconds=after_seconds,
            since=lambda n: heartbeats.no_source_since(n.name, n.no_source_since, now=now, beat=n.beat),
        ),
    )
