"""GitOps moves on one policy, fast: specs flipped back and forth, pruned and re-applied, many at once.

What a GitOps tool does to the operator in a bad hour: a policy flipped
between two specs faster than the operator reconciles (a revert of a revert),
a policy deleted and created again with the same name (Argo CD prune then
sync, or ``Replace=true``), a rollback to an older spec. After each burst,
once the operator settles, the cluster must hold exactly the Tetragon objects
of the last spec, owned by the policy object that exists now (never the old
spec's leftovers, never the new one's deleted), and the status must describe
the current generation.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, OBSERVER_KIND, POLICY_KIND
from stellaops_runtime.controller.render_agent import probe_configmap_name
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY, probe_entry_key
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import ApiError
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "shop"
DEEP: dict[str, Any] = {  # renders stellaops-<name>, -stacks and -tcp
    "podSelector": {"matchLabels": {"app": "web"}},
    "maxLevel": "EbpfDeep",
    "syscalls": ["execve", "connect"],
    "stackTraces": {"kernel": True, "user": False},
    "tcpState": True,
}
ACTIVE: dict[str, Any] = {  # renders stellaops-<name> only
    "podSelector": {"matchLabels": {"app": "web"}},
    "maxLevel": "ActiveTracing",
    "syscalls": ["openat"],
    "stackTraces": {"kernel": False, "user": False},
    "tcpState": False,
}


AGENTS_NS, OBSERVER = "stellaops-system", "fleet"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Namespace", AGENTS_NS))
        observer = {
            "agentNamespace": AGENTS_NS,
            "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
            "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
        }
        await c.create(obj(API_VERSION, OBSERVER_KIND, OBSERVER, spec=observer))
        yield c


def _probe_entry(cluster: Cluster, policy: str) -> dict[str, Any] | None:
    """The policy's entry in the agents' native probe ConfigMap (None when absent)."""
    cm = cluster.stored(r.CONFIGMAPS, probe_configmap_name(OBSERVER), AGENTS_NS) or {}
    doc = json.loads((cm.get("data") or {}).get(PROBE_CONFIG_KEY) or "{}")
    entry: dict[str, Any] | None = (doc.get("policies") or {}).get(
        probe_entry_key(kind=POLICY_KIND, namespace=NS, name=policy)
    )
    return entry


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster, fast_config(cluster)) as op:
        await op.settle()
        yield op


def _tetragon(cluster: Cluster, policy: str) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o
        for o in cluster.listed(r.TRACING_POLICIES_NAMESPACED, NS)
        if o["metadata"]["name"]
        in {f"stellaops-{policy}{part}" for part in ("", "-stacks", "-tcp", "-uprobes")}
    }


def _check(cluster: Cluster, policy: str, spec: dict[str, Any]) -> None:
    pol = cluster.stored(r.OBSERVATION_POLICIES, policy, NS)
    assert pol is not None
    want = {f"stellaops-{policy}"}
    if spec["maxLevel"] == "EbpfDeep":
        want.add(f"stellaops-{policy}-stacks")
    if spec.get("tcpState"):
        want.add(f"stellaops-{policy}-tcp")
    have = _tetragon(cluster, policy)
    assert set(have) == want
    for name, o in have.items():
        owners = [ref["uid"] for ref in o["metadata"].get("ownerReferences") or ()]
        assert owners == [pol["metadata"]["uid"]], name
    main = have[f"stellaops-{policy}"]
    syscalls = {str(spec["syscalls"])}
    assert all(s in str(main["spec"]) for s in spec["syscalls"]), syscalls
    status = pol.get("status") or {}
    assert status.get("observedGeneration") == pol["metadata"]["generation"]
    assert sorted(status.get("tetragonPolicies") or []) == sorted(want)
    # The native probes read the same spec from the probe ConfigMap.
    entry = _probe_entry(cluster, policy)
    assert entry is not None
    assert sorted(s["name"] for s in entry["syscalls"]) == sorted(spec["syscalls"])
    assert bool(entry.get("tcpState")) == bool(spec.get("tcpState"))


async def _settled_on(cluster: Cluster, operator: OperatorRun, checks: dict[str, dict[str, Any]]) -> None:
    """Wait (60 s) until every policy of ``checks`` passes ``_check``, let the operator go quiet, check again.

    ``settle`` alone after a write can return before kopf has seen the write's watch event
    on a loaded machine (nothing queued yet, no request for its quiet time).
    """

    def ok() -> bool:
        try:
            for policy, spec in checks.items():
                _check(cluster, policy, spec)
        except AssertionError:
            return False
        return True

    await wait_for(ok, limit_s=60, what=f"settled on {sorted(checks)[:3]}")
    await operator.settle(timeout=60)
    for policy, spec in checks.items():
        _check(cluster, policy, spec)


async def test_a_spec_flipped_fast_settles_on_exactly_the_last_one(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await cluster.create(obj(API_VERSION, POLICY_KIND, "flip", namespace=NS, spec=DEEP))
    await _settled_on(cluster, operator, {"flip": DEEP})
    for last in (ACTIVE, DEEP):
        for i in range(12):
            spec = DEEP if i % 2 else ACTIVE
            await cluster.patch(r.OBSERVATION_POLICIES, "flip", {"spec": spec}, namespace=NS)
        await cluster.patch(r.OBSERVATION_POLICIES, "flip", {"spec": last}, namespace=NS)
        await _settled_on(cluster, operator, {"flip": last})


async def test_a_policy_pruned_and_reapplied_keeps_only_the_new_objects(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await cluster.create(obj(API_VERSION, POLICY_KIND, "again", namespace=NS, spec=DEEP))
    await _settled_on(cluster, operator, {"again": DEEP})
    for round_, spec in enumerate((ACTIVE, DEEP, ACTIVE, DEEP)):
        await cluster.delete(r.OBSERVATION_POLICIES, "again", NS)

        # A GitOps tool re-creates as soon as the name is free (409 while the finalizer holds it).
        async def recreate(spec: dict[str, Any] = spec) -> bool:
            try:
                await cluster.create(obj(API_VERSION, POLICY_KIND, "again", namespace=NS, spec=spec))
            except ApiError as e:
                if e.conflict:
                    return False
                raise
            return True

        await wait_for(recreate, limit_s=60, what=f"re-created (round {round_})")
        mark = cluster.mark()
        await _settled_on(cluster, operator, {"again": spec})
        # Nothing of the new policy was deleted on the way (the old one's last events arrive
        # while the new one is already indexed under the same name).
        deleted = [w for w in cluster.writes(mark) if w.startswith("DELETE") and "tracingpolicies" in w]
        assert deleted == [], deleted


async def test_many_policies_at_once_each_settles_on_its_own_objects(
    cluster: Cluster, operator: OperatorRun
) -> None:
    names = [f"many-{i}" for i in range(40)]
    for i, name in enumerate(names):
        await cluster.create(
            obj(API_VERSION, POLICY_KIND, name, namespace=NS, spec=DEEP if i % 2 else ACTIVE)
        )
    for i, name in enumerate(names[:20]):  # half roll back to the other spec at once
        await cluster.patch(r.OBSERVATION_POLICIES, name, {"spec": ACTIVE if i % 2 else DEEP}, namespace=NS)
    want = {name: DEEP if bool(i % 2) != (i < 20) else ACTIVE for i, name in enumerate(names)}
    await _settled_on(cluster, operator, want)  # the first 20 flipped


async def test_a_replace_that_drops_the_finalizer_and_annotation_gets_them_back(
    cluster: Cluster, operator: OperatorRun
) -> None:
    """Argo CD's Replace=true sends the object as git has it: kopf's marks go, the operator restores them."""
    await cluster.create(obj(API_VERSION, POLICY_KIND, "replaced", namespace=NS, spec=ACTIVE))
    key = "operator.stellaops.io/last-handled-configuration"

    def marks() -> tuple[bool, bool]:
        meta = (cluster.stored(r.OBSERVATION_POLICIES, "replaced", NS) or {}).get("metadata") or {}
        return "stellaops.io/finalizer" in (meta.get("finalizers") or ()), key in (
            meta.get("annotations") or {}
        )

    await wait_for(lambda: marks() == (True, True), limit_s=60, what="kopf's finalizer and annotation")
    await operator.settle(timeout=60)
    replaced = await cluster.patch(
        r.OBSERVATION_POLICIES,
        "replaced",
        {"metadata": {"finalizers": None, "annotations": {key: None}}, "spec": DEEP},
        namespace=NS,
    )
    gone = replaced["metadata"]
    assert not gone.get("finalizers") and key not in (gone.get("annotations") or {})
    await wait_for(lambda: marks() == (True, True), limit_s=60, what="the finalizer and annotation back")
    await _settled_on(cluster, operator, {"replaced": DEEP})
    # And the deletion still goes through the finalizer: its Tetragon objects are removed first.
    await cluster.delete(r.OBSERVATION_POLICIES, "replaced", NS)
    await wait_for(
        lambda: cluster.stored(r.OBSERVATION_POLICIES, "replaced", NS) is None, limit_s=60, what="deleted"
    )
    assert _tetragon(cluster, "replaced") == {}
    assert _probe_entry(cluster, "replaced") is None
