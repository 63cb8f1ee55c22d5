"""An operator's word that a node is gone for good: its open time ends at the store's now.

A node lost without SIGTERM (powered off, a spot instance reclaimed without notice, its agent
OOM-killed and then uninstalled) leaves no stop record: the images it ran on its last day read
open, unknown, from its watched end to every later question (store/coverage_open.py), until
retention removes the node's rows (31 to 90 days). An operator who knows the node is gone says so
here (``stella-runtime node-gone``): the same columns an agent's graceful stop writes (migration
0017, store/node_stop.py), with ``stop_reason`` ``operator``, ``gone`` and ``stopped_at`` the store's
clock now, under the row's own agent, so the reader (store/coverage_live.py) takes it as that
agent's last word. The days from the node's watched end to now stay open: nobody knows what ran on
it then; the days after rest on the nodes that watched the image.

Refused (nothing written) when the node shows a sign of life within ``quiet`` windows of its agent
before now: its proof of life written then (the condition is in the UPDATE itself, so a proof
written meanwhile wins), or a row of the node starting then (an agent whose proofs fail while its
rows are stored). A store before migration 0017, or a node with no proof of life, is refused too.
A later proof of life on the node (the node back, or a next agent) replaces the record, and a
row of the node starting after it sets it aside (store/coverage_open.py): the node ran on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from stellaops_runtime.store.coverage_live import has_liveness, has_stop_columns, store_now
from stellaops_runtime.store.schema import node_liveness, observation_windows

REASON = "operator"  # stop_reason of a record written here (store/node_stop.py REASONS: the agent's)
DEFAULT_QUIET_WINDOWS = 10


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`record_gone` did: ``recorded``, else why not; ``at``: the store's now."""

    recorded: bool
    reason: str
    at: dt.datetime
    agent_id: str = ""


def record_gone(conn: sa.Connection, node: str, quiet_windows: int = DEFAULT_QUIET_WINDOWS) -> Outcome:
    """Record ``node`` as gone at the store's now (module docstring), in the caller's transaction
    (committed by the caller); refused when it shows a sign of life within ``quiet_windows``."""
    now = store_now(conn)
    if not has_liveness(conn) or not has_stop_columns(conn):
        return Outcome(False, "the store is older than migration 0017 (let an agent migrate it)", now)
    c = node_liveness.c
    row = conn.execute(sa.select(c.agent_id, c.window_seconds).where(c.node_name == node)).first()
    if row is None:
        return Outcome(False, f"no proof of life of node {node!r} in the store: nothing to end", now)
    quiet = dt.timedelta(seconds=max(1, quiet_windows) * max(int(row.window_seconds or 0), 60))
    cutoff = now - quiet
    o = observation_windows.c
    recent = conn.execute(
        sa.select(o.window_start).where(o.node_name == node, o.window_start >= cutoff).limit(1)
    ).first()
    if recent is not None:
        return Outcome(
            False, f"node {node!r} has a row starting since {cutoff.isoformat()}: it may be alive", now
        )
    done = conn.execute(
        sa.update(node_liveness)
        .where(c.node_name == node, c.agent_id == row.agent_id, c.written_at < cutoff)
        .values(
            stopped_at=now,
            stop_agent=c.agent_id,
            stop_reason=REASON,
            running_images="[]",
            images_uncertain=False,
            gone=True,
        )
    )
    if not int(done.rowcount or 0):
        return Outcome(
            False, f"node {node!r} wrote a proof of life since {cutoff.isoformat()}: it may be alive", now
        )
    return Outcome(True, "", now, str(row.agent_id))
