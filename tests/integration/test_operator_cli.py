"""``stella-runtime operator`` as a user runs it: a subprocess with a kubeconfig pointing at kmock."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from stellaops_runtime.contracts.crds import API_VERSION, POLICY_KIND
from stellaops_runtime.kube import resources as r
from stellaops_runtime.kube.client import Connection, KubeConfigError
from tests.integration.kubeharness import Cluster, http_get, obj, wait_for
from tests.ports import free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]


def env_without_cluster(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_") and k != "KUBECONFIG"}
    env.update(extra)
    return env


async def run_cli(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stellaops_runtime.cli.main", "--log-level", "INFO", "operator", *args,
        env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        await c.create(obj("v1", "Namespace", "shop"))
        yield c


async def test_runs_with_kubeconfig_env_liveness_and_peering(cluster: Cluster) -> None:
    port = free_port()
    proc = await run_cli(
        "--all-namespaces", f"--liveness=http://127.0.0.1:{port}/healthz", "--coalesce-seconds", "0.05",
        env=env_without_cluster(KUBECONFIG=str(cluster.kubeconfig)),
    )  # fmt: skip
    try:
        # leader election: the peering object is created when missing, then kopf keeps it alive
        await wait_for(lambda: cluster.stored(r.CLUSTER_KOPF_PEERINGS, "stellaops-runtime"), limit_s=60,
                       what="ClusterKopfPeering created")  # fmt: skip
        await wait_for(
            lambda: (cluster.stored(r.CLUSTER_KOPF_PEERINGS, "stellaops-runtime") or {}).get("status"),
            limit_s=60,
            what="the operator's keep-alive in the peering object",
        )

        async def live() -> bool:
            try:
                status, _ = await http_get(f"http://127.0.0.1:{port}/healthz")
            except OSError:
                return False
            return status == 200

        await wait_for(live, limit_s=60, what="liveness endpoint")
        spec = {
            "podSelector": {"matchLabels": {"app": "web"}},
            "maxLevel": "ActiveTracing",
            "syscalls": ["execve"],
        }
        await cluster.create(obj(API_VERSION, POLICY_KIND, "web", namespace="shop", spec=spec))
        await wait_for(
            lambda: cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-web", "shop"),
            limit_s=60,
            what="the policy reconciled by the CLI's operator",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert f"kubeconfig {cluster.kubeconfig}" in err.decode()


async def test_standalone_in_one_namespace(cluster: Cluster) -> None:
    proc = await run_cli(
        "--standalone", "--namespace", "shop", "--kubeconfig", str(cluster.kubeconfig),
        "--coalesce-seconds", "0.05", env=env_without_cluster(),
    )  # fmt: skip
    try:
        spec = {
            "podSelector": {"matchLabels": {"app": "api"}},
            "maxLevel": "ActiveTracing",
            "syscalls": ["connect"],
        }
        await cluster.create(obj(API_VERSION, POLICY_KIND, "api", namespace="shop", spec=spec))
        await wait_for(
            lambda: cluster.stored(r.TRACING_POLICIES_NAMESPACED, "stellaops-api", "shop"),
            limit_s=60,
            what="the policy reconciled by a standalone operator",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert "leader election" not in err.decode()


async def test_no_credentials_is_exit_2(tmp_path: Path) -> None:
    proc = await run_cli("--standalone", env=env_without_cluster(KUBECONFIG=str(tmp_path / "none.yaml")))
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "no Kubernetes credentials" in err.decode()


async def test_home_kubeconfig_is_the_fallback(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(cluster.kubeconfig.read_text())
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    conn = await asyncio.to_thread(Connection.load)
    assert conn.server == cluster.url
    assert conn.source == f"kubeconfig {tmp_path / '.kube' / 'config'}"
    assert conn.authorization == "Bearer test-token"
    monkeypatch.setenv("HOME", str(tmp_path / "nowhere"))
    with pytest.raises(KubeConfigError):
        await asyncio.to_thread(Connection.load)
