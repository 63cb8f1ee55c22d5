"""At a graceful stop, the agent says what it leaves behind: which images ran on, and whether its node goes.

A node whose agent is down reads open, from its watched end to every later question, for the images
it ran on its last day (store/coverage_open.py): after a SIGKILL nothing says its workloads stopped.
At SIGTERM the agent knows more. Once its final flush stored everything and its final proof of life
was written (agent/runner.py), it writes its stop record (store/node_stop.py, migration 0017):

- the images still running: with lifecycle on and its registry in sync, the digests (manifest,
  config and their aliases) of the containers not stopped; otherwise (lifecycle off, not in sync, a
  container of no known image) the images of its last two windows, marked uncertain, which keeps
  every image open for the reader;
- ``gone``: its own Node, read at the stop through the Kubernetes API (the ObservationNode writer's
  credentials, agent/node_status.py), has a ``metadata.deletionTimestamp``. An autoscaler's taint
  (:data:`GOING_TAINTS`) is recorded as the reason and is not "gone": the cluster autoscaler and
  Karpenter take theirs off again when a scale-down or a disruption is aborted, and the node then
  runs on unwatched. The read starts when the stop does and is
  bounded (:data:`NODE_READ_SECONDS`, never past the shutdown's deadline); a failed or slow read,
  or no ObservationNode writer configured, is "not gone": the safe side (open).

Both are bounded by the shutdown's deadline; a failure is logged and changes nothing else (the
node then reads open, as after a SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stellaops_runtime.store.node_stop import Stop, write_stop
from stellaops_runtime.store.threads import run_detached

if TYPE_CHECKING:
    from stellaops_runtime.agent.runner import Agent

log = logging.getLogger(__name__)

# Taints put on a Node an autoscaler is about to remove: the cluster autoscaler's scale-down in
# progress and Karpenter's disruption taint (``karpenter.sh/disrupted`` since Karpenter v1,
# ``karpenter.sh/disruption`` before; both are read: a cluster may run either). Recorded as the
# stop's reason, never taken as "gone": each is taken off again when the scale-down or disruption
# is aborted (the node runs on, unwatched until a next agent starts). Nor is the autoscaler's soft
# DeletionCandidateOfClusterAutoscaler (PreferNoSchedule): it marks a node merely unneeded a while.
GOING_TAINTS = (
    "ToBeDeletedByClusterAutoscaler",
    "karpenter.sh/disrupted",
    "karpenter.sh/disruption",
)
NODE_READ_SECONDS = 2.0  # at most, and at most a quarter of the shutdown's grace


def node_going(node: Mapping[str, Any] | None) -> tuple[str, bool] | None:
    """Why the Node ``node`` (an API object) may be going away, and whether that is certain: its
    deletion timestamp (certain), else the first of :data:`GOING_TAINTS` on it (not certain); None
    when neither."""
    if not isinstance(node, Mapping):
        return None
    meta = node.get("metadata")
    if isinstance(meta, Mapping) and meta.get("deletionTimestamp"):
        return "deletionTimestamp", True
    spec = node.get("spec")
    taints = spec.get("taints") if isinstance(spec, Mapping) else None
    for taint in taints if isinstance(taints, list) else ():
        if isinstance(taint, Mapping) and taint.get("key") in GOING_TAINTS:
            return str(taint["key"]), False
    return None


async def _read_node(kubeconfig: str, name: str, seconds: float) -> tuple[str, bool] | None:
    from stellaops_runtime import __version__
    from stellaops_runtime.kube.client import KubeClient
    from stellaops_runtime.kube.resources import NODES

    async with await KubeClient.connect(
        kubeconfig=kubeconfig, user_agent=f"stellaops-runtime-agent/{__version__}", transport="streams",
        timeout=seconds,
    ) as kube:  # fmt: skip
        return node_going(await kube.get(NODES, name=name))


async def read_node_going(kubeconfig: str, name: str, seconds: float) -> tuple[str, bool] | None:
    """Why the Node ``name`` may be going away and whether for certain (:func:`node_going`), read
    within ``seconds``; None when it is not, and when the read failed or was too slow (no
    credentials, the API server away)."""
    try:
        return await asyncio.wait_for(_read_node(kubeconfig, name, seconds), timeout=seconds)
    except Exception as e:
        log.info("the node %s was not read at the stop (taken as not going away): %s",
                 name, type(e).__name__)  # fmt: skip
        return None


def start_node_read(agent: Agent) -> asyncio.Task[tuple[str, bool] | None] | None:
    """At the stop: read the agent's own Node (only with the ObservationNode writer configured, whose
    credentials and RBAC it uses), as a task (:func:`read_node_going`)."""
    if agent.node_status is None:
        return None
    seconds = min(NODE_READ_SECONDS, agent.config.shutdown.grace_seconds / 4)
    read = read_node_going(agent.config.observation_node.kubeconfig, agent.node_name, seconds)
    return asyncio.create_task(read, name="node-read-at-stop")


def running_images(agent: Agent) -> tuple[str, ...] | None:
    """The digests of the images still running, from the lifecycle registry when it is in sync;
    None when not known (the store's recent windows are then written, uncertain)."""
    lifecycle = agent.lifecycle
    if lifecycle is None or lifecycle.observer is None or not lifecycle.runs.containers.known:
        return None
    out: set[str] = set()
    for r in lifecycle.observer.registry.records():
        if r.is_sandbox or r.status == "stopped":
            continue
        if not r.image_digest:  # a container of no known image: nothing names what runs
            return None
        out.update(d for d in (r.image_digest, r.image_config, *r.image_aliases) if d)
    return tuple(sorted(out))


async def write_stop_record(agent: Agent, node_read: asyncio.Task[tuple[str, bool] | None] | None) -> bool:
    """Write the stop record, within the shutdown's deadline; True when written. Never raises."""
    deadline = agent.deadline if agent.deadline is not None else time.monotonic() + NODE_READ_SECONDS
    going: tuple[str, bool] | None = None
    if node_read is not None:
        with contextlib.suppress(Exception):
            going = await asyncio.wait_for(
                asyncio.shield(node_read), timeout=max(0.0, deadline - time.monotonic())
            )
        node_read.cancel()
    claimed = agent.watch.claimed
    store = agent.flusher.store
    if claimed is None or store is None:
        return False
    window_ns = int(agent.config.hot_symbols.window_seconds * 1e9)
    stop = Stop(
        node=agent.watch.node,
        agent_id=agent.pending.agent_id,
        reason="deleting" if going is not None and going[1] else "sigterm",
        running=running_images(agent),
        gone=going is not None and going[1],
        recent_from_ns=claimed[0] - 2 * window_ns,
    )
    fut = run_detached(write_stop, store.db, stop, name="store-stop-record")
    try:
        written = await asyncio.wait_for(asyncio.shield(fut), timeout=max(0.0, deadline - time.monotonic()))
    except Exception as e:  # a timeout included: left to finish on its thread
        fut.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
        log.warning("the node's stop record was not written: %s", type(e).__name__)
        return False
    if written:
        log.info("stop record written: %s, %s%s", stop.reason,
                 "images unknown" if stop.running is None else f"{len(stop.running)} image digests running",
                 f", node going away ({going[0]})" if going and going[1]
                 else f", node tainted ({going[0]}), not taken as gone" if going else "")  # fmt: skip
    return bool(written)
