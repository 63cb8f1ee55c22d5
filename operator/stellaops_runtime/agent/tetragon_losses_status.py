"""The ObservationNode's ``TetragonLossesKnown`` condition: why a node's answers turned unknown.

Since the operator renders ``tetragon.metricsUrl`` by default (``http://$(NODE_IP):2112/metrics``),
a node whose Tetragon serves no metrics there (its metrics off, a NetworkPolicy between the agent
pod and the node's address) makes all of its time a node-wide gap: what Tetragon lost is unknown
(sources/tetragon_metrics.py ``take_unknown``). That is honest, but an operator saw only the
agent's own /metrics (``tetragon_metrics_unreadable``) and a log line, never a status: every answer
of the node was ``unknown`` with nothing in the cluster saying why. The agent now writes this
condition in its ObservationNode (agent/observation_status.py ``build_status``), and the operator
folds it into the RuntimeObserver's ``NotObservedBacked`` (controller/node_backing.py).

Pure: it reads the poller's state (no I/O); the URL and the error are redacted already (a
``metricsUrl`` may hold a password, and conditions are readable cluster-wide).
"""

from __future__ import annotations

from typing import Any

from stellaops_runtime.agent.outages import unknown_counts

LOSSES_CONDITION = "TetragonLossesKnown"
UNREADABLE = "MetricsUnreadable"


def tetragon_losses(poller: Any, source: Any) -> tuple[bool, str, str] | None:
    """(known, reason, message) of the condition; None without ``tetragon.metricsUrl`` (no scrape:
    no condition written, and one an earlier agent wrote is taken away)."""
    if poller is None:
        return None
    if not unknown_counts(source):
        return (
            True,
            "NativeProbesWatch",
            "the source switch's native probes watch: Tetragon's losses do not count",
        )
    if not poller.unreadable:
        return True, "MetricsRead", f"Tetragon's lost-event counters are read from {poller.shown_url}"
    return (
        False,
        UNREADABLE,
        (
            f"Tetragon's metrics at {poller.shown_url} cannot be read "
            f"({poller.stats.last_error or 'failed'}): "
            "what Tetragon loses is unknown, so this node's time is a node-wide gap and its answers are "
            "unknown; make the endpoint reachable from the agent pod (Tetragon's metrics on, its port open "
            "to the node's address) or set spec.tetragon.metricsUrl to \"\" (Tetragon's losses are then "
            "never gaps)"
        ),
    )  # no count in it: the status is written again only when the condition changes
