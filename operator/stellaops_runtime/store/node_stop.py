"""An agent's graceful stop record (migration 0017): when it stopped, what ran on, whether its node goes.

A node whose agent is down reads open from its watched end to the question, for every image it ran
on its last day (store/coverage_open.py): after a SIGKILL nothing says the workloads stopped too. An
agent stopped with SIGTERM writes, once its final flush stored everything and its final proof of life
was written (agent/stop_record.py), this record on the same ``node_liveness`` row: ``stopped_at`` on
the store's clock, the reason, the images still running (``images_uncertain`` when it could not
know them: the reader then keeps every image open) and ``gone`` (its Node is being deleted). It is
an UPDATE of the row of this very agent: a row another agent wrote since (or none, no proof) takes
nothing, so a stop never ends the open time a proof did not start. The reader is
store/coverage_live.py (:meth:`~stellaops_runtime.store.coverage_live.Live.stop_end`).

Plain DB-API SQL, as store/node_liveness.py (the agent never loads SQLAlchemy). With lifecycle off,
the images are those with a row of this node in the last two windows before its claimed moment,
read in the same transaction: uncertain by construction (an idle container sends no event).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from stellaops_runtime.store.node_liveness import node_time

_SET = (
    "stopped_at = {now}, stop_agent = {p}, stop_reason = {p}, running_images = {p}, "
    "images_uncertain = {p}, gone = {p} WHERE node_name = {p} AND agent_id = {p}"
)
_UPDATE = {
    "postgresql": "UPDATE signals.node_liveness SET " + _SET.format(now="clock_timestamp()", p="%s"),
    "sqlite": "UPDATE main.node_liveness SET "
    + _SET.format(now="strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'", p="?"),
}
_RECENT = {
    "postgresql": "SELECT DISTINCT image_digest FROM signals.observation_windows "
    "WHERE node_name = %s AND window_start >= %s AND image_digest <> ''",
    "sqlite": "SELECT DISTINCT image_digest FROM main.observation_windows "
    "WHERE node_name = ? AND window_start >= ? AND image_digest <> ''",
}
REASONS = ("sigterm", "deleting")  # stop_reason: a plain stop; the Node is going away


@dataclass(frozen=True, slots=True)
class Stop:
    """What one stop record says. ``running``: the digests of the images still running (None: not
    known, lifecycle off: the images of the last two windows are written, marked uncertain);
    ``recent_from_ns``: the node-clock moment from which those windows are read."""

    node: str
    agent_id: str
    reason: str
    running: tuple[str, ...] | None
    gone: bool
    recent_from_ns: int = 0


def write_stop(db: Any, stop: Stop) -> bool:
    """Write the stop on this agent's row in one transaction; False when the row is not this agent's
    (nothing written). Raises what the driver raises (the caller counts it)."""
    with db.begin() as conn:
        d = conn.dialect
        uncertain = stop.running is None
        images = stop.running
        if images is None:
            recent = conn.execute(_RECENT[d], (stop.node, node_time(stop.recent_from_ns, d)))
            images = tuple(str(i) for i in recent.scalars())
        params = (
            stop.agent_id, stop.reason, json.dumps(sorted(set(images))), uncertain, stop.gone,
            stop.node, stop.agent_id,
        )  # fmt: skip
        res = conn.execute(_UPDATE[d], params)
        return int(res.rowcount or 0) > 0
