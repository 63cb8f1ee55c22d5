"""kube/incluster.py reads a pod's service account as the ``kubernetes`` package's loader does.

The agent stopped importing ``kubernetes`` for its in-cluster credentials (issue 13: ~20 MB of
every node's agent). These tests hold the reader to the loader it replaces: for the same
environment and files, the same server URL, CA file and ``Authorization`` header, and a
failure (an error, then the kubeconfig fallback) wherever the loader fails.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes.client
import pytest
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import InClusterConfigLoader

from stellaops_runtime.kube import client as kube_client
from stellaops_runtime.kube import incluster
from stellaops_runtime.kube.client import Connection, KubeConfigError
from stellaops_runtime.kube.incluster import InClusterError, ServiceAccount


def _files(d: Path, *, token: str | None = "tok-1", ca: str | None = "-----BEGIN CERTIFICATE-----\n") -> Path:
    d.mkdir(exist_ok=True)
    if token is not None:
        (d / "token").write_text(token)
    if ca is not None:
        (d / "ca.crt").write_text(ca)
    return d


def _theirs(env: dict[str, str], d: Path) -> tuple[str, str, str]:
    cfg = kubernetes.client.Configuration()
    loader = InClusterConfigLoader(
        token_filename=str(d / "token"), cert_filename=str(d / "ca.crt"), environ=env
    )
    loader.load_and_set(cfg)
    return cfg.host, cfg.ssl_ca_cert, kube_client._bearer(cfg) or ""


@pytest.mark.parametrize(
    "host",
    ["10.96.0.1", "kubernetes.default.svc", "fd00:10:96::1", "fe80::1%eth0"],
)
def test_same_server_ca_and_header_as_the_kubernetes_loader(tmp_path: Path, host: str) -> None:
    d = _files(tmp_path / "sa")
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": "443"}
    ours = ServiceAccount.load(env, str(d))
    assert (ours.server, ours.ca_path, ours.authorization()) == _theirs(env, d)


@pytest.mark.parametrize(
    ("env", "token", "ca"),
    [
        ({}, "t", "c"),  # not in a cluster
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "t", "c"),  # no port
        ({"KUBERNETES_SERVICE_HOST": "", "KUBERNETES_SERVICE_PORT": "443"}, "t", "c"),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": ""}, "t", "c"),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, None, "c"),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, "", "c"),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, "t", None),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, "t", ""),
    ],
)
def test_fails_where_the_kubernetes_loader_fails(
    tmp_path: Path, env: dict[str, str], token: str | None, ca: str | None
) -> None:
    d = _files(tmp_path / "sa", token=token, ca=ca)
    with pytest.raises(ConfigException):
        _theirs(env, d)
    with pytest.raises(InClusterError):
        ServiceAccount.load(env, str(d))


def test_a_directory_as_token_or_an_undecodable_token_is_an_error(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    d = _files(tmp_path / "sa", token=None)
    (d / "token").mkdir()
    with pytest.raises(InClusterError, match="does not exist"):
        ServiceAccount.load(env, str(d))
    (d / "token").rmdir()
    (d / "token").write_bytes(b"\xff\xfe")
    with pytest.raises(InClusterError, match="unreadable: UnicodeDecodeError"):
        ServiceAccount.load(env, str(d))


def test_the_token_is_read_again_on_refresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Bound service-account tokens rotate: the kubelet replaces the file's content.
    d = _files(tmp_path / "sa", token="first\n")  # surrounding whitespace is not part of the token
    monkeypatch.setattr(incluster, "DIRECTORY", str(d))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    conn = Connection.load()
    assert (conn.server, conn.source, conn.ca_path) == (
        "https://10.0.0.1:6443",
        "in-cluster service account",
        str(d / "ca.crt"),
    )
    assert conn.authorization == "bearer first" and conn.refreshes
    (d / "token").write_text("second")
    conn.refresh()
    assert conn.authorization == "bearer second"
    (d / "token").write_text("")  # a refresh that finds no token says so, with no token in the message
    with pytest.raises(KubeConfigError, match="empty"):
        conn.refresh()
    assert conn.authorization == "bearer second"
    assert "second" not in repr(conn)


def test_unusable_in_cluster_files_fall_back_to_a_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(incluster, "DIRECTORY", str(tmp_path / "missing"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: kc-token}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    conn = Connection.load()
    assert (conn.server, conn.source, conn.authorization) == (
        "http://127.0.0.1:9",
        f"kubeconfig {kubeconfig}",
        "Bearer kc-token",
    )
