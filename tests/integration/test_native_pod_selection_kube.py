"""Issue 14: the agent's pod view, listed from an API server (kmock), selects which native events count.

The real PodViewLister lists its node's pods and the namespaces from the
emulated API server over HTTP; the real Pipeline, with a ContainerLookup
snapshot of registry records, processes records shaped as the BCC probes'
kernel side writes them; the policy is rendered by the operator's own
functions into the file the agent reads. A label change on a pod changes
which of its native events are kept, counted exactly. A missing kubeconfig or
an API server that goes away is counted and logged, never fatal, and leaves
the native probes node-wide (no view yet) or the last view in place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from stellaops_runtime.agent import pod_view
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.pod_view import PodViewLister
from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.kube import resources as r
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.replay.server import ReplayServer
from tests.integration.kubeharness import Cluster, http_get, obj, wait_for
from tests.unit.test_native_pod_selection import TEAM_A, WEB, write_probes
from tests.unit.test_native_pod_selection_pipeline import _record, bcc_exec, bcc_syscall

pytestmark = pytest.mark.asyncio(loop_scope="module")

NODE = "node-a"
OBSERVE = {"stellaops.io/observe": "true"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", "shop", labels={"team": "a"}))
        await c.create(obj("v1", "Node", NODE))
        yield c


def pod_obj(name: str, node: str, labels: dict[str, str]) -> dict:
    return obj("v1", "Pod", name, namespace="shop", labels=labels,
               spec={"nodeName": node, "containers": [{"name": "app", "image": "busybox"}]})  # fmt: skip


def pipeline(tmp_path: Path, *policies: tuple[str, dict]) -> Pipeline:
    path = write_probes(tmp_path / "probes.json", *(policies or (WEB,)))
    cfg = parse_config({
        "native": {"probeConfigFile": str(path)}, "symbols": {"enabled": False},
        "attribution": {"enabled": False},
    })  # fmt: skip
    return Pipeline(cfg, node_name=NODE)


async def test_a_label_change_on_a_pod_changes_which_native_events_count(
    cluster: Cluster, tmp_path: Path
) -> None:
    web = await cluster.create(pod_obj("web-1", NODE, {"app": "web", **OBSERVE}))
    db = await cluster.create(pod_obj("db-1", NODE, {"app": "db", **OBSERVE}))
    await cluster.create(pod_obj("web-9", "node-b", {"app": "web", **OBSERVE}))  # another node's
    p = pipeline(tmp_path)
    sel = p.native_selection
    assert sel is not None
    p.container_lookup = ContainerLookup([
        _record("c-web", web["metadata"]["uid"], "shop", "web-1", 501),
        _record("c-db", db["metadata"]["uid"], "shop", "db-1", 502),
    ])  # fmt: skip
    lister = PodViewLister(sel, node_name=NODE, kubeconfig=str(cluster.kubeconfig), interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(lister.run(stop))
    try:
        view = await wait_for(lambda: sel.view, what="a pod view")
        assert len(view) == 2 and lister.stats.pods == 2  # node-b's pod is not this node's
        assert view.namespaces == {}  # no policy selects namespaces by label: they are not listed
        n = 5
        batch = [(bcc_syscall(cg, "connect", 100 + cg), 1) for cg in (501, 502) for _ in range(n)]
        batch += [(bcc_exec(cg, 100 + cg), 1) for cg in (501, 502)]
        p.process_native(batch)
        assert p.processed == n + 2 and sel.dropped["not_selected"] == n and sel.kept == n

        await cluster.patch(r.PODS, "db-1", {"metadata": {"labels": {"app": "web"}}}, namespace="shop")
        await wait_for(lambda: sel.view is not view, what="the relabelled pod in the view")
        p.process_native(batch)
        assert p.processed == (n + 2) + (2 * n + 2)
        assert sel.dropped["not_selected"] == n and sel.kept == 3 * n

        view = sel.view
        await cluster.patch(r.PODS, "web-1", {"metadata": {"labels": {"stellaops.io/observe": None}}},
                            namespace="shop")  # fmt: skip  # the operator lowered it below ActiveTracing
        await wait_for(lambda: sel.view is not view, what="the level label removed")
        p.process_native(batch)
        assert sel.dropped["not_selected"] == 2 * n and sel.kept == 4 * n
        assert dict(lister.stats.errors) == {}
        # The agent only lists: no write of any kind reached the API server.
        ours = [q for q in cluster.requests() if q.headers.get("User-Agent", "").endswith("pod-view")]
        assert ours and {q.method.value for q in ours} == {"GET"}
        assert {q.url.path for q in ours} == {"/api/v1/pods"}
        assert all(q.url.query.get("fieldSelector") == f"spec.nodeName={NODE}"
                   for q in ours if q.url.path == "/api/v1/pods")  # fmt: skip
    finally:
        stop.set()
        await task


async def test_a_namespace_label_change_changes_a_cluster_policys_selection(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pod_view, "NAMESPACE_INTERVAL_SECONDS", 0.0)
    await cluster.create(obj("v1", "Namespace", "team-ns", labels={"team": "a"}))
    api = await cluster.create(
        obj("v1", "Pod", "api-1", namespace="team-ns", labels={"tier": "api", **OBSERVE},
            spec={"nodeName": NODE, "containers": [{"name": "app", "image": "busybox"}]})
    )  # fmt: skip
    p = pipeline(tmp_path, TEAM_A)
    sel = p.native_selection
    assert sel is not None and sel.refresh()  # the policies read, as the pipeline does before a batch
    p.container_lookup = ContainerLookup([_record("c-api", api["metadata"]["uid"], "team-ns", "api-1", 503)])
    lister = PodViewLister(sel, node_name=NODE, kubeconfig=str(cluster.kubeconfig), interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(lister.run(stop))
    n = 4
    batch = [(bcc_syscall(503, "openat", 603), 1)] * n
    try:
        view = await wait_for(lambda: sel.view, what="a pod view")
        assert view.namespaces["team-ns"] == {"team": "a"}
        p.process_native(batch)
        assert p.processed == n and sel.kept == n
        await cluster.patch(r.NAMESPACES, "team-ns", {"metadata": {"labels": {"team": "b"}}})
        await wait_for(lambda: sel.view is not view, what="the namespace's new label in the view")
        p.process_native(batch)
        assert p.processed == n and sel.dropped["not_selected"] == n
    finally:
        stop.set()
        await task


async def test_no_credentials_keeps_the_probes_node_wide_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = pipeline(tmp_path)
    sel = p.native_selection
    assert sel is not None
    lister = PodViewLister(sel, node_name=NODE, kubeconfig=str(tmp_path / "missing"), interval=0.01)
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="stellaops_runtime.agent.pod_view"):
        task = asyncio.create_task(lister.run(stop))
        await wait_for(lambda: lister.stats.errors["config"] >= 2, limit_s=60, what="two failed connects")
        stop.set()
        await task
    assert sel.view is None and not sel.active
    assert sum("node-wide" in rec.getMessage() for rec in caplog.records) == 1
    p.process_native([(bcc_syscall(777, "connect", 9), 1)])  # a host process, no pod view: kept
    assert p.processed == 1 and sum(sel.dropped.values()) == 0


async def test_an_api_server_that_goes_away_leaves_the_last_view(tmp_path: Path) -> None:
    p = pipeline(tmp_path)
    sel = p.native_selection
    assert sel is not None
    stop = asyncio.Event()
    (tmp_path / "kube").mkdir()
    async with Cluster(tmp_path / "kube") as c:
        await c.create(obj("v1", "Namespace", "shop"))
        await c.create(pod_obj("web-1", NODE, {"app": "web", **OBSERVE}))
        lister = PodViewLister(sel, node_name=NODE, kubeconfig=str(c.kubeconfig), interval=0.02)
        task = asyncio.create_task(lister.run(stop))
        view = await wait_for(lambda: sel.view, what="a pod view")
    try:  # the API server is gone: every listing fails, counted; the last view stays
        await wait_for(lambda: lister.stats.errors["io"] >= 2, what="failed listings")
        assert sel.view is view and sel.active and lister.stats.last_error
    finally:
        stop.set()
        await task


async def test_the_agent_runs_its_pod_view_and_exports_the_selection_metrics(
    cluster: Cluster, tmp_path: Path
) -> None:
    # A pod of its own on the node (the cluster is shared by the module's tests, in any order).
    await cluster.create(pod_obj("metrics-1", NODE, {"app": "metrics", **OBSERVE}))
    tetragon = ReplayServer([])
    await tetragon.start("127.0.0.1:0")
    assert tetragon.address
    config = parse_config({
        "nodeName": NODE,
        "tetragon": {"address": tetragon.address, "connectionTimeout": 1},
        "store": {"url": f"sqlite:///{tmp_path / 'hot.db'}"},
        "metrics": {"address": "127.0.0.1", "port": 0},
        "observationNode": {"enabled": True, "heartbeatSeconds": 60, "kubeconfig": str(cluster.kubeconfig)},
        "native": {"probeConfigFile": str(write_probes(tmp_path / "probes.json", WEB))},
    })  # fmt: skip
    agent = Agent(config)
    assert agent.pod_view is not None
    task = asyncio.create_task(agent.run())
    try:
        await wait_for(lambda: agent.pipeline.native_selection.view, what="the agent's pod view")
        status, text = await http_get(f"http://127.0.0.1:{agent.http_port}/metrics")
        assert status == 200
        pods = len(agent.pipeline.native_selection.view)
        assert pods >= 1 and f"stellaops_runtime_native_pod_view_pods {float(pods)}" in text
        assert "stellaops_runtime_native_pod_view_active 1.0" in text
        for reason in ("no_pod", "not_selected"):
            assert f'stellaops_runtime_native_selection_dropped_total{{reason="{reason}"}} 0.0' in text
        assert 'stellaops_runtime_native_pod_view_errors_total{kind="api"} 0.0' in text
    finally:
        agent.stop("test")
        assert await asyncio.wait_for(task, 30) == 0
        await tetragon.stop(grace=0)
