"""The operator starts under a uid without a passwd entry, as the shipped Deployment runs it (issue 16).

``stella-runtime operator`` runs as a subprocess under uid/gid 65532, which has
no entry in this machine's password database (nor in the image's, for some
images), with no ``$HOME``, ``$USER`` or ``$LOGNAME``, against kmock with
leader election on. kopf's own peering identity would ask the password
database for a user name and crash; the operator must take its identity from
``$POD_NAME`` (the Deployment's downward API), else host/pid/time, and run.

The uid keeps one capability, DAC_READ_SEARCH, only so it can reach the
project's interpreter under /root (mode 0700 here); it does not change what
the password database answers. A control proves that this environment does
reproduce the crash of kopf's default.

The same run checks that kopf's liveness endpoint, polled like a kubelet
probe, writes nothing to the log at INFO (issue 16: probes logged at INFO).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from stellaops_runtime.cli.operator import operator_identity
from stellaops_runtime.kube import resources as r
from tests.integration.kubeharness import Cluster, http_get, wait_for
from tests.ports import free_port

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
UID = 65532
SETPRIV = shutil.which("setpriv")


def _no_passwd_entry() -> bool:
    try:
        pwd.getpwuid(UID)
    except KeyError:
        return True
    return False


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or SETPRIV is None or not _no_passwd_entry(),
    reason="needs root, setpriv (util-linux) and no passwd entry for uid 65532",
)


def as_nobody(*argv: str) -> list[str]:
    """``argv`` under uid/gid 65532 with no supplementary groups, keeping only DAC_READ_SEARCH."""
    assert SETPRIV is not None
    return [
        SETPRIV, f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
        "--inh-caps=-all,+dac_read_search", "--ambient-caps=-all,+dac_read_search",
        "--bounding-set=-all,+dac_read_search", "--", *argv,
    ]  # fmt: skip


def bare_env(**extra: str) -> dict[str, str]:
    """No HOME, USER, LOGNAME or LNAME (getpass.getuser() reads those before the passwd database)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO / "operator"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra)
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with Cluster(tmp_path_factory.mktemp("kube")) as c:
        yield c


@needs_root
async def test_kopfs_own_identity_fails_in_this_environment() -> None:
    """The control: kopf's default identity raises the KeyError the issue reports."""
    code = "from kopf._core.engines.peering import detect_own_id; detect_own_id(manual=False)"
    proc = await asyncio.create_subprocess_exec(
        *as_nobody(sys.executable, "-c", code), env=bare_env(), stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    assert f"getpwuid(): uid not found: {UID}" in err.decode()


async def _run_operator(cluster: Cluster, *, pod_name: str | None) -> tuple[str, str, dict]:
    port = free_port()
    env = bare_env(KUBECONFIG=str(cluster.kubeconfig))
    if pod_name is not None:
        env["POD_NAME"] = pod_name
    proc = await asyncio.create_subprocess_exec(
        *as_nobody(
            sys.executable, "-m", "stellaops_runtime.cli.main", "--log-level", "INFO", "operator",
            "--all-namespaces", "--peering=stellaops-runtime", f"--liveness=http://127.0.0.1:{port}/healthz",
            "--coalesce-seconds", "0.05",
        ),
        env=env, cwd="/", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:

        async def live() -> bool:
            if proc.returncode is not None:
                raise AssertionError("the operator exited")
            try:
                status, _ = await http_get(f"http://127.0.0.1:{port}/healthz")
            except OSError:
                return False
            return status == 200

        await wait_for(live, limit_s=60, what="the operator's liveness endpoint")
        peering = await wait_for(
            lambda: (cluster.stored(r.CLUSTER_KOPF_PEERINGS, "stellaops-runtime") or {}).get("status"),
            limit_s=60,
            what="the operator's keep-alive in the peering object",
        )
        for _ in range(5):  # the kubelet's probes
            assert (await http_get(f"http://127.0.0.1:{port}/healthz"))[0] == 200
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-3000:]
    return out.decode(), err.decode(), dict(peering)


@needs_root
async def test_operator_runs_as_uid_65532_with_its_pod_name_as_identity(cluster: Cluster) -> None:
    out, err, peering = await _run_operator(cluster, pod_name="stellaops-operator-7d9f-abcde")
    assert "getpwuid" not in err and "Traceback" not in err, err[-3000:]
    assert "as stellaops-operator-7d9f-abcde" in err  # logged with the peering name and priority
    # kopf's keep-alive is keyed by the identity; a clean stop removes it again
    assert "stellaops-operator-7d9f-abcde" in peering
    # the probes' requests are not logged at INFO
    assert "GET /healthz" not in out + err


@needs_root
async def test_without_pod_name_the_identity_is_host_pid_and_time(cluster: Cluster) -> None:
    _, err, peering = await _run_operator(cluster, pod_name=None)
    assert "getpwuid" not in err and "Traceback" not in err, err[-3000:]
    (identity,) = [k for k in peering if k.startswith(f"{socket.gethostname()}/")]
    _, pid, started = identity.split("/")
    assert pid.isdigit() and len(started) == 14 and started.isdigit()


async def test_identity_from_the_downward_api_or_the_process() -> None:
    assert operator_identity({"POD_NAME": "op-1"}) == "op-1"
    assert operator_identity({"POD_NAME": "  op-2\n"}) == "op-2"
    for env in ({}, {"POD_NAME": ""}, {"POD_NAME": "   "}):
        host, pid, started = operator_identity(env).split("/")
        assert (host, pid) == (socket.gethostname(), str(os.getpid())) and len(started) == 14


async def test_probe_requests_are_logged_at_debug_only(cluster: Cluster) -> None:
    """At --log-level DEBUG the probe requests do show, as DEBUG lines."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["KUBECONFIG"] = str(cluster.kubeconfig)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stellaops_runtime.cli.main", "--log-level", "DEBUG", "operator",
        "--standalone", f"--liveness=http://127.0.0.1:{port}/healthz",
        env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:

        async def live() -> bool:
            try:
                return (await http_get(f"http://127.0.0.1:{port}/healthz"))[0] == 200
            except OSError:
                return False

        await wait_for(live, limit_s=60, what="the operator's liveness endpoint")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    lines = [line for line in (out + err).decode().splitlines() if "GET /healthz" in line]
    assert lines and all("DEBUG" in line for line in lines), lines
