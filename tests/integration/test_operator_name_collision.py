"""Two policies whose rendered Tetragon names collide: the first keeps the object, the second says so.

A policy ``api`` asking for stack traces renders ``stellaops-api`` and
``stellaops-api-stacks``; a policy named ``api-stacks`` in the same namespace
renders its syscall object as ``stellaops-api-stacks`` too (and ``api`` with
functions against ``api-uprobes``, the same). Both are valid; Tetragon can
hold only one object of that name. What must not happen: the second policy
overwriting the first one's object (the first would then claim stack traces
Tetragon no longer collects, or the reverse), the two patching it back and
forth, or the second reporting Ready for syscalls nobody traces.

Through the real operator against kmock: the object stays the first
policy's, unwritten by the second; the second is Degraded (NotOwned) naming
the first; once the first is deleted, the second takes the name and is applied.
(This cluster has no ObservationNode, so an applied policy is Progressing with
reason NoNodeRunning, never Ready: that reason is reached only when nothing was
refused and nothing failed to apply.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from stellaops_runtime.controller.ownership import NOT_OWNED_REASON
from stellaops_runtime.controller.policy_state import NO_NODE_RUNNING
from stellaops_runtime.controller.render_policy import stacks_policy_name, tetragon_policy_names
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, obj, wait_for
from tests.integration.test_operator_policies import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "shop"
NAME = "stellaops-api-stacks"
PATH = f"/apis/{crds.TETRAGON_API_VERSION}/namespaces/{NS}/{crds.TETRAGON_NAMESPACED_PLURAL}/{NAME}"
API = {"maxLevel": "EbpfDeep", "syscalls": ["execve"], "stackTraces": {"kernel": True}}
APPLIED = NO_NODE_RUNNING  # applied without refusal or error, in a cluster without nodes
API_STACKS = {"maxLevel": "ActiveTracing", "syscalls": ["connect"]}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        yield op


def _controller(cluster: Cluster) -> str:
    body = cluster.stored(r.TRACING_POLICIES_NAMESPACED, NAME, NS) or {}
    refs = (body.get("metadata") or {}).get("ownerReferences") or [{}]
    return str(refs[0].get("name"))


def _true(cluster: Cluster, name: str) -> dict[str, Any]:
    pol = cluster.stored(r.OBSERVATION_POLICIES, name, NS)
    for t in ("Ready", "Progressing", "Degraded", "Stalled"):
        c = condition(pol, t)
        if c.get("status") == "True":
            return c | {"type": t}
    return {}


async def test_the_names_do_collide() -> None:
    assert stacks_policy_name(name="api") == tetragon_policy_names(name="api-stacks")[0] == NAME
    assert tetragon_policy_names(name="api")[1] == tetragon_policy_names(name="api-uprobes")[0]


async def test_the_second_policy_neither_takes_nor_claims_the_name(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await cluster.create(obj(API_VERSION, POLICY_KIND, "api", namespace=NS, spec=API))
    await wait_for(lambda: _true(cluster, "api").get("reason") == APPLIED, what="api applied")
    stacks = cluster.stored(r.TRACING_POLICIES_NAMESPACED, NAME, NS)
    assert _controller(cluster) == "api" and "kernelStackTrace" in str(stacks)
    mark = cluster.mark()
    await cluster.create(obj(API_VERSION, POLICY_KIND, "api-stacks", namespace=NS, spec=API_STACKS))
    await wait_for(
        lambda: _true(cluster, "api-stacks").get("reason") == NOT_OWNED_REASON, what="api-stacks refused"
    )
    await asyncio.sleep(1.5)  # several retries with backoff
    degraded = _true(cluster, "api-stacks")
    assert degraded["type"] == "Degraded"
    assert "its controller is ObservationPolicy api, not ObservationPolicy api-stacks" in degraded["message"]
    assert cluster.stored(r.TRACING_POLICIES_NAMESPACED, NAME, NS) == stacks  # not a byte changed
    written = [w for w in cluster.writes(mark) if w.split(" ", 1)[1] == PATH and not w.startswith("POST")]
    assert written == []
    assert _true(cluster, "api").get("reason") == APPLIED

    # The first goes: the second takes the name with its own syscalls.
    await cluster.delete(r.OBSERVATION_POLICIES, "api", namespace=NS)
    await wait_for(lambda: _controller(cluster) == "api-stacks", limit_s=60, what="the name taken over")
    await wait_for(lambda: _true(cluster, "api-stacks").get("reason") == APPLIED, limit_s=60, what="applied")
    body = str(cluster.stored(r.TRACING_POLICIES_NAMESPACED, NAME, NS))
    assert "connect" in body and "kernelStackTrace" not in body
