"""A policy no node runs is never Ready: Progressing, reason NoNodeRunning, the nodes there are by kind.

``kubectl wait --for=condition=Ready``, Argo CD and Flux read Ready as "this
is watched". A policy used to report ``Ready/RolledOut "... 0/N nodes
running"`` when no node ran it: no ObservationNode at all, every node stale,
every node native (whose agents report no per-policy load state for
syscalls or binaryPath functions), or every node skipping it by the policy's
nodeSelector. Each such case, alone and mixed, must be Progressing (not
Degraded: a node can still come), and one node running it is enough for
Ready again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stellaops_runtime.controller.policy_state import NO_NODE_RUNNING, policy_state
from stellaops_runtime.controller.rollout import fold_rollout

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
POLICY = ("shop", "stellaops-web")


def _node(name: str, kind: str) -> dict[str, Any]:
    beat = NOW - timedelta(seconds=600 if kind == "stale" else 1)
    state = {"running": "ENABLED", "skipped": "SKIPPED", "stale": "ENABLED"}.get(kind)
    status: dict[str, Any] = {
        "heartbeatTime": beat.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "native" if kind == "native" else "tetragon",
        "capabilities": {"tetragon": {"reachable": kind != "native"}},
        "policies": [{"name": POLICY[1], "namespace": POLICY[0], "state": state}] if state else [],
    }
    return {"metadata": {"name": name}, "spec": {"nodeName": name}, "status": status}


def _state(kinds: list[str]) -> tuple[str, str, str]:
    nodes = [_node(f"n{i}-{k}", k) for i, k in enumerate(kinds)]
    rollout = fold_rollout(tetragon_policies=[POLICY], nodes=nodes, now=NOW, stale_after_seconds=90)
    return policy_state(names=[POLICY[1]], rollout=rollout, errors=[], missing_crd=False)


@pytest.mark.parametrize(
    ("kinds", "said"),
    [
        ([], "0/0 nodes running; no ObservationNode"),
        (["stale", "stale"], "0/2 nodes running: 2 stale"),
        (["native"], "0/1 nodes running: 1 native (their agents report no per-policy load state)"),
        (["skipped"], "0/0 nodes running: 1 skipped by the policy's nodeSelector"),
        (["stale", "native", "skipped"], "0/2 nodes running: 1 stale, 1 native"),
    ],
    ids=["no-node", "all-stale", "all-native", "all-skipped", "mixed"],
)
def test_no_node_running_it_is_progressing_not_ready(kinds: list[str], said: str) -> None:
    state, reason, message = _state(kinds)
    assert (state, reason) == ("Progressing", NO_NODE_RUNNING)
    assert said in message and message.startswith("1 Tetragon policies; no node runs it yet: ")


def test_one_node_running_it_is_enough_for_ready() -> None:
    state, reason, message = _state(["running", "stale", "native", "skipped"])
    assert (state, reason) == ("Ready", "RolledOut")
    assert "1/3 nodes running" in message


def test_a_failing_or_pending_node_still_decides_before_no_node_running() -> None:
    nodes = [_node("n0", "native"), _node("n1", "running")]
    nodes[1]["status"]["policies"][0]["state"] = "LOAD_ERROR"
    rollout = fold_rollout(tetragon_policies=[POLICY], nodes=nodes, now=NOW, stale_after_seconds=90)
    assert policy_state(names=[POLICY[1]], rollout=rollout, errors=[], missing_crd=False)[1] == "LoadFailed"
    nodes[1]["status"]["policies"][0]["state"] = "LOADING"
    rollout = fold_rollout(tetragon_policies=[POLICY], nodes=nodes, now=NOW, stale_after_seconds=90)
    assert policy_state(names=[POLICY[1]], rollout=rollout, errors=[], missing_crd=False)[1] == "RollingOut"
