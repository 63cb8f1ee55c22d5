"""An API server that answers 429 Too Many Requests with Retry-After is waited for, not hammered.

API Priority and Fairness (and a busy aggregated API server) refuses a
request with 429 and a ``Retry-After`` header saying when to come back. The
operator's client raised it like any other error: the reconcile that met it
failed, and the scheduler retried on its own backoff (0.2 s here, 1 s by
default), whatever the server had asked. Worse, a policy whose Tetragon
object met a 429 wrote ``Degraded`` / ``ApplyFailed`` ("429 TooManyRequests")
into its status: Argo CD and Flux showed a failed policy for a server that
had only asked to be called again later.

Now the client waits the server's ``Retry-After`` (a bounded number of times,
each wait capped) and retries; when it gives up, the error carries the wait
and the scheduler's next attempt comes no sooner; a throttled reconcile
writes no Degraded status. Hostile Retry-After values (not a number,
negative, huge, an HTTP date) never crash it and never make it sleep for
more than the cap.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import ApiError, KubeClient
from tests.integration.kubeharness import TEST_AGENT, Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "shop"
SPEC: dict[str, Any] = {
    "podSelector": {"matchLabels": {"app": "web"}},
    "maxLevel": "ActiveTracing",
    "syscalls": ["execve"],
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        yield c
        c.api.throttle = None


def _ours(req: Any) -> bool:
    return not req.headers.get("User-Agent", "").startswith(TEST_AGENT)


async def test_a_throttled_create_waits_retry_after_and_never_reads_degraded(cluster: Cluster) -> None:
    attempts: list[float] = []

    def throttle(req: Any) -> str | None:
        if req.method.value == "POST" and "/tracingpoliciesnamespaced" in req.url.path and _ours(req):
            attempts.append(time.monotonic())
            return "2" if len(attempts) <= 2 else None
        return None

    cluster.api.throttle = throttle
    mark = cluster.mark()
    async with OperatorRun(cluster, fast_config(cluster)) as op:
        await op.settle()
        await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=SPEC))
        await wait_for(
            lambda: cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-web", NS),
            limit_s=60,
            what="the Tetragon object created after the throttling",
        )
        await op.settle()
    cluster.api.throttle = None
    assert len(attempts) == 3
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(g >= 1.9 for g in gaps), f"retried before the server's Retry-After: {gaps}"
    # No status write ever said the policy failed: the server only asked to be called later.
    for req in cluster.requests()[mark:]:
        if req.method.value == "PATCH" and req.url.path.endswith("/status") and _ours(req):
            text = json.dumps(req.data)
            assert "ApplyFailed" not in text and "TooManyRequests" not in text, text
    pol = cluster.stored(r.OBSERVATION_POLICIES, "web", NS)
    assert condition(pol, "Degraded").get("status") == "False"
    assert condition(pol, "Progressing").get("reason") == "NoNodeRunning"  # no node in this cluster


async def test_a_server_that_keeps_throttling_gives_up_with_the_wait_it_asked(cluster: Cluster) -> None:
    calls: list[float] = []

    def throttle(req: Any) -> str | None:
        if req.url.path.endswith("/configmaps/throttled"):
            calls.append(time.monotonic())
            return "99999999"  # a hostile wait: capped, and beyond the client's own wait bound
        return None

    cluster.api.throttle = throttle
    try:
        async with KubeClient(cluster.kube.connection, user_agent=TEST_AGENT) as kube:
            started = time.monotonic()
            with pytest.raises(ApiError) as err:
                await kube.get(r.CONFIGMAPS, name="throttled", namespace=NS)
            assert time.monotonic() - started < 5  # it did not sleep the server's 3 years
    finally:
        cluster.api.throttle = None
    assert err.value.status == 429 and err.value.throttled
    assert err.value.retry_after is not None and err.value.retry_after >= 60
    assert len(calls) == 1


async def test_a_throttled_finalizer_removal_is_not_reported_as_a_refusal(cluster: Cluster) -> None:
    """A 429 on the finalizer's removal is load, not the 'invalid under the CRD' refusal (finalizer.py)."""
    refused: list[str] = []

    def throttle(req: Any) -> str | None:
        if (
            req.method.value == "PATCH"
            and req.url.path.endswith("/observationpolicies/gone")
            and "json-patch" in req.headers.get("Content-Type", "")
            and _ours(req)
            and not refused
        ):
            refused.append(req.url.path)
            return "30"  # beyond the client's own wait: the refusal reaches the finalizer code
        return None

    async with OperatorRun(cluster, fast_config(cluster)) as op:
        await cluster.create(obj(API_VERSION, POLICY_KIND, "gone", namespace=NS, spec=SPEC))
        await op.settle()
        cluster.api.throttle = throttle
        mark = cluster.mark()
        await cluster.delete(r.OBSERVATION_POLICIES, "gone", NS)
        await wait_for(
            lambda: cluster.stored(r.OBSERVATION_POLICIES, "gone", NS) is None, limit_s=60, what="released"
        )
        cluster.api.throttle = None
        assert refused
        assert op.reconciler.stats.events["FinalizerRemovalRejected"] == 0
        posted = [
            json.dumps(req.data)
            for req in cluster.requests()[mark:]
            if req.method.value == "POST" and req.url.path.endswith("/events") and _ours(req)
        ]
        assert not any("FinalizerRemovalRejected" in p for p in posted), posted
