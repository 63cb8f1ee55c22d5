"""The policy entries the agent writes, as the real API server takes them (and keeps them).

The agent copies Tetragon's ListTracingPolicies into its ObservationNode's
``status.policies`` (``agent.capabilities.policy_entry``). A value the API
server refuses makes it refuse the whole status patch (422), the node's
heartbeat with it, and the node goes stale. The v1.20 API server refuses an
empty string in a merge patch of a custom resource ("must be of type string:
null"): the agent wrote ``namespace: ""`` for every cluster-scoped policy (a
ClusterObservationPolicy's TracingPolicy, any TracingPolicy), so one such
policy on a node stopped every status write of its agent. An empty string is
now left out (the readers take a missing namespace as cluster-scoped), and a
policy Tetragon did not load from an object says so with ``fromObject:
false``, which the schema keeps.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from stellaops_runtime.agent.capabilities import policy_entry
from stellaops_runtime.agent.node_status import ObservationNodeWriter
from stellaops_runtime.contracts.config import ObservationNodeConfig, TetragonConfig
from stellaops_runtime.contracts.crd_names import API_VERSION, NODE_KIND
from stellaops_runtime.replay.server import HookReport, PolicyStatus, ReplayServer
from stellaops_runtime.wire.tetragon import sensors_pb2
from tests.realkube.controlplane import ControlPlane

NODE = "node-policy-entries"
FILE_INFO = "from-a-file (object:0/) (type:TracingPolicy/cilium.io/v1alpha1)"
POLICIES = [
    PolicyStatus(name="stellaops-apps", namespace=""),  # a ClusterObservationPolicy's TracingPolicy
    PolicyStatus(name="from-a-file", message=FILE_INFO),
    PolicyStatus(name="stellaops-web", namespace="shop", state="LOAD_ERROR", message="x" * 5000),
    PolicyStatus(
        name="stellaops-deep",
        state="PARTIALLY_ENABLED",
        hooks=(HookReport("", 0, "", "CALL_NOT_FOUND"), HookReport("kprobes", 1, "sys_x", "CALL_NOT_FOUND")),
    ),
]


async def _write(
    kubeconfig: Path, stream: Any = None, policies: list[PolicyStatus] = POLICIES
) -> tuple[bool, ObservationNodeWriter]:
    tetragon = ReplayServer([], policies=policies, version="v1.7.0")
    address = await tetragon.start("127.0.0.1:0")
    w = ObservationNodeWriter(
        node_name=NODE,
        config=ObservationNodeConfig(enabled=True, kubeconfig=str(kubeconfig)),
        tetragon=TetragonConfig(address=address, timeoutSeconds=30),
        stream=stream,
        try_bpf=False,
    )
    try:
        wrote = await w.tick()
        stop = asyncio.Event()
        stop.set()
        await w.run(stop)  # a stopped run only closes the client
    finally:
        await tetragon.stop(grace=0)
    return wrote, w


def test_the_agents_policy_list_is_taken_and_kept(control_plane: ControlPlane, tmp_path: Path) -> None:
    admin = control_plane.admin
    assert admin is not None
    admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    try:
        kubeconfig = control_plane.write_kubeconfig(tmp_path / "admin.kubeconfig", token=None)
        wrote, w = asyncio.run(_write(kubeconfig))
        assert wrote and not w.stats.errors, w.stats.last_error
        kept = {p["name"]: p for p in admin.get(API_VERSION, NODE_KIND, NODE)["status"]["policies"]}
        assert set(kept) == {p.name for p in POLICIES}
        assert "namespace" not in kept["stellaops-apps"] and kept["stellaops-web"]["namespace"] == "shop"
        assert kept["from-a-file"]["fromObject"] is False and "objectUid" not in kept["from-a-file"]
        assert [h.get("section") for h in kept["stellaops-deep"]["failedHooks"]] == [None, "kprobes"]
    finally:
        admin.delete(API_VERSION, NODE_KIND, NODE)  # later modules must not count this node
        admin.delete("v1", "Node", NODE)


def test_an_attached_purl_function_is_taken(control_plane: ControlPlane, tmp_path: Path) -> None:
    """An attached function's reason is empty: the status is still written (agent/status_patch.py)."""
    admin = control_plane.admin
    assert admin is not None
    admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    attached = {
        "policy": "ObservationPolicy/shop/web", "purl": "pkg:deb/debian/openssl@3.0.11",
        "symbol": "EVP_Digest", "source": "native", "state": "attached", "reason": "", "containers": 2,
    }  # fmt: skip
    stream = SimpleNamespace(connected=True, purl_functions=[attached], purl_functions_omitted=0)
    try:
        kubeconfig = control_plane.write_kubeconfig(tmp_path / "admin.kubeconfig", token=None)
        wrote, w = asyncio.run(_write(kubeconfig, stream))
        assert wrote and not w.stats.errors, w.stats.last_error
        (kept,) = admin.get(API_VERSION, NODE_KIND, NODE)["status"]["purlFunctions"]
        assert kept == {k: v for k, v in attached.items() if k != "reason"}
    finally:
        admin.delete(API_VERSION, NODE_KIND, NODE)
        admin.delete("v1", "Node", NODE)


@pytest.mark.parametrize("namespace", ["", "shop"])
def test_an_entry_names_its_namespace_only_when_it_has_one(namespace: str) -> None:
    entry = policy_entry(sensors_pb2.TracingPolicyStatus(name="p", namespace=namespace))
    assert entry.get("namespace") == (namespace or None)


def test_thousands_of_policies_do_not_stop_the_nodes_report(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """2,000 policies with Tetragon's errors made a status past etcd's 1.5 MiB: every patch refused,
    no heartbeat, the node stale. Bounded now (agent/observation_status.py ``bounded_policies``), the
    rest counted in ``policiesOmitted``, the operator's own failed object kept."""
    admin = control_plane.admin
    assert admin is not None
    many = [PolicyStatus(name=f"team-{i:05d}", state="ERROR", message="x" * 1100) for i in range(2000)]
    ours = PolicyStatus(
        name="stellaops-web", namespace="shop", state="LOAD_ERROR", message="prog load failed"
    )
    admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    try:
        kubeconfig = control_plane.write_kubeconfig(tmp_path / "admin.kubeconfig", token=None)
        wrote, w = asyncio.run(_write(kubeconfig, policies=[*many, ours]))
        assert wrote and not w.stats.errors, w.stats.last_error
        status = admin.get(API_VERSION, NODE_KIND, NODE)["status"]
        assert status["policiesOmitted"] == 2001 - len(status["policies"]) > 0
        assert "stellaops-web" in {p["name"] for p in status["policies"]}
    finally:
        admin.delete(API_VERSION, NODE_KIND, NODE)
        admin.delete("v1", "Node", NODE)
