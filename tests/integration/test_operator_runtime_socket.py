"""spec.containerRuntime through the real operator against kmock: the socket mounted, named, refused.

On k3s, Docker or CRI-O nodes the default mounts (``/run/containerd``,
``/var/run/crio``) hold no runtime socket, every agent then caps its container
windows at ActiveTracing (ContainersKnown False, NoRuntimeSocket). The
RuntimeObserver's ``containerRuntime`` says where the socket is: the operator
renders its mount and the agent config's lifecycle keys, re-renders (rolls the
agents) when it changes, and refuses a path the agent must not mount with a
Stalled condition (reason InvalidSocketPath) while the agents keep running as
they were (controller/runtime_socket.py, contracts/runtime_socket.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.crds import (
    API_VERSION,
    CONFIG_HASH_ANNOTATION,
    OBSERVER_KIND,
    parse_observer_spec,
)
from stellaops_runtime.controller.reconcile_observers import SECRETS
from stellaops_runtime.controller.render_agent import (
    AGENT_CONFIG_KEY,
    agent_resource_name,
    render_agent_objects,
    store_secret_token,
)
from stellaops_runtime.kube import resources as r
from tests.crd_schema import errors, load_crd, validator_for
from tests.integration.kubeharness import Cluster, OperatorRun, obj
from tests.integration.test_operator_policies import condition, strip_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
NS = "stellaops-system"
NAME = "fleet"
RES = agent_resource_name(NAME)
K3S = "/run/k3s/containerd/containerd.sock"
SPEC: dict[str, Any] = {
    "agentNamespace": NS,
    "agent": {"image": "ghcr.io/stellaops/stellaops-runtime:0.1.0"},
    "store": {"secretRef": {"name": "stellaops-store", "key": "url"}},
    "containerRuntime": {"kind": "containerd", "socketPath": K3S},
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", NS))
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def operator(cluster: Cluster) -> AsyncIterator[OperatorRun]:
    async with OperatorRun(cluster) as op:
        await cluster.create(obj(API_VERSION, OBSERVER_KIND, NAME, spec=SPEC))
        await op.settle()
        yield op


KINDS = {
    "ServiceAccount": r.SERVICE_ACCOUNTS,
    "ConfigMap": r.CONFIGMAPS,
    "DaemonSet": r.DAEMONSETS,
    "Service": r.SERVICES,
}


def _rendered(cluster: Cluster) -> list[dict[str, Any]]:
    """What the operator should have written for the stored observer."""
    observer = cluster.stored(r.RUNTIME_OBSERVERS, NAME) or {}
    spec = parse_observer_spec(observer["spec"])
    secret = cluster.stored(SECRETS, spec.store.secret_ref.name, NS)
    return render_agent_objects(
        name=NAME,
        uid=observer["metadata"]["uid"],
        namespace=NS,
        spec=spec,
        store_secret=store_secret_token(secret),
    )


def _daemon_set(cluster: Cluster) -> dict[str, Any]:
    return cluster.stored(r.DAEMONSETS, RES, NS) or {}


def _host_paths(cluster: Cluster) -> dict[str, str]:
    """hostPath -> type of the runtime's volumes in the stored DaemonSet."""
    volumes = _daemon_set(cluster)["spec"]["template"]["spec"]["volumes"]
    return {
        v["hostPath"]["path"]: v["hostPath"]["type"]
        for v in volumes
        if v["name"] in ("runtime-socket", "containerd", "crio")
    }


def _lifecycle(cluster: Cluster) -> dict[str, Any]:
    cm = cluster.stored(r.CONFIGMAPS, RES, NS) or {}
    return dict(json.loads(cm["data"][AGENT_CONFIG_KEY])["lifecycle"])


def _config_hash(cluster: Cluster) -> str:
    return str(_daemon_set(cluster)["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])


async def test_the_k3s_socket_is_mounted_and_named(cluster: Cluster, operator: OperatorRun) -> None:
    observer = cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    crd = load_crd(REPO / "manifests" / "crds" / "runtimeobservers.yaml")
    assert errors(validator_for(crd), observer) == []  # the API server's schema takes it
    for expected in _rendered(cluster):
        stored = cluster.stored(KINDS[expected["kind"]], expected["metadata"]["name"], NS)
        assert strip_server(stored or {}) == expected, expected["kind"]
    assert _host_paths(cluster) == {"/run/k3s/containerd": "DirectoryOrCreate"}
    assert _lifecycle(cluster) == {"enabled": "auto", "runtime": "containerd", "containerdAddress": K3S}
    cm = cluster.stored(r.CONFIGMAPS, RES, NS)
    assert parse_config(cm).lifecycle.containerd_address == K3S  # the agent's own reading
    assert condition(observer, "Stalled").get("status") != "True"


async def test_a_path_the_agent_must_not_mount_stalls_and_keeps_the_agents(
    cluster: Cluster, operator: OperatorRun
) -> None:
    before = _daemon_set(cluster)
    await cluster.patch(
        r.RUNTIME_OBSERVERS, NAME, {"spec": {"containerRuntime": {"socketPath": "/etc/containerd/c.sock"}}}
    )
    await operator.settle()
    observer = cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    stalled = condition(observer, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSocketPath"), stalled
    assert "spec.containerRuntime.socketPath '/etc/containerd/c.sock'" in stalled["message"]
    assert "must not mount" in stalled["message"]
    assert condition(observer, "Ready")["status"] == "False"
    assert _daemon_set(cluster) == before  # the running agents are left as they were
    events = [e for e in cluster.listed(r.EVENTS, "default") if e["involvedObject"]["name"] == NAME]
    assert "InvalidSocketPath" in [e["reason"] for e in events]


async def test_a_changed_runtime_rolls_the_agents_and_unset_restores_the_default(
    cluster: Cluster, operator: OperatorRun
) -> None:
    k3s = _config_hash(cluster)
    mark = cluster.mark()
    await cluster.patch(
        r.RUNTIME_OBSERVERS, NAME, {"spec": {"containerRuntime": {"kind": "docker", "socketPath": None}}}
    )
    await operator.settle()
    ds_writes = [w for w in cluster.writes(mark) if "/daemonsets/" in w]
    assert ds_writes == [f"PATCH /apis/apps/v1/namespaces/{NS}/daemonsets/{RES}"]  # one roll, not two
    assert condition(cluster.stored(r.RUNTIME_OBSERVERS, NAME), "Stalled")["status"] == "False"
    assert _host_paths(cluster) == {"/var/run/docker.sock": "Socket"}  # never the whole of /var/run
    assert _lifecycle(cluster) == {
        "enabled": "auto",
        "runtime": "docker",
        "dockerAddress": "/var/run/docker.sock",
    }
    docker = _config_hash(cluster)
    assert docker != k3s
    mark = cluster.mark()  # converged: a resync finds nothing to write (no flapping on the new volume)
    operator.call(operator.reconciler.resync)
    await operator.settle()
    assert cluster.writes(mark) == []
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"containerRuntime": None}})
    await operator.settle()
    assert _host_paths(cluster) == {
        "/run/containerd": "DirectoryOrCreate",
        "/var/run/crio": "DirectoryOrCreate",
    }
    assert _lifecycle(cluster) == {"enabled": "auto", "runtime": "auto"}
    assert _config_hash(cluster) not in (k3s, docker)


async def test_agents_not_ready_behind_a_socket_mounted_alone_are_explained(
    cluster: Cluster, operator: OperatorRun
) -> None:
    """Docker's /var/run/docker.sock is mounted alone (type Socket): on a node without it the kubelet
    never starts the agent (ContainerCreating, a FailedMount event), which the DaemonSet counts like
    a slow pull. The observer stays Progressing (RollingOut), and its message says what to look for;
    a directory mount (k3s) starts the agent anyway and says nothing of it."""

    async def not_ready(runtime: dict[str, Any] | None) -> str:
        await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"containerRuntime": runtime}})
        await operator.settle()
        gen = _daemon_set(cluster)["metadata"]["generation"]
        st = {"observedGeneration": gen, "desiredNumberScheduled": 2, "numberReady": 1,
              "updatedNumberScheduled": 2, "numberAvailable": 1}  # fmt: skip
        await cluster.patch(r.DAEMONSETS, RES, {"status": st}, namespace=NS, status=True)
        await operator.settle()
        got = condition(cluster.stored(r.RUNTIME_OBSERVERS, NAME), "Progressing")
        assert (got["status"], got["reason"]) == ("True", "RollingOut"), got
        return str(got["message"])

    message = await not_ready({"kind": "docker", "socketPath": None})
    assert message.startswith("1/2 agents ready, 2/2 updated; "), message
    assert "/var/run/docker.sock" in message and "ContainerCreating" in message and "FailedMount" in message
    assert "/run/k3s" not in await not_ready({"kind": "containerd", "socketPath": K3S})
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"containerRuntime": None}})
    await operator.settle()


def _tetragon_volume(cluster: Cluster) -> dict[str, Any]:
    spec = _daemon_set(cluster)["spec"]["template"]["spec"]
    (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "tetragon"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "tetragon"]
    assert mount == {"name": "tetragon", "mountPath": volume["hostPath"]["path"], "readOnly": True}
    return dict(volume["hostPath"])


async def test_the_tetragon_mount_follows_the_address_and_a_bad_one_stalls(
    cluster: Cluster, operator: OperatorRun
) -> None:
    """spec.tetragon.address elsewhere than /var/run/tetragon: its directory is mounted (the agents
    roll once); one in a directory the pod must not mount whole stalls the observer, agents kept;
    back to the default, today's mount returns."""
    assert _tetragon_volume(cluster) == {"path": "/var/run/tetragon", "type": "DirectoryOrCreate"}
    before = _config_hash(cluster)
    cilium = "unix:///var/run/cilium/tetragon/tetragon.sock"
    mark = cluster.mark()
    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"tetragon": {"address": cilium}}})
    await operator.settle()
    observer = cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    crd = load_crd(REPO / "manifests" / "crds" / "runtimeobservers.yaml")
    assert errors(validator_for(crd), observer) == []
    assert condition(observer, "Stalled")["status"] == "False"
    assert [w for w in cluster.writes(mark) if "/daemonsets/" in w] == [
        f"PATCH /apis/apps/v1/namespaces/{NS}/daemonsets/{RES}"
    ]
    assert _tetragon_volume(cluster) == {"path": "/var/run/cilium/tetragon", "type": "DirectoryOrCreate"}
    cm = cluster.stored(r.CONFIGMAPS, RES, NS)
    assert parse_config(cm).tetragon.address == cilium and _config_hash(cluster) != before
    for expected in _rendered(cluster):  # byte for byte what the renderer gives
        stored = cluster.stored(KINDS[expected["kind"]], expected["metadata"]["name"], NS)
        assert strip_server(stored or {}) == expected, expected["kind"]

    kept = _daemon_set(cluster)
    await cluster.patch(
        r.RUNTIME_OBSERVERS, NAME, {"spec": {"tetragon": {"address": "unix:///run/containerd/t.sock"}}}
    )
    await operator.settle()
    observer = cluster.stored(r.RUNTIME_OBSERVERS, NAME)
    stalled = condition(observer, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSocketPath"), stalled
    assert "spec.tetragon.address 'unix:///run/containerd/t.sock'" in stalled["message"]
    assert "container runtime's mount '/run/containerd'" in stalled["message"]
    assert condition(observer, "Ready")["status"] == "False"
    assert _daemon_set(cluster) == kept  # the agents keep the last valid mount

    await cluster.patch(r.RUNTIME_OBSERVERS, NAME, {"spec": {"tetragon": None}})
    await operator.settle()
    assert condition(cluster.stored(r.RUNTIME_OBSERVERS, NAME), "Stalled")["status"] == "False"
    assert _tetragon_volume(cluster) == {"path": "/var/run/tetragon", "type": "DirectoryOrCreate"}
