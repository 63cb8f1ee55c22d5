"""A report older than the last write of a Tetragon object never makes a policy Ready, restart or not.

``test_operator_rollout_fresh`` shows a running operator holding a policy
Progressing until the nodes report after its spec write. Two GitOps moves
escaped it, because the time of the write lived only in the operator's memory:

- **the operator restarted mid-rollout** (a Deployment roll, a node drain, a
  crash just after it patched the Tetragon object): the new process had no
  record of the write and took the node's old report of the name (ENABLED,
  about the previous spec) as being about the new one: Ready at once;
- **a policy pruned and re-created with the same name** (Argo CD's replace,
  a rollback done as delete + apply): the Tetragon object was created anew,
  and a node that had not polled Tetragon since still listed the deleted
  object as ENABLED: Ready on a report made before the object existed.

Now the write's time is on the object itself (the annotation
``stellaops.io/spec-written-at`` the operator sets with every spec patch, and
the object's ``creationTimestamp``), so any operator process reads it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, NODE_KIND, POLICY_KIND
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.test_operator_rollout_fresh import _node_status, _past, _report, _state

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, NODE, TP = "shop", "node-a", "stellaops-web"
SPEC: dict[str, Any] = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "ActiveTracing"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Node", NODE))
        await c.create(obj(API_VERSION, NODE_KIND, NODE, spec={"nodeName": NODE}))
        yield c


def _tp(cluster: Cluster) -> dict[str, Any] | None:
    return cluster.stored(r.TRACING_POLICIES_NAMESPACED, TP, NS)


async def test_an_operator_restarted_after_the_write_does_not_take_the_old_report(
    cluster: Cluster,
) -> None:
    async with OperatorRun(cluster, fast_config(cluster)) as op:
        await cluster.create(
            obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=SPEC | {"syscalls": ["execve"]})
        )
        await wait_for(lambda: _tp(cluster), what="rendered")
        await op.settle()
        await _past(await _report(cluster))
        await wait_for(lambda: _state(cluster) == (1, "Ready", "RolledOut"), what="generation 1 ready")

        # The spec changes; the operator patches the Tetragon object and is then restarted
        # before the node has listed its policies again.
        await cluster.patch(
            r.OBSERVATION_POLICIES, "web", {"spec": {"syscalls": ["execve", "connect"]}}, namespace=NS
        )
        await wait_for(lambda: "connect" in str(_tp(cluster)), what="the new syscall rendered")
        await op.settle()
        assert _state(cluster) == (2, "Progressing", "RollingOut")

    async with OperatorRun(cluster, fast_config(cluster)) as op:
        await op.settle()
        op.call(op.reconciler.resync)  # whatever the new process does first, it folds again
        await op.settle()
        # The node's only report still predates the write: it says nothing of generation 2.
        assert _state(cluster) == (2, "Progressing", "RollingOut")
        pol = cluster.stored(r.OBSERVATION_POLICIES, "web", NS) or {}
        assert pol["status"]["rollout"]["nodesRunning"] == 0
        assert pol["status"]["rollout"]["nodesPending"] == 1
        # A report made after the write releases it, in the new process too.
        await _past(await _report(cluster))
        await wait_for(lambda: _state(cluster) == (2, "Ready", "RolledOut"), what="generation 2 ready")


async def test_a_policy_recreated_with_the_same_name_waits_for_a_report_of_the_new_object(
    cluster: Cluster,
) -> None:
    async with OperatorRun(cluster, fast_config(cluster)) as op:
        await op.settle()
        assert _state(cluster)[1] == "Ready"
        # The node's last report, a second past: it lists the Tetragon object as ENABLED.
        beat = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        await cluster.patch(r.OBSERVATION_NODES, NODE, {"status": _node_status(beat)}, status=True)
        await op.settle()
        old_uid = (_tp(cluster) or {})["metadata"]["uid"]

        # Pruned and applied again at once (a rollback done as delete + create).
        await cluster.delete(r.OBSERVATION_POLICIES, "web", NS)
        await wait_for(lambda: cluster.stored(r.OBSERVATION_POLICIES, "web", NS) is None, what="deleted")
        await cluster.create(
            obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=SPEC | {"syscalls": ["openat"]})
        )
        await wait_for(
            lambda: (tp := _tp(cluster)) is not None and tp["metadata"]["uid"] != old_uid,
            what="the Tetragon object created again",
        )
        await op.settle()
        # The node's report was made before the new object existed: pending, not Ready.
        assert _state(cluster) == (1, "Progressing", "RollingOut")
        await _past(await _report(cluster))
        await wait_for(lambda: _state(cluster) == (1, "Ready", "RolledOut"), what="the new policy ready")


async def test_a_policy_deleted_while_the_operator_was_down_is_finalized_on_restart(
    cluster: Cluster,
) -> None:
    async with OperatorRun(cluster, fast_config(cluster)) as op:
        await cluster.create(
            obj(API_VERSION, POLICY_KIND, "late", namespace=NS, spec=SPEC | {"syscalls": ["execve"]})
        )
        await wait_for(
            lambda: cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-late", NS), what="rendered"
        )
        await op.settle()
    # Pruned while no operator runs: the finalizer holds it (Terminating), its objects stay.
    await cluster.delete(r.OBSERVATION_POLICIES, "late", NS)
    held = cluster.stored(r.OBSERVATION_POLICIES, "late", NS)
    assert held is not None and held["metadata"].get("deletionTimestamp")
    assert cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-late", NS) is not None
    async with OperatorRun(cluster, fast_config(cluster)) as op:
        await wait_for(
            lambda: cluster.stored(r.OBSERVATION_POLICIES, "late", NS) is None, what="the policy released"
        )
        await op.settle()
        assert cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-late", NS) is None
        # The other policy's objects are untouched.
        assert _tp(cluster) is not None
