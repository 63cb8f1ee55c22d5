"""Leader election: two operators sharing a ClusterKopfPeering; only the higher priority one reconciles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from stellaops_runtime.controller.settings import DEFAULT_PEERING
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, obj, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", "shop"))
        await c.create(obj("kopf.dev/v1", "ClusterKopfPeering", DEFAULT_PEERING))
        yield c


async def _policy(cluster: Cluster, name: str) -> None:
    spec = {
        "podSelector": {"matchLabels": {"app": name}},
        "maxLevel": "ActiveTracing",
        "syscalls": ["execve"],
    }
    await cluster.create(obj(API_VERSION, POLICY_KIND, name, namespace="shop", spec=spec))


def _rendered(cluster: Cluster, name: str) -> bool:
    return cluster.stored(r.TRACING_POLICIES_NAMESPACED, f"stellaops-{name}", "shop") is not None


def _peers(cluster: Cluster) -> int:
    return len((cluster.stored(r.CLUSTER_KOPF_PEERINGS, DEFAULT_PEERING) or {}).get("status") or {})


async def test_only_the_highest_priority_replica_reconciles(cluster: Cluster) -> None:
    async with OperatorRun(cluster, priority=10) as low:
        await _policy(cluster, "one")
        await wait_for(lambda: _rendered(cluster, "one"), what="the only replica reconciles")
        await low.settle()
        async with OperatorRun(cluster, priority=20) as high:
            await wait_for(lambda: _peers(cluster) == 2, what="both replicas in the peering")
            await asyncio.sleep(0.5)  # the lower one sees the higher one's keep-alive and pauses
            await high.settle()
            low_runs = low.reconciler.scheduler.stats.runs
            high_runs = high.reconciler.scheduler.stats.runs
            await _policy(cluster, "two")
            await wait_for(lambda: _rendered(cluster, "two"), what="the leader reconciles")
            await high.settle()
            assert low.reconciler.scheduler.stats.runs == low_runs  # paused: saw nothing
            assert high.reconciler.scheduler.stats.runs > high_runs
        # the leader left cleanly (its keep-alive is withdrawn): the other one resumes
        await wait_for(lambda: _peers(cluster) == 1, what="the leader gone from the peering")
        await _policy(cluster, "three")
        await wait_for(lambda: _rendered(cluster, "three"), limit_s=60, what="the remaining replica resumed")
