"""A running pod whose observe-level annotation walks up, down, to an invalid value and away.

Users change ``stellaops.io/observe-level`` on a live pod (``kubectl annotate
--overwrite``, a GitOps sync). At every step the operator must leave the pod
exactly as that step's value says (docs/operator.md, "Posture" and "Opting a
pod out"): the posture annotation and its reason, the level labels, the
opt-out label, and the agents' opted-out list in the probe ConfigMap, with
nothing left from an earlier step. An invalid value fails closed: it opts the
pod out as None does (an opted-out pod whose value turns invalid stays out,
a typo never observes it) and gets one Warning Event per pod and value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import (
    API_VERSION,
    NODE_KIND,
    OBSERVE_LEVEL_ANNOTATION,
    OBSERVE_OFF_LABEL,
    OBSERVER_KIND,
    POLICY_KIND,
    POSTURE_ANNOTATION,
    POSTURE_REASON_ANNOTATION,
)
from stellaops_runtime.controller.render_agent import probe_configmap_name
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY
from stellaops_runtime.kube import resources as r
from stellaops_runtime.native.policy_config import parse_opted_out
from tests.integration.kubeharness import Cluster, OperatorRun, obj, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS, AGENTS_NS, OBSERVER, POD = "walk", "stellaops-system", "fleet", "web-0"
LEVEL_LABELS = ("stellaops.io/observe", "stellaops.io/observe-deep", "stellaops.io/observe-full")
CAPS = {
    "kernelVersion": "6.1.0-18-amd64",
    "btf": True,
    "bpfPermitted": True,
    "tracepoints": True,
    "uprobes": True,
    "kprobes": True,
    "usdt": True,
    "ringBuffer": True,
    "tetragon": {"reachable": True, "address": "unix:///var/run/tetragon/tetragon.sock", "version": "v1.7.0"},
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Namespace", AGENTS_NS))
        await c.create(obj("v1", "Node", "node-a"))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {"source": "tetragon", "heartbeatTime": now, "capabilities": CAPS, "policies": []}
        await c.create(obj(API_VERSION, NODE_KIND, "node-a", spec={"nodeName": "node-a"}))
        await c.patch(r.OBSERVATION_NODES, "node-a", {"status": status}, status=True)
        observer = {
            "agentNamespace": AGENTS_NS,
            "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
            "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
        }
        await c.create(obj(API_VERSION, OBSERVER_KIND, OBSERVER, spec=observer))
        policy = {
            "podSelector": {"matchLabels": {"app": "web"}},
            "maxLevel": "FullInstrumentation",
            "syscalls": ["execve"],
        }
        await c.create(obj(API_VERSION, POLICY_KIND, "web", namespace=NS, spec=policy))
        await c.create(
            obj(
                "v1",
                "Pod",
                POD,
                namespace=NS,
                labels={"app": "web"},
                annotations={OBSERVE_LEVEL_ANNOTATION: "ActiveTracing"},
                spec={"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}]},
            )
        )
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        yield op


def _meta(cluster: Cluster) -> dict[str, Any]:
    pod = cluster.stored(r.PODS, POD, NS)
    assert pod is not None
    return pod["metadata"]


def _opted_out(cluster: Cluster) -> list[tuple[str, str, str]]:
    cm = cluster.stored(r.CONFIGMAPS, probe_configmap_name(OBSERVER), AGENTS_NS) or {}
    raw = (cm.get("data") or {}).get(PROBE_CONFIG_KEY, "")
    return parse_opted_out(raw.encode())[0] if raw else []


def _state(cluster: Cluster) -> tuple[str, dict[str, str], bool]:
    meta = _meta(cluster)
    ours = {k: v for k, v in (meta.get("labels") or {}).items() if k.startswith("stellaops.io/")}
    listed = [e for e in _opted_out(cluster) if e[1] == POD]
    return (meta.get("annotations") or {}).get(POSTURE_ANNOTATION, ""), ours, bool(listed)


def _labels_for(level: str) -> dict[str, str]:
    n = {"None": 0, "Passive": 0, "ActiveTracing": 1, "EbpfDeep": 2, "FullInstrumentation": 3}[level]
    return dict.fromkeys(LEVEL_LABELS[:n], "true")


def _invalid_events(cluster: Cluster) -> list[dict[str, Any]]:
    return [e for e in cluster.listed(r.EVENTS, NS) if e.get("reason") == "InvalidObserveLevel"]


async def _annotate(cluster: Cluster, value: str | None) -> None:
    patch = {"metadata": {"annotations": {OBSERVE_LEVEL_ANNOTATION: value}}}
    await cluster.patch(r.PODS, POD, patch, namespace=NS)


async def _expect(cluster: Cluster, operator: OperatorRun, posture: str, *, off: bool, what: str) -> None:
    labels = _labels_for(posture) | ({OBSERVE_OFF_LABEL: "true"} if off else {})
    want = (posture, labels, off)
    await wait_for(lambda: _state(cluster) == want, limit_s=60, what=f"{what}: {want}")
    await operator.settle(timeout=60)
    assert _state(cluster) == want, what  # and it stays so


async def test_every_step_of_the_walk_leaves_exactly_that_steps_state(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await _expect(cluster, operator, "ActiveTracing", off=False, what="created at ActiveTracing")
    await _annotate(cluster, "EbpfDeep")
    await _expect(cluster, operator, "EbpfDeep", off=False, what="raised to EbpfDeep")
    await _annotate(cluster, " none ")
    await _expect(cluster, operator, "None", off=True, what="opted out")
    reason = _meta(cluster)["annotations"][POSTURE_REASON_ANNOTATION]
    assert "opts the pod out" in reason

    await _annotate(cluster, "turbo")  # not a level: fails closed, the pod stays opted out
    await _expect(cluster, operator, "None", off=True, what="invalid value read as None")
    assert "'turbo'" in _meta(cluster)["annotations"][POSTURE_REASON_ANNOTATION]
    events = _invalid_events(cluster)
    assert [e["involvedObject"]["name"] for e in events] == [POD]
    assert events[0]["type"] == "Warning" and "'turbo'" in events[0]["message"]
    assert "opted out (None)" in events[0]["message"]
    await _annotate(cluster, "Off")  # an opt-out spelling: None, no Warning
    await _expect(cluster, operator, "None", off=True, what="Off read as None")
    assert "turbo" not in _meta(cluster)["annotations"][POSTURE_REASON_ANNOTATION]

    await _annotate(cluster, None)
    await _expect(cluster, operator, "FullInstrumentation", off=False, what="annotation removed")
    assert "turbo" not in _meta(cluster)["annotations"][POSTURE_REASON_ANNOTATION]

    await _annotate(cluster, "None")  # and down again, straight from nothing
    await _expect(cluster, operator, "None", off=True, what="opted out again")
    await _annotate(cluster, "passive")
    await _expect(cluster, operator, "Passive", off=False, what="back to Passive")
    assert len(_invalid_events(cluster)) == 1
