"""The agent's reading of its own Node at a graceful stop (agent/stop_record.py): going away, or not.

A Node with a deletion timestamp is going away: the stop record says ``gone`` and the reader ends
every image's open time at the stop. The cluster autoscaler's or Karpenter's removal taint is read
and not taken as gone (both come off again when the scale-down or disruption is aborted, and the
node runs on unwatched). Any other Node, and a read that fails or does not answer in time, is not
going away: the safe side (open). The
slow read is a real listening socket that never answers, read through the real Kubernetes client.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import yaml

from stellaops_runtime.agent.stop_record import GOING_TAINTS, node_going, read_node_going


def node(
    meta: dict[str, object] | None = None, taints: list[dict[str, str]] | None = None
) -> dict[str, object]:
    return {"metadata": {"name": "n", **(meta or {})}, "spec": {"taints": taints or []}}


def test_only_a_deletion_timestamp_is_certainly_going_away() -> None:
    assert node_going(node({"deletionTimestamp": "2026-12-06T20:00:00Z"})) == ("deletionTimestamp", True)
    for key in GOING_TAINTS:  # an aborted scale-down or disruption takes these off again: not certain
        taints = [{"key": "other"}, {"key": key, "effect": "NoSchedule"}]
        assert node_going(node(taints=taints)) == (key, False)
    assert node_going(node(taints=[{"key": "node.kubernetes.io/unschedulable"}])) is None  # a cordon
    assert node_going(node()) is None and node_going(None) is None
    assert node_going({"metadata": None, "spec": {"taints": "not a list"}}) is None


def test_karpenter_v1_s_disrupted_taint_is_read_as_its_older_disruption_taint_was() -> None:
    # Karpenter v1 renamed its disruption taint ``karpenter.sh/disruption=disrupting:NoSchedule`` (v0.3x)
    # to ``karpenter.sh/disrupted:NoSchedule``; a v1 cluster puts only the new one on a node it removes
    v1 = {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}
    before_v1 = {"key": "karpenter.sh/disruption", "value": "disrupting", "effect": "NoSchedule"}
    for taint in (v1, before_v1):
        assert node_going(node(taints=[taint])) == (taint["key"], False)


def test_the_autoscaler_s_soft_candidate_taint_is_not_going_away() -> None:
    # the cluster autoscaler puts DeletionCandidateOfClusterAutoscaler (PreferNoSchedule) on every node
    # unneeded for a while and takes it off when the node is needed again: a node may carry it for
    # days and run on. An agent stopped then (a rollout, an uninstall) must leave its images open.
    soft = {"key": "DeletionCandidateOfClusterAutoscaler", "value": "1", "effect": "PreferNoSchedule"}
    assert node_going(node(taints=[soft])) is None
    assert "DeletionCandidateOfClusterAutoscaler" not in GOING_TAINTS


def test_a_node_read_that_does_not_answer_in_time_is_not_going_away(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        kubeconfig = tmp_path / "kubeconfig.yaml"
        server = f"http://127.0.0.1:{silent.getsockname()[1]}"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        }))  # fmt: skip
        began = time.monotonic()
        assert asyncio.run(read_node_going(str(kubeconfig), "n", 0.3)) is None
        assert time.monotonic() - began < 2.0  # bounded: the shutdown's grace is not spent here
    assert asyncio.run(read_node_going(str(tmp_path / "missing"), "n", 0.3)) is None  # no credentials
