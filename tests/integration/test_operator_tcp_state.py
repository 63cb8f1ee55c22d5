"""``tcpState: true`` through the real operator (kopf against kmock).

The Tetragon object it applies, and the probe ConfigMap it writes, read back
by the native probes' loader as ``kubectl get cm -o json`` saves it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from stellaops_runtime.contracts.crds import API_VERSION, OBSERVER_KIND, POLICY_KIND, parse_policy_spec
from stellaops_runtime.controller.render_agent import probe_configmap_name
from stellaops_runtime.controller.render_policy import render_policy
from stellaops_runtime.kube import resources as r
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.policy_config import read_probe_config
from tests.crd_schema import errors, load_crd, validator_for
from tests.integration.kubeharness import Cluster, OperatorRun, obj, wait_for
from tests.integration.test_operator_policies import assert_applied_on_no_node, strip_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # Tetragon's CRD is large
NS = "stellaops-system"
OBSERVER = "fleet"
OBSERVER_SPEC = {
    "agentNamespace": NS,
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}
SPEC = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "ActiveTracing", "tcpState": True}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Namespace", "shop"))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        await cluster.create(obj(API_VERSION, OBSERVER_KIND, OBSERVER, spec=OBSERVER_SPEC))
        await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace="shop", spec=SPEC))
        await op.settle()
        yield op


async def test_the_operator_applies_the_tcp_tracepoint(cluster: Cluster, operator: OperatorRun) -> None:
    # settle() can return before the first reconcile on a loaded machine: wait for what it writes
    await wait_for(
        lambda: (cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") or {}).get("status"),
        what="web's status",
    )
    pol = cluster.stored(r.OBSERVATION_POLICIES, "web", "shop")
    assert pol is not None
    meta = pol["metadata"]
    expected = render_policy(
        kind=POLICY_KIND,
        name="web",
        namespace="shop",
        uid=meta["uid"],
        spec=parse_policy_spec(SPEC, cluster=False),
    ).tracing_policies
    stored = [strip_server(o) for o in cluster.listed(r.TRACING_POLICIES_NAMESPACED, "shop")]
    assert stored == expected and [o["metadata"]["name"] for o in stored] == ["stellaops-web-tcp"]
    assert stored[0]["spec"]["tracepoints"][0]["event"] == "inet_sock_set_state"
    crd = (
        REPO
        / "tests"
        / "fixtures"
        / "tetragon"
        / "crds"
        / "v1.7.0"
        / "cilium.io_tracingpoliciesnamespaced.yaml"
    )
    (tetragon_crd,) = [d for d in yaml.load_all(crd.read_text(), Loader=LOADER) if d]
    assert errors(validator_for(tetragon_crd), stored[0]) == []
    assert_applied_on_no_node(pol)  # applied; this cluster has no ObservationNode, so not Ready
    assert pol["status"]["tetragonPolicies"] == ["stellaops-web-tcp"]
    ours = validator_for(load_crd(REPO / "manifests" / "crds" / "observationpolicies.yaml"))
    assert errors(ours, pol) == []


async def test_the_native_loader_reads_the_operators_configmap(
    cluster: Cluster, operator: OperatorRun, tmp_path: Path
) -> None:
    await wait_for(
        lambda: cluster.stored(r.CONFIGMAPS, probe_configmap_name(OBSERVER), NS), what="the probes"
    )
    cm = cluster.stored(r.CONFIGMAPS, probe_configmap_name(OBSERVER), NS)
    assert cm is not None
    saved = tmp_path / "probes-cm.json"  # `kubectl get cm stellaops-probes-fleet -o json > probes-cm.json`
    saved.write_text(json.dumps(cm))
    res = read_probe_config(str(saved), NativeConfig())
    assert res.policies == ["ObservationPolicy/shop/web"]
    assert res.config.tcp_state is True
    assert NativeConfig().tcp_state is False  # the policy turned it on
    assert not any("tcpState" in note for note in res.not_covered)
