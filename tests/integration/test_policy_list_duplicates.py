"""A node's Tetragon listing one policy twice: the worse entry decides, never the one listed last.

Tetragon keys a policy by namespace and name, but its answer is not ours to
trust: on Tetragon main a policy of the same name and namespace may be
loaded in another ``domain``, a policy loaded from a file or over gRPC may
carry our name, and a garbled answer may hold anything. The operator kept
the last entry of a name per node (``rollout.index_nodes``), so a node that
listed our object LOAD_ERROR and then an ENABLED entry of that name counted
as running: the policy read Ready, its pods EbpfDeep, on a node where it had
failed to load. Here a replay server plays Tetragon over real gRPC, the
agent's own reader (``agent.capabilities.list_tracing_policies``) lists it,
and the operator's fold and state judge the node.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.agent.capabilities import list_tracing_policies
from stellaops_runtime.controller.policy_state import policy_state
from stellaops_runtime.controller.rollout import fold_rollout
from stellaops_runtime.replay.server import HookReport, PolicyStatus, ReplayServer
from tests.crd_schema import errors, load_crd, validator_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, TP = "shop", "stellaops-web"
UID = "0b5e6f3a-1111-4c2d-9e8f-000000000001"
NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
OURS = f"{TP} (object:3/{UID}) (type:TracingPolicyNamespaced/cilium.io/v1alpha1)"
CRD = Path(__file__).resolve().parents[2] / "manifests" / "crds" / "observationnodes.yaml"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tetragon() -> AsyncIterator[ReplayServer]:
    srv = ReplayServer([], policies=[], version="v1.7.0")
    await srv.start("127.0.0.1:0")
    yield srv
    await srv.stop()


@functools.cache
def _validator() -> Any:
    return validator_for(load_crd(CRD))


async def judge(srv: ReplayServer, policies: list[PolicyStatus]) -> tuple[dict[str, Any], str]:
    srv.policies = policies
    assert srv.address is not None
    listed = await list_tracing_policies(srv.address, timeout_s=30)
    node = {
        "metadata": {"name": "node-a"},
        "spec": {"nodeName": "node-a"},
        "status": {"source": "tetragon", "heartbeatTime": "2026-12-05T11:59:50Z", "policies": listed},
    }
    assert errors(_validator(), node) == []  # what the agent writes, the API server takes
    rollout = fold_rollout(
        tetragon_policies=[(NS, TP)],
        nodes=[node],
        now=NOW,
        stale_after_seconds=120,
        versions={(NS, TP): (UID, 3)},
    )
    _, reason, _ = policy_state(names=[TP], rollout=rollout, errors=[], missing_crd=False)
    return rollout, reason


@pytest.mark.parametrize("ours_first", [True, False])
async def test_a_failed_entry_is_not_hidden_by_an_enabled_one_of_the_same_name(
    tetragon: ReplayServer, ours_first: bool
) -> None:
    ours = PolicyStatus(name=TP, namespace=NS, state="LOAD_ERROR", message="open /usr/bin/web: no such file")
    other = PolicyStatus(name=TP, namespace=NS, state="ENABLED", message=TP)  # no object: not from the API
    rollout, reason = await judge(tetragon, [ours, other] if ours_first else [other, ours])
    assert (rollout["nodesRunning"], rollout["nodesFailed"]) == (0, 1), rollout
    assert reason == "LoadFailed"
    assert "no such file" in rollout["failures"][0]["message"]


async def test_a_partial_entry_is_not_hidden_by_an_enabled_one(tetragon: ReplayServer) -> None:
    hooks = (HookReport("uprobes", 0, "/usr/bin/web: handle", "CALL_NOT_FOUND"),)
    partial = PolicyStatus(name=TP, namespace=NS, state="PARTIALLY_ENABLED", message=OURS, hooks=hooks)
    enabled = PolicyStatus(name=TP, namespace=NS, state="ENABLED", message=OURS)
    rollout, reason = await judge(tetragon, [partial, enabled])
    assert (rollout["nodesRunning"], rollout["nodesPartial"]) == (0, 1), rollout
    assert reason == "PartiallyLoaded"


async def test_an_entry_of_another_version_does_not_make_the_node_run(tetragon: ReplayServer) -> None:
    old = PolicyStatus(name=TP, namespace=NS, state="ENABLED", message=OURS.replace("object:3", "object:2"))
    loading = PolicyStatus(name=TP, namespace=NS, state="LOADING", message=OURS)
    rollout, reason = await judge(tetragon, [loading, old])
    assert (rollout["nodesRunning"], rollout["nodesPending"]) == (0, 1), rollout
    assert reason == "RollingOut"


async def test_one_entry_and_other_namespaces_are_judged_as_before(tetragon: ReplayServer) -> None:
    enabled = PolicyStatus(name=TP, namespace=NS, state="ENABLED", message=OURS)
    elsewhere = PolicyStatus(name=TP, namespace="other", state="LOAD_ERROR", message="not ours")
    rollout, reason = await judge(tetragon, [elsewhere, enabled])
    assert (rollout["nodesRunning"], rollout["nodesFailed"]) == (1, 0), rollout
    assert reason == "RolledOut"


# Tetragon's TpInfo of a policy it read from a file or took over gRPC: the YAML's metadata has no
# generation and no uid (Tetragon loads our objects from the API server, which sets both).
NOT_FROM_API = f"{TP} (object:0/) (type:TracingPolicyNamespaced/cilium.io/v1alpha1)"


async def test_a_policy_of_our_name_not_from_the_api_server_is_not_ours(tetragon: ReplayServer) -> None:
    # A file or gRPC policy holds the name: Tetragon refuses our object (same name), lists the other.
    holder = PolicyStatus(name=TP, namespace=NS, state="ENABLED", message=NOT_FROM_API)
    rollout, reason = await judge(tetragon, [holder])
    assert (rollout["nodesRunning"], rollout["nodesFailed"]) == (0, 1), rollout
    assert reason == "LoadFailed"
    assert "not from the Kubernetes object" in rollout["failures"][0]["message"]
    # ours listed beside it (another domain): ours decides
    ours = PolicyStatus(name=TP, namespace=NS, state="ENABLED", message=OURS)
    rollout, reason = await judge(tetragon, [holder, ours])
    assert (rollout["nodesRunning"], rollout["nodesFailed"]) == (1, 0), rollout
    assert reason == "RolledOut"
    # ours listed at an older version beside it (an update under way): pending, not failed
    older = PolicyStatus(name=TP, namespace=NS, state="ENABLED", message=OURS.replace("object:3", "object:2"))
    rollout, reason = await judge(tetragon, [holder, older])
    assert (rollout["nodesPending"], rollout["nodesFailed"]) == (1, 0), rollout
    assert reason == "RollingOut"
