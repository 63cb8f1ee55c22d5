"""The operator lists opted-out pods in the probe ConfigMap, through the real operator against kmock.

Every pod whose ``stellaops.io/observe-level`` opts it out is named (uid,
namespace, name) in ``optedOut`` of the agents' probe ConfigMap, which the
agents read to drop those pods' events whatever their source (issue 14). The
list follows the pods: an annotation added later adds the pod, a terminating
pod stays, a pod deleted leaves it, and the agent's own parser reads exactly what was written.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, OBSERVE_LEVEL_ANNOTATION, OBSERVER_KIND
from stellaops_runtime.controller.render_agent import probe_configmap_name
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY
from stellaops_runtime.kube import resources as r
from stellaops_runtime.native.policy_config import parse_opted_in, parse_opted_out
from tests.integration.kubeharness import Cluster, OperatorRun, obj, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "stellaops-system"
NAME = "fleet"
SPEC: dict[str, Any] = {
    "agentNamespace": NS,
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}


def _pod(name: str, level: str | None) -> dict[str, Any]:
    return obj(
        "v1",
        "Pod",
        name,
        namespace="shop",
        annotations={OBSERVE_LEVEL_ANNOTATION: level} if level is not None else {},
        spec={"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}]},
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Namespace", "shop"))
        private = _pod("private-0", " none ")
        private["metadata"]["finalizers"] = ["example.com/hold"]  # so that it can be seen terminating
        await c.create(private)
        await c.create(_pod("web-0", "Passive"))
        await c.create(_pod("plain-0", None))
        await c.create(_pod("odd-0", "nothing"))  # not a level: fails closed, opted out (listed)
        await c.create(_pod("quiet-0", "false"))  # an opt-out spelling: listed
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        await cluster.create(obj(API_VERSION, OBSERVER_KIND, NAME, spec=SPEC))
        await op.settle()
        yield op


def _listed(cluster: Cluster) -> list[tuple[str, str, str]]:
    cm = cluster.stored(r.CONFIGMAPS, probe_configmap_name(NAME), NS) or {}
    raw = (cm.get("data") or {}).get(PROBE_CONFIG_KEY, "")
    return parse_opted_out(raw.encode())[0] if raw else []


def _uid(cluster: Cluster, name: str) -> str:
    pod = cluster.stored(r.PODS, name, "shop")
    assert pod is not None
    return str(pod["metadata"]["uid"])


async def test_the_probe_configmap_follows_the_opted_out_pods(
    cluster: Cluster, operator: OperatorRun
) -> None:
    private = ("shop", "private-0", _uid(cluster, "private-0"))
    odd = ("shop", "odd-0", _uid(cluster, "odd-0"))
    quiet = ("shop", "quiet-0", _uid(cluster, "quiet-0"))
    assert _listed(cluster) == [odd, private, quiet]
    cm = cluster.stored(r.CONFIGMAPS, probe_configmap_name(NAME), NS) or {}
    assert json.loads(cm["data"][PROBE_CONFIG_KEY])["policies"] == {}

    patch = {"metadata": {"annotations": {OBSERVE_LEVEL_ANNOTATION: "None"}}}
    await cluster.patch(r.PODS, "web-0", patch, namespace="shop")
    web = ("shop", "web-0", _uid(cluster, "web-0"))
    await wait_for(
        lambda: _listed(cluster) == [odd, private, quiet, web], what="web-0 listed after its annotation"
    )

    # Terminating (its processes still run their grace period): still listed.
    terminating = {"metadata": {"deletionTimestamp": "2026-12-03T10:00:00Z"}}
    await cluster.patch(r.PODS, "private-0", terminating, namespace="shop")
    await operator.settle()
    assert (cluster.stored(r.PODS, "private-0", "shop") or {})["metadata"].get("deletionTimestamp")
    assert _listed(cluster) == [odd, private, quiet, web]

    await cluster.patch(r.PODS, "private-0", {"metadata": {"finalizers": None}}, namespace="shop")
    await cluster.delete(r.PODS, "private-0", namespace="shop")
    await wait_for(lambda: _listed(cluster) == [odd, quiet, web], what="private-0 gone from the list")
    await operator.settle()
    assert _listed(cluster) == [odd, quiet, web]


def _level(value: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {OBSERVE_LEVEL_ANNOTATION: value}}}


def _at_a_level(cluster: Cluster) -> list[str]:
    cm = cluster.stored(r.CONFIGMAPS, probe_configmap_name(NAME), NS) or {}
    raw = (cm.get("data") or {}).get(PROBE_CONFIG_KEY, "")
    return parse_opted_in(raw.encode())[0] if raw else []  # the agent's own parser


async def test_a_pod_created_opted_out_and_given_a_level_is_named_for_the_agents(
    cluster: Cluster, operator: OperatorRun
) -> None:
    """The agents' record of a pod is its annotation at creation. A pod created opted out and
    annotated with a level since is named by uid in ``optedIn``, so the agents observe it from when
    they read the list instead of dropping it until it is re-created; an annotation back to an
    opt-out takes it out again (and into ``optedOut``)."""
    quiet = _uid(cluster, "quiet-0")
    await operator.settle()
    assert quiet not in _at_a_level(cluster)
    await cluster.patch(r.PODS, "quiet-0", _level("Passive"), namespace="shop")
    await wait_for(lambda: quiet in _at_a_level(cluster), what="quiet-0 named at a level")
    assert quiet not in {uid for _, _, uid in _listed(cluster)}
    assert _uid(cluster, "plain-0") not in _at_a_level(cluster)  # no annotation: nothing to say over
    await cluster.patch(r.PODS, "quiet-0", _level("off"), namespace="shop")
    await wait_for(
        lambda: quiet not in _at_a_level(cluster) and quiet in {u for _, _, u in _listed(cluster)},
        what="quiet-0 opted out again",
    )
