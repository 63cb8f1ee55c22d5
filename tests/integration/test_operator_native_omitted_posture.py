"""On a native node, a policy the probe ConfigMap left out gives its pods no more than Passive.

The native probes load only the policy entries the probe ConfigMap holds
(native/policy_config.py); an entry that does not fit in its 1 MiB is left
out and listed in ``policiesOmitted`` (tests/integration/test_operator_probe_config_full.py).
The operator used to count such a policy in the posture of the pods it selects
on native nodes anyway: ``stellaops.io/observe-posture: EbpfDeep`` and the
deep label for a pod whose probes no agent ran. Now the policy gives those pods
at most Passive, the reason says why, a Tetragon node's pod (its
TracingPolicies are loaded there) keeps its level, and the pods get their
level back once room is made. Through the real operator against kmock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import (
    API_VERSION,
    OBSERVE_DEEP_LABEL,
    OBSERVE_LABEL,
    OBSERVER_KIND,
    POLICY_KIND,
)
from stellaops_runtime.controller.render_agent import probe_configmap_name
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY, probe_entry_key
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, OperatorRun, fast_config, obj, wait_for
from tests.integration.posture_cluster import (
    BIG,
    MEDIUM,
    add_nodes,
    add_past_full_policies,
    observer_spec,
    pod_posture,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, AGENTS_NS, OBSERVER = "scan", "stellaops-system", "fleet"
NATIVE_NODE, TETRAGON_NODE = "node-n", "node-t"


def _pod(name: str, node: str, app: str) -> dict[str, Any]:
    spec = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    return obj("v1", "Pod", name, namespace=NS, labels={"app": app}, spec=spec)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        for ns in (NS, AGENTS_NS):
            await c.create(obj("v1", "Namespace", ns))
        await add_nodes(c, ((NATIVE_NODE, "native"), (TETRAGON_NODE, "tetragon")))
        await c.create(obj(API_VERSION, OBSERVER_KIND, OBSERVER, spec=observer_spec(AGENTS_NS)))
        await add_past_full_policies(c, NS)
        for pod, node, app in (
            ("big-n", NATIVE_NODE, BIG),
            ("big-t", TETRAGON_NODE, BIG),
            ("m0-n", NATIVE_NODE, "m0"),
        ):
            await c.create(_pod(pod, node, app))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    # Heartbeats written once: they must not go stale (None for that reason) on a slow machine.
    async with OperatorRun(cluster, fast_config(cluster, stale_after_seconds=3600.0)) as op:
        yield op


def _omitted(cluster: Cluster) -> list[str]:
    cm = cluster.stored(r.CONFIGMAPS, probe_configmap_name(OBSERVER), AGENTS_NS) or {}
    raw = (cm.get("data") or {}).get(PROBE_CONFIG_KEY)
    return list(json.loads(raw).get("policiesOmitted") or []) if raw else []


def _posture(cluster: Cluster, name: str) -> tuple[str, str, set[str]]:
    return pod_posture(cluster, name, NS)


async def test_a_policy_left_out_of_the_probe_config_gives_native_pods_passive(
    cluster: Cluster, operator: OperatorRun
) -> None:
    key = probe_entry_key(kind=POLICY_KIND, namespace=NS, name=BIG)
    await wait_for(lambda: _omitted(cluster) == [key], limit_s=60, what="the big policy left out")
    await wait_for(lambda: _posture(cluster, "big-n")[0] == "Passive", limit_s=60, what="big-n at Passive")
    _, reason, labels = _posture(cluster, "big-n")
    assert labels == set(), labels  # no probe selects it: no level label
    assert f"ObservationPolicy/{NS}/{BIG}" in reason and "left out of the agents' probe ConfigMap" in reason
    await wait_for(lambda: _posture(cluster, "m0-n")[0] == "EbpfDeep", limit_s=60, what="m0-n in force")
    # Tetragon nodes load the policy's TracingPolicies: its pod there keeps the level.
    await wait_for(lambda: _posture(cluster, "big-t")[0] == "EbpfDeep", limit_s=60, what="big-t in force")

    # Room is made: the big entry gets in, and its native pod its level.
    for name in MEDIUM[:2]:
        await cluster.delete(r.OBSERVATION_POLICIES, name, namespace=NS)
    await wait_for(lambda: _omitted(cluster) == [], limit_s=60, what="nothing left out")
    await wait_for(lambda: _posture(cluster, "big-n")[0] == "EbpfDeep", limit_s=60, what="big-n back")
    assert _posture(cluster, "big-n")[2] == {OBSERVE_LABEL, OBSERVE_DEEP_LABEL}
    assert "probe ConfigMap" not in _posture(cluster, "big-n")[1]
    await operator.settle(timeout=60)
