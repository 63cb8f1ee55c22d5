"""RuntimeObserver through the real operator against kmock: the agent fleet, its status, drift, deletion."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.crds import (
    API_VERSION,
    CONFIG_HASH_ANNOTATION,
    OBSERVER_KIND,
    POLICY_KIND,
    parse_observer_spec,
)
from stellaops_runtime.controller.reconcile_observers import SECRETS
from stellaops_runtime.controller.render_agent import (
    AGENT_CONFIG_KEY,
    agent_resource_name,
    probe_configmap_name,
    render_agent_objects,
    store_secret_token,
)
from stellaops_runtime.controller.render_policy import PROBE_CONFIG_KEY, probe_entry_key
from stellaops_runtime.kube import resources as r
from tests.crd_schema import errors, load_crd, validator_for
from tests.integration.kubeharness import (
    Cluster,
    OperatorRun,
    obj,
    wait_for,
)
from tests.integration.test_operator_policies import condition, strip_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
NS = "stellaops-system"
NAME = "fleet"
RES = agent_resource_name(NAME)
SPEC: dict[str, Any] = {
    "agentNamespace": NS,
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0", "nodeSelector": {"pool": "general"}},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
}
KINDS = {
    "ServiceAccount": r.SERVICE_ACCOUNTS,
    "ConfigMap": r.CONFIGMAPS,
    "DaemonSet": r.DAEMONSETS,
    "Service": r.SERVICES,
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        await c.create(obj("v1", "Namespace", "shop"))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        await cluster.create(obj(API_VERSION, OBSERVER_KIND, NAME, spec=SPEC))
        await op.settle()
        yield op


def _stored(cluster: Cluster, kind: str, name: str = RES) -> dict | None:
    res = KINDS[kind]
    return cluster.stored(res, name, NS if res.namespaced else None)


def _rendered(cluster: Cluster) -> list[dict]:
    observer = cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    assert observer is not None
    spec = parse_observer_spec(observer["spec"])
    secret = cluster.stored(SECRETS, spec.store.secret_ref.name, NS)
    return render_agent_objects(
        name=NAME,
        uid=observer["metadata"]["uid"],
        namespace=NS,
        spec=spec,
        store_secret=store_secret_token(secret),
    )


async def test_agent_objects_are_rendered_and_owned(cluster: Cluster, operator: OperatorRun) -> None:
    observer = cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    assert observer is not None
    for expected in _rendered(cluster):
        stored = _stored(cluster, expected["kind"], expected["metadata"]["name"])
        assert stored is not None, expected["kind"]
        assert strip_server(stored) == expected  # byte for byte, as rendered
        refs = stored["metadata"]["ownerReferences"]
        assert refs[0]["uid"] == observer["metadata"]["uid"]  # what the garbage collector needs
    config_map = _stored(cluster, "ConfigMap")
    assert config_map is not None
    cfg = parse_config(yaml.safe_load(config_map["data"][AGENT_CONFIG_KEY]))
    assert cfg.observation_node.enabled  # the agents write ObservationNodes
    probes = cluster.stored(r.CONFIGMAPS, probe_configmap_name(NAME), NS)
    assert probes is not None and json.loads(probes["data"][PROBE_CONFIG_KEY])["policies"] == {}


async def test_status_follows_the_daemonset(cluster: Cluster, operator: OperatorRun) -> None:
    observer = cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    assert condition(observer, "Progressing")["status"] == "True"  # no DaemonSet status yet
    ds = _stored(cluster, "DaemonSet")
    assert ds is not None
    await cluster.patch(
        r.DAEMONSETS,
        RES,
        {
            "status": {
                "observedGeneration": ds["metadata"]["generation"],
                "desiredNumberScheduled": 3,
                "numberReady": 3,
                "updatedNumberScheduled": 3,
                "numberAvailable": 3,
            }
        },
        namespace=NS,
        status=True,
    )
    await operator.settle()
    observer = cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    assert observer is not None
    status = observer["status"]
    assert (status["desiredAgents"], status["readyAgents"]) == (3, 3)
    assert condition(observer, "Ready")["status"] == "True"
    assert status["observedGeneration"] == observer["metadata"]["generation"]
    assert set(status["postureCounts"]) == {
        "None",
        "Passive",
        "ActiveTracing",
        "EbpfDeep",
        "FullInstrumentation",
    }
    assert (
        errors(validator_for(load_crd(REPO / "manifests" / "crds" / "runtimeobservers.yaml")), observer) == []
    )


async def test_config_change_rolls_the_daemonset(cluster: Cluster, operator: OperatorRun) -> None:
    before = (_stored(cluster, "DaemonSet") or {})["spec"]["template"]["metadata"]["annotations"][
        CONFIG_HASH_ANNOTATION
    ]
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"hotSymbols": {"windowSeconds": 120}}})
    await operator.settle()
    config_map = _stored(cluster, "ConfigMap") or {}
    assert (
        yaml.safe_load(config_map["data"][AGENT_CONFIG_KEY])["hotSymbols"]["aggregationWindowSeconds"] == 120
    )
    after = (_stored(cluster, "DaemonSet") or {})["spec"]["template"]["metadata"]["annotations"][
        CONFIG_HASH_ANNOTATION
    ]
    assert after != before
    for expected in _rendered(cluster):
        assert (
            strip_server(_stored(cluster, expected["kind"], expected["metadata"]["name"]) or {}) == expected
        )


async def test_removed_fields_are_removed(cluster: Cluster, operator: OperatorRun) -> None:
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"agent": {"nodeSelector": None}}})
    await operator.settle()
    ds = _stored(cluster, "DaemonSet") or {}
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}


@pytest.mark.parametrize("kind", ["DaemonSet", "ConfigMap", "Service"])
async def test_drift_is_restored(cluster: Cluster, operator: OperatorRun, kind: str) -> None:
    expected = next(o for o in _rendered(cluster) if o["kind"] == kind)
    res = KINDS[kind]
    ns = NS if res.namespaced else None
    if kind == "ConfigMap":
        await cluster.patch(
            res, RES, {"data": {AGENT_CONFIG_KEY: "tetragon: {address: evil:1}\n"}}, namespace=ns
        )
    elif kind == "DaemonSet":
        await cluster.patch(res, RES, {"spec": {"template": {"spec": {"hostPID": False}}}}, namespace=ns)
    else:
        port = {"name": "metrics", "port": 1, "targetPort": "metrics", "protocol": "TCP"}
        await cluster.patch(res, RES, {"spec": {"ports": [port]}}, namespace=ns)
    await wait_for(
        lambda: strip_server(_stored(cluster, kind) or {}) == expected, what=f"edited {kind} restored"
    )
    await cluster.delete(res, RES, namespace=ns)
    await wait_for(
        lambda: strip_server(_stored(cluster, kind) or {}) == expected, what=f"deleted {kind} re-created"
    )
    await operator.settle()


async def test_policies_reach_the_probe_configmap(cluster: Cluster, operator: OperatorRun) -> None:
    spec = {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "EbpfDeep", "syscalls": ["execve"]}
    await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace="shop", spec=spec))
    await operator.settle()
    key = probe_entry_key(kind=POLICY_KIND, namespace="shop", name="web")
    probes = cluster.stored(r.CONFIGMAPS, probe_configmap_name(NAME), NS) or {}
    assert key in json.loads(probes["data"][PROBE_CONFIG_KEY])["policies"]
    await cluster.delete(r.OBSERVATION_POLICIES, "web", namespace="shop")
    await wait_for(
        lambda: cluster.stored(r.OBSERVATION_POLICIES, "web", "shop") is None, what="policy released"
    )
    probes = cluster.stored(r.CONFIGMAPS, probe_configmap_name(NAME), NS) or {}
    assert key not in json.loads(probes["data"][PROBE_CONFIG_KEY])["policies"]  # removed before release


async def test_invalid_spec_is_stalled_and_keeps_the_agents(cluster: Cluster, operator: OperatorRun) -> None:
    ds_before = _stored(cluster, "DaemonSet")
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"privacy": {"extraPatterns": ["("]}}})
    await operator.settle()
    observer = cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    stalled = condition(observer, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "InvalidRegex"
    assert condition(observer, "Ready")["status"] == "False"
    assert _stored(cluster, "DaemonSet") == ds_before
    events = [e for e in cluster.listed(r.EVENTS, "default") if e["involvedObject"]["name"] == NAME]
    assert [e["reason"] for e in events] == ["InvalidRegex"]
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"privacy": {"extraPatterns": None}}})
    await operator.settle()
    assert condition(cluster.stored(r.RUNTIME_OBSERVERS, NAME), "Stalled")["status"] == "False"


async def test_unchanged_reconcile_writes_nothing(cluster: Cluster, operator: OperatorRun) -> None:
    await operator.settle()
    mark = cluster.mark()
    operator.call(operator.reconciler.resync)
    await operator.settle()
    assert cluster.writes(mark) == []


# -- agent pods the kubelet cannot start -------------------------------------------------------

# As the kubelet writes them when runc refuses a capability missing from the node's bounding set.
RUNC_CAPS = (
    "failed to create containerd task: failed to create shim task: OCI runtime create failed: "
    "runc create failed: unable to start container process: unable to apply caps: "
    "operation not permitted: unknown"
)


def _agent_pod(cluster: Cluster, name: str, node: str) -> dict[str, Any]:
    ds = _stored(cluster, "DaemonSet") or {}
    labels = ds["spec"]["template"]["metadata"]["labels"]
    return obj(
        "v1", "Pod", name, namespace=NS, labels=dict(labels),
        spec={"nodeName": node, "containers": [{"name": "agent", "image": "x"}]},
    )  # fmt: skip


def _waiting(reason: str, message: str, last: dict[str, Any] | None = None) -> dict[str, Any]:
    cs: dict[str, Any] = {
        "name": "agent",
        "ready": False,
        "restartCount": 1 if last else 0,
        "image": "x",
        "imageID": "",
        "state": {"waiting": {"reason": reason, "message": message}},
    }
    if last:
        cs["lastState"] = {"terminated": last}
    return {"status": {"phase": "Pending", "containerStatuses": [cs]}}


async def test_agent_pods_that_cannot_start_degrade_the_observer(
    cluster: Cluster, operator: OperatorRun
) -> None:
    await cluster.create(_agent_pod(cluster, "stellaops-agent-fleet-aaaaa", "node-1"))
    await cluster.create(_agent_pod(cluster, "stellaops-agent-fleet-bbbbb", "node-2"))
    # a pod of another workload in the same namespace with the same failure is not ours
    await cluster.create(obj("v1", "Pod", "other", namespace=NS, spec={"containers": [{"name": "c"}]}))
    await cluster.patch(r.PODS, "other", _waiting("RunContainerError", RUNC_CAPS), namespace=NS, status=True)
    await cluster.patch(
        r.PODS,
        "stellaops-agent-fleet-aaaaa",
        _waiting("RunContainerError", RUNC_CAPS),
        namespace=NS,
        status=True,
    )
    await operator.settle()
    observer = cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    degraded = condition(observer, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RunContainerError")
    message = degraded["message"]
    assert (
        "1 agent pod(s) cannot start" in message and "stellaops-agent-fleet-aaaaa on node node-1" in message
    )
    assert "unable to apply caps: operation not permitted" in message
    assert "spec.agent.capabilities" in message  # what to do about it
    assert condition(observer, "Ready")["status"] == "False"
    # after a few restarts: CrashLoopBackOff, with runc's failure as the last termination
    last = {"exitCode": 128, "reason": "StartError", "message": RUNC_CAPS}
    crash = _waiting("CrashLoopBackOff", "back-off 10s restarting failed container=agent", last)
    await cluster.patch(r.PODS, "stellaops-agent-fleet-aaaaa", crash, namespace=NS, status=True)
    await cluster.patch(
        r.PODS,
        "stellaops-agent-fleet-bbbbb",
        _waiting("CreateContainerConfigError", 'secret "stellaops-store" not found'),
        namespace=NS,
        status=True,
    )
    await operator.settle()
    degraded = condition(cluster.stored(r.RUNTIME_OBSERVERS, NAME), "Degraded")
    # the reason that says why ranks before CrashLoopBackOff; both pods are named
    assert degraded["reason"] == "CreateContainerConfigError", degraded
    assert "2 agent pod(s) cannot start" in degraded["message"]
    assert "last exit 128 (StartError): failed to create containerd task" in degraded["message"]
    assert 'secret "stellaops-store" not found' in degraded["message"]
    # the kubelet starts them (the capability removed from spec.agent.capabilities): no longer Degraded
    running = {"status": {"phase": "Running", "containerStatuses": [
        {"name": "agent", "ready": True, "restartCount": 3, "image": "x", "imageID": "",
         "state": {"running": {"startedAt": "2026-12-03T07:00:00Z"}}}
    ]}}  # fmt: skip
    for pod in ("stellaops-agent-fleet-aaaaa", "stellaops-agent-fleet-bbbbb"):
        await cluster.patch(r.PODS, pod, running, namespace=NS, status=True)
    await operator.settle()
    observer = cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    assert condition(observer, "Degraded")["status"] == "False"
    for pod in ("stellaops-agent-fleet-aaaaa", "stellaops-agent-fleet-bbbbb", "other"):
        await cluster.delete(r.PODS, pod, NS)
    await operator.settle()


async def test_deleting_the_observer_removes_its_objects(cluster: Cluster, operator: OperatorRun) -> None:
    await cluster.delete(r.RUNTIME_OBSERVERS, NAME)
    await operator.settle()
    for kind in KINDS:
        assert _stored(cluster, kind) is None, kind
    assert cluster.stored(r.CONFIGMAPS, probe_configmap_name(NAME), NS) is None
