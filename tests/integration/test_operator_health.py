"""The operator Deployment's probes: kopf's --liveness endpoint answers once the operator has started.

manifests/operator/deployment.yaml points both its readiness and its liveness
probe at ``--liveness=http://0.0.0.0:8080/healthz`` (test_manifests checks the
wiring). This runs the real operator with that endpoint and checks what the
kubelet would see: nothing before the operator runs, HTTP 200 on the path
once it has started (our start-up handler has built its API client), 404 on
other paths, and nothing once it has stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tests.integration.kubeharness import Cluster, OperatorRun, http_get, wait_for
from tests.ports import free_port as _free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        yield c


async def _status(url: str) -> int | None:
    try:
        status, _ = await http_get(url)
    except aiohttp.ClientConnectionError:
        return None
    return status


async def test_the_probe_endpoint_answers_once_started(cluster: Cluster) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    assert await _status(url) is None  # not serving before the operator runs
    async with OperatorRun(cluster, liveness=url) as op:
        assert op.reconciler.kube is not None  # our start-up handler has run: the client is there
        await wait_for(lambda: _status(url), what="the health endpoint")
        assert await _status(url) == 200
        assert await _status(f"http://127.0.0.1:{port}/other") == 404
    assert await _status(url) is None  # and gone with it
