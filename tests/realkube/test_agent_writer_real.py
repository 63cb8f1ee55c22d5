"""The agent's ObservationNode writer against a real kube-apiserver, in a pod's way, without aiohttp.

A node's agent reads its service account itself (kube/incluster.py) and speaks to the API
server on plain asyncio streams (kube/streams_http.py, ``transport="streams"``): neither the
``kubernetes`` package nor aiohttp is loaded (issue 13: ~30 MB of every node's agent together).
Here a fresh interpreter runs ``ObservationNodeWriter`` with the environment and files a pod
gets: ``KUBERNETES_SERVICE_HOST``/``PORT`` of the real API server (HTTPS, its own CA) and a
bound token of the agent namespace's ServiceAccount (TokenRequest), authorized only by the
agent's RBAC (manifests/agent/rbac.yaml). One poll must create the ObservationNode owned by
its Node and write its status, with no error, and the interpreter must have loaded none of
those packages. A token the server does not know is refused (401), counted, never a crash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from stellaops_runtime.contracts.crd_names import API_VERSION, NODE_KIND
from tests.realkube.controlplane import ControlPlane, wait_for

AGENT_NS = "stellaops-agent"
NEVER = ("aiohttp", "yarl", "multidict", "kubernetes", "requests", "urllib3", "pydantic")

WRITER = textwrap.dedent(
    """
    import asyncio, json, sys
    from stellaops_runtime.kube import incluster
    incluster.DIRECTORY = sys.argv[1]  # where the kubelet mounts the account
    from stellaops_runtime.agent.node_status import ObservationNodeWriter
    from stellaops_runtime.contracts.config import ObservationNodeConfig, TetragonConfig
    from stellaops_runtime.replay.server import ReplayServer

    async def main():
        tetragon = ReplayServer([])
        address = await tetragon.start("127.0.0.1:0")
        w = ObservationNodeWriter(
            node_name=sys.argv[2],
            config=ObservationNodeConfig(enabled=True),
            tetragon=TetragonConfig(address=address, connectionTimeout=5),
            poll_seconds=0.05,
        )
        try:
            wrote = await w.tick()
            stop = asyncio.Event()
            stop.set()
            await w.run(stop)  # a stopped run only closes the client
        finally:
            await tetragon.stop(grace=0)
        print(json.dumps([wrote, dict(w.stats.errors), w.stats.last_error, sorted(sys.modules)]))

    asyncio.run(main())
    """
)


def _write(cp: ControlPlane, tmp: Path, node: str, token: str) -> tuple[bool, dict, str, list[str]]:
    account = tmp / f"account-{node}"
    account.mkdir()
    (account / "token").write_text(token)
    (account / "ca.crt").write_bytes((cp.pki / "ca.crt").read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT=str(cp.port), HOME=str(tmp))
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(account), node],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    wrote, errors, last_error, modules = json.loads(done.stdout.splitlines()[-1])
    assert sorted(m for m in modules if m.split(".")[0] in NEVER) == []
    return wrote, errors, last_error, modules


def test_the_writer_in_a_pod_creates_its_observation_node(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    admin = control_plane.admin
    assert admin is not None
    wait_for(
        lambda: admin.get("v1", "ServiceAccount", "default", AGENT_NS), what="the agent namespace's account"
    )
    node = admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "agent-writer-real"}})
    try:
        token = control_plane.service_account_token(AGENT_NS, "default")
        wrote, errors, last_error, _ = _write(control_plane, tmp_path, "agent-writer-real", token)
        assert (wrote, errors, last_error) == (True, {}, "")
        on = admin.get(API_VERSION, NODE_KIND, "agent-writer-real")
        assert on is not None
        assert [o["uid"] for o in on["metadata"]["ownerReferences"]] == [node["metadata"]["uid"]]
        assert on["status"]["heartbeatTime"] and on["status"]["source"] == "tetragon"
    finally:
        # Later modules share the control plane: a node left here is one more node every later
        # policy must roll out to (test_loaded_version_real waited 60 s for "Ready" after it).
        admin.delete(API_VERSION, NODE_KIND, "agent-writer-real")
        admin.delete("v1", "Node", "agent-writer-real")


def test_a_token_the_server_does_not_know_is_counted(control_plane: ControlPlane, tmp_path: Path) -> None:
    admin = control_plane.admin
    assert admin is not None
    admin.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "agent-writer-badtoken"}})
    try:
        wrote, errors, last_error, _ = _write(control_plane, tmp_path, "agent-writer-badtoken", "not-a-token")
        assert (wrote, errors) == (False, {"kubernetes": 1})
        assert "Unauthorized" in last_error and "not-a-token" not in last_error
        assert admin.get(API_VERSION, NODE_KIND, "agent-writer-badtoken") is None
    finally:
        admin.delete(API_VERSION, NODE_KIND, "agent-writer-badtoken")  # later modules share the plane
        admin.delete("v1", "Node", "agent-writer-badtoken")
