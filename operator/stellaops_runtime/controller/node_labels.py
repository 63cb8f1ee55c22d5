"""A node's ``feature.stellaops.io/*`` labels, from its ObservationNode, and whether that is stale.

The operator labels each Node with what its kernel and agent can observe, so
workloads can be scheduled by ``nodeSelector`` on it (``reconcile_nodes``);
``is_stale`` is the heartbeat rule every reconcile shares (a node whose agent
stopped reporting says nothing that holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from stellaops_runtime.contracts.crds import FEATURE_LABEL_PREFIX
from stellaops_runtime.controller.naming import label_value
from stellaops_runtime.controller.posture import node_capabilities
from stellaops_runtime.controller.rollout import parse_time

FEATURE_LABEL_KEYS = tuple(
    FEATURE_LABEL_PREFIX + k
    for k in (
        "btf",
        "bpf",
        "tracepoints",
        "uprobes",
        "kprobes",
        "usdt",
        "ring-buffer",
        "tetragon",
        "source",
        "max-posture",
        "kernel-version",
        "tetragon-version",
        "heartbeat",
    )
)


def is_stale(
    observation_node: Mapping[str, Any],
    *,
    now: datetime,
    stale_after_seconds: float,
    received: datetime | None = None,
) -> bool:
    """No ``heartbeatTime``, an unreadable one, or one older than ``stale_after_seconds``.

    ``received``: when the operator saw that heartbeat arrive (``controller.heartbeats``), which
    is then measured instead of the agent's stamp.
    """
    status = observation_node.get("status") or {}
    beat = parse_time(status.get("heartbeatTime")) if isinstance(status, Mapping) else None
    if beat is not None and received is not None:
        beat = received
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return beat is None or (now - beat).total_seconds() > stale_after_seconds


def node_feature_labels(observation_node: Mapping[str, Any], *, stale: bool = False) -> dict[str, str]:
    """``feature.stellaops.io/<capability>`` labels for the Node an ObservationNode describes.

    Boolean capabilities are ``"true"``/``"false"`` (what the kernel allows,
    whether or not a source uses it); ``source`` is the source that works now
    (tetragon or none); ``max-posture`` is the node's posture ceiling, what
    that source delivers (``NodeCapabilities.ceiling``; None and source none
    when ``stale``: the agent stopped heart-beating); ``heartbeat`` is the
    operator's judgement itself, ``fresh`` or ``stale`` (a node with no working
    source has the same ``source`` and ``max-posture`` either way, so a restarted
    operator reads its predecessor's judgement here: ``heartbeats.judged_fresh``); versions
    are made valid label values and left out when unknown. Keys under the
    prefix that the result does not contain should be removed from the Node.
    """
    caps = node_capabilities(observation_node)
    if caps is None:  # node_capabilities returns None only for None
        return {}
    if stale:
        caps = replace(caps, stale=True)
    ceiling, _ = caps.ceiling()
    p = FEATURE_LABEL_PREFIX
    labels = {
        p + "btf": caps.btf,
        p + "bpf": caps.bpf_permitted,
        p + "tracepoints": caps.tracepoints,
        p + "uprobes": caps.uprobes,
        p + "kprobes": caps.kprobes,
        p + "usdt": caps.usdt,
        p + "ring-buffer": caps.ring_buffer,
        p + "tetragon": caps.tetragon_reachable,
    }
    out = {k: "true" if v else "false" for k, v in labels.items()}
    out[p + "source"] = caps.working_source
    out[p + "max-posture"] = ceiling.value
    out[p + "heartbeat"] = "stale" if stale else "fresh"
    if caps.kernel_version:
        out[p + "kernel-version"] = label_value(caps.kernel_version)
    if caps.tetragon_version:
        out[p + "tetragon-version"] = label_value(caps.tetragon_version)
    return dict(sorted(out.items()))
