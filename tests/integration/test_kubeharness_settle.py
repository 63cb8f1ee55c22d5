"""The operator tests' harness: ``settle()`` waits until kopf has consumed what the API server sent.

About 100 operator tests write, ``settle()`` and assert at once. ``settle()`` used to return once
nothing was queued in the reconciler and no request had come for 0.25 s, which an operator that
has not yet read the test's write (a starved thread on a loaded CI machine) satisfies too: the
assert then ran before the operator reacted. Here the operator's event loop is held busy while
the test writes, as a starved machine does; ``settle()`` must still wait for the reaction.

kmock's watch also lost what was written while a new watch stream sent its first objects: it
began to follow the event bus only after sending them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import kmock
import pytest
import pytest_asyncio
from kmock._internal import rendering

from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, _key, obj
from tests.integration.watch_accounting import PROBE, KopfProbe, _counting, _sleep

pytestmark = pytest.mark.asyncio(loop_scope="module")

SPEC = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "EbpfDeep", "syscalls": ["execve"]}
STARVED_S = 1.5  # the operator's loop is held this long: far past settle()'s 0.25 s of quiet


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", "stellaops-system"))
        await c.create(obj("v1", "Namespace", "shop"))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        await op.settle()
        yield op


async def _starve(op: OperatorRun, release: threading.Event | None = None) -> None:
    """Hold the operator's event loop (its thread waits), as a starved machine does, for
    STARVED_S or until ``release`` is set."""
    entered = threading.Event()

    def hold() -> None:
        entered.set()
        if release is None:
            time.sleep(STARVED_S)
        else:
            release.wait(60)

    op.call(hold)
    assert await asyncio.to_thread(entered.wait, 60), "the operator's loop never ran the hold"


async def test_settle_waits_for_a_write_the_operator_has_not_read(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await _starve(operator)
    await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace="shop", spec=SPEC))
    await operator.settle()
    assert [o["metadata"]["name"] for o in cluster.listed(r.TRACING_POLICIES_NAMESPACED, "shop")] == [
        "stellaops-web"
    ]


async def test_settle_waits_for_a_delete_the_operator_has_not_read(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await operator.settle()
    assert cluster.listed(r.TRACING_POLICIES_NAMESPACED, "shop")
    await _starve(operator)
    await cluster.delete(r.OBSERVATION_POLICIES, "web", "shop")
    await operator.settle()
    assert cluster.listed(r.TRACING_POLICIES_NAMESPACED, "shop") == []
    assert cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") is None  # its finalizer released


async def test_settle_says_what_it_waited_for(cluster: Cluster, operator: OperatorRun) -> None:
    release = threading.Event()
    await _starve(operator, release)
    try:
        await cluster.patch(r.NAMESPACES, "shop", {"metadata": {"labels": {"tier": "prod"}}})
        with pytest.raises(TimeoutError) as e:
            await operator.settle(timeout=0.5)
    finally:
        release.set()
    assert "watch events not read: ['stream " in str(e.value), str(e.value)
    assert " (v1/namespaces): " in str(e.value), str(e.value)
    await operator.settle()  # once the loop runs again it has read and processed them


async def test_a_write_during_a_new_watch_first_objects_reaches_it(cluster: Cluster) -> None:
    """kmock sent the objects it had, then followed the bus: a write in between was lost."""
    await cluster.create(obj("v1", "ConfigMap", "a", namespace="shop", data={}))
    await cluster.create(obj("v1", "ConfigMap", "b", namespace="shop", data={}))
    request = rendering.Request(resource=kmock.resource(_key(r.CONFIGMAPS)), namespace="shop")
    stream = cluster.api._serve_watch(request)
    try:
        assert await anext(stream) == b""
        first = await anext(stream)
        assert first["type"] == "ADDED"
        await cluster.create(obj("v1", "ConfigMap", "c", namespace="shop", data={}))
        seen = [first]
        while not any(e["object"]["metadata"]["name"] == "c" for e in seen):
            seen.append(await asyncio.wait_for(anext(stream), 60))
        assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in seen) == [
            ("ADDED", "a"),
            ("ADDED", "b"),
            ("ADDED", "c"),
        ]
    finally:
        await stream.aclose()


@pytest.mark.parametrize(("delay", "busy"), [(60.0, 0), (2.0, 1), ([None, 30.0], 0)])
async def test_a_worker_asleep_for_a_timer_is_done_one_about_to_retry_is_not(
    delay: float | list[float | None], busy: int
) -> None:
    """A long sleep of kopf's in a worker (a peer's lease) waits on a timer, not on input: settle()
    must not wait for it. A retry due soon (the policy finalizer's TemporaryError, 2 s) is part
    of the reaction: settle() waits for it, or a test asserts on a policy still Terminating."""
    probe = KopfProbe()
    wake = asyncio.Event()
    asleep = asyncio.Event()

    async def processor(**_: object) -> None:
        asleep.set()
        await _sleep(delay, wakeup=wake)

    token = PROBE.set(probe)
    try:
        probe.handed = 1
        task = asyncio.create_task(_counting(probe, processor)())
    finally:
        PROBE.reset(token)
    await asyncio.wait_for(asleep.wait(), 60)
    await asyncio.sleep(0)  # into the sleep
    assert probe.busy() == busy
    wake.set()
    await asyncio.wait_for(task, 60)
    assert (probe.processed, probe.sleeping, probe.busy()) == (1, 0, 0)
