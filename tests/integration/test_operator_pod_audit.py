"""A pod deleted while the operator's pod watch was down is found by the index audit.

kopf re-lists after a watch ends in 410 Gone but never drops from its
indexes the objects deleted in the gap (controller/index_audit.py). The
audit checked policies, our Tetragon objects and ObservationNodes, not pods:
a pod deleted in such a gap stayed in the operator's pod index for good. It
went on counting in its RuntimeObserver's ``status.postureCounts`` and stayed
on the agents' opt-out list in the probe ConfigMap. The audit now lists pods
too (metadata only), and a pod it confirms gone is handled as if its DELETED
event had arrived.

The deletion is made in the emulator's store directly: no watch event, which
is what the operator's indexes see after such a gap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, OBSERVE_LEVEL_ANNOTATION, OBSERVER_KIND
from stellaops_runtime.controller.render_agent import probe_configmap_name
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY
from stellaops_runtime.kube import resources as r
from stellaops_runtime.native.policy_config import parse_opted_out
from tests.integration.kubeharness import Cluster, OperatorRun, _key, fast_config, obj, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "stellaops-system"
NAME = "fleet"
SPEC: dict[str, Any] = {
    "agentNamespace": NS,
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}


def _pod(name: str, level: str) -> dict[str, Any]:
    return obj(
        "v1",
        "Pod",
        name,
        namespace="shop",
        annotations={OBSERVE_LEVEL_ANNOTATION: level},
        spec={"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}]},
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Namespace", "shop"))
        await c.create(_pod("private-0", "None"))
        await c.create(_pod("private-1", "None"))
        yield c


def _listed(cluster: Cluster) -> list[str]:
    cm = cluster.stored(r.CONFIGMAPS, probe_configmap_name(NAME), NS) or {}
    raw = (cm.get("data") or {}).get(PROBE_CONFIG_KEY, "")
    return sorted(name for _ns, name, _uid in (parse_opted_out(raw.encode())[0] if raw else []))


def _counted(cluster: Cluster) -> int:
    observer = cluster.stored(r.RUNTIME_OBSERVERS, NAME) or {}
    return sum(((observer.get("status") or {}).get("postureCounts") or {}).values())


async def test_a_pod_deleted_in_a_watch_gap_stops_counting(cluster: Cluster) -> None:
    async with OperatorRun(cluster, fast_config(cluster, index_audit_seconds=1.0)) as op:
        await cluster.create(obj(API_VERSION, OBSERVER_KIND, NAME, spec=SPEC))
        await wait_for(lambda: _listed(cluster) == ["private-0", "private-1"], what="both pods opted out")
        await wait_for(lambda: _counted(cluster) == 2, what="both pods counted")

        del cluster.api.objects[_key(r.PODS), "shop", "private-0"]  # no DELETED event reaches the operator

        await wait_for(lambda: _listed(cluster) == ["private-1"], limit_s=60, what="the dead pod unlisted")
        await wait_for(lambda: _counted(cluster) == 1, limit_s=60, what="the dead pod no longer counted")
        await op.settle()
        assert op.reconciler.stats.errors["stale-index"] == 1
        # Two more audits: the live pod is left alone and the dead one is not found again.
        mark = cluster.mark()
        await wait_for(lambda: _audits(cluster, mark) >= 2, limit_s=60, what="two more audits")
        await op.settle()
        assert op.reconciler.stats.errors["stale-index"] == 1
        assert _listed(cluster) == ["private-1"] and _counted(cluster) == 1


def _audits(cluster: Cluster, mark: int) -> int:
    """Metadata-only lists of every pod since ``mark`` (one per audit)."""
    return sum(
        1
        for q in cluster.requests()[mark:]
        if q.method.value == "GET"
        and q.url.path == "/api/v1/pods"
        and q.url.query.get("watch") not in ("true", "1")
        and "PartialObjectMetadataList" in q.headers.get("Accept", "")
    )
