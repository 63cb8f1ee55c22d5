"""Real-world values pass the CRDs' rules and the operator, and the kubelet's pod data is never mounted.

test_crd_cel_agreement.py checks that the API server (schema and CEL rules,
played by tests/crd_schema.py) and the operator say the same on hostile values;
this module checks what they say on the values real clusters use: Tetragon's
addresses (its Helm chart's socket, ``localhost:54321``, a Service name, IPv6),
the container runtime sockets of containerd, k3s/RKE2, k0s, MicroK8s, CRI-O,
Docker, cri-dockerd and Podman, and the syscalls people trace. Both accept them;
syscalls newer than the operator's kernel 6.1 tables both refuse, as docs/operator.md says.

And the kubelet's directory: a socket whose directory the agent pod would mount
must not make it mount ``/var/lib/kubelet/pods`` (every pod's volumes, its
Secrets and ServiceAccount tokens among them), ``/var/lib/kubelet/plugins``
and its ``kubernetes.io`` volume mounts, ``/var/lib/kubelet/pki`` (the kubelet's
client key) or ``/var/lib/kubelet/checkpoints``; nor is a socket taken directly
in ``/var/lib/kubelet``. Both refuse those (``InvalidSocketPath``), for
``containerRuntime.socketPath`` and ``tetragon.address``, and keep the kubelet's
socket-only directories (pod-resources, device-plugins, plugins_registry, a CSI
driver's own plugin directory).
"""

from __future__ import annotations

import pytest
from crd_schema import cel_rules, served_schema
from test_crd_cel_agreement import _observer, api_server_refuses, operator_refuses
from test_crds import ROOT, crd, policy

from stellaops_runtime.contracts import crds
from stellaops_runtime.contracts.runtime_socket import DATA_ROOT_PATTERN, KUBELET_PATTERN
from stellaops_runtime.contracts.tetragon_socket import USUAL_ADDRESS_PATTERN

TETRAGON_ADDRESSES = [
    "unix:///var/run/tetragon/tetragon.sock",  # our default, Tetragon's Helm default since v1.7
    "unix:///run/tetragon/tetragon.sock",
    "unix:///var/run/cilium/tetragon/tetragon.sock",
    "unix:///var/snap/microk8s/common/run/tetragon/tetragon.sock",
    "localhost:54321",  # Tetragon's gRPC default before v1.7
    "127.0.0.1:54321",
    "[::1]:54321",
    "tetragon.kube-system.svc.cluster.local:54321",
    "tetragon-grpc-1.example-dns.net:54321",
    "dns:///tetragon.kube-system:54321",
]
RUNTIME_SOCKETS = [
    ("containerd", "/run/containerd/containerd.sock"),
    ("containerd", "/var/run/containerd/containerd.sock"),
    ("containerd", "/run/k3s/containerd/containerd.sock"),  # k3s, RKE2
    ("containerd", "/run/k0s/containerd.sock"),
    ("containerd", "/var/snap/microk8s/common/run/containerd.sock"),
    ("cri", "/var/run/crio/crio.sock"),
    ("cri", "/run/crio/crio.sock"),
    ("docker", "/run/podman/podman.sock"),  # Podman's Docker-compatible API
    ("docker", "/var/run/docker.sock"),
    ("docker", "/run/docker.sock"),
    ("docker", "/run/user/1000/docker.sock"),  # rootless
    ("cri", "/var/run/cri-dockerd.sock"),
    ("cri", "/run/cri-dockerd.sock"),
]
SYSCALLS = ["openat", "execve", "execveat", "connect", "clone3", "openat2", "close_range", "memfd_secret"]

# A socket path, its directory mounted (or refused) at the same path by the agent pod.
KUBELET_REFUSED = [
    "/var/lib/kubelet/x.sock",
    "/var/lib/kubelet/pods",
    "/var/lib/kubelet/pods/x.sock",
    "/var/lib/kubelet/pods/3f2504e0-4f89-11d3-9a0c-0305e82c3301/volumes/x.sock",
    "/var/lib/kubelet/pods/3f2504e0/volumes/kubernetes.io~secret/s/x.sock",
    "/var/lib/kubelet/plugins/x.sock",
    "/var/lib/kubelet/plugins/kubernetes.io/csi/x.sock",
    "/var/lib/kubelet/plugins/kubernetes.io/x.sock",
    "/var/lib/kubelet/pki/x.sock",
    "/var/lib/kubelet/checkpoints/x.sock",
    # the other distributions' kubelet directories, and one of any name (kubelet --root-dir)
    "/var/snap/microk8s/common/var/lib/kubelet/x.sock",  # MicroK8s
    "/var/snap/microk8s/common/var/lib/kubelet/pods/u/volumes/x.sock",
    "/var/snap/microk8s/common/var/lib/kubelet/pki/x.sock",
    "/data/kubelet/x.sock",
    "/data/kubelet/plugins/x.sock",
    "/data/kubelet/pods/u/x.sock",
    "/mnt/disks/k8s/pods/u/volumes/x.sock",  # a root-dir not named kubelet: its pods/ gives it away
    "/mnt/disks/k8s/plugins/kubernetes.io/csi/x.sock",
    "/var/lib/kubeletx/pods/x.sock",
]
# Data roots: a cluster's store, or every container's filesystem.
DATA_ROOTS_REFUSED = [
    "/var/lib/etcd/x.sock",
    "/var/lib/etcd/member/x.sock",
    "/var/lib/docker/x.sock",
    "/var/lib/docker/containers/x.sock",
    "/var/lib/containerd/x.sock",
    "/var/lib/containerd/io.containerd.grpc.v1.cri/x.sock",
    "/var/lib/containers/storage/x.sock",
    "/var/lib/k0s/x.sock",  # k0s: etcd, pki, containerd and kubelet/ in one tree
    "/var/lib/k0s/kubelet/pod-resources/x.sock",
    "/var/lib/rancher/k3s/agent/containerd/containerd.sock",  # k3s's containerd root (socket: /run/k3s)
    "/var/lib/rancher/rke2/server/db/x.sock",
    "/var/snap/microk8s/common/var/lib/containerd/x.sock",
    "/var/snap/microk8s/current/var/kubernetes/backend/x.sock",  # MicroK8s's dqlite
    "/host/var/lib/docker/x.sock",
]
DATA_ROOTS_KEPT = ["/var/lib/etcdx/x.sock", "/var/lib/docker-plugins/x.sock", "/run/k0s/x/x.sock"]
KUBELET_KEPT = [
    "/var/lib/kubelet/pod-resources/kubelet.sock",
    "/var/lib/kubelet/device-plugins/x.sock",
    "/var/lib/kubelet/plugins_registry/x.sock",
    "/var/lib/kubelet/plugins/ebs.csi.aws.com/csi.sock",
    "/var/lib/kubelet/podsx/x.sock",
    "/var/lib/kubeletx/podsx/x.sock",
]


def test_the_address_rule_reads_the_operators_kubelet_pattern() -> None:
    """The socketPath rules are built from KUBELET_PATTERN and DATA_ROOT_PATTERN in test_crds; the
    address rules say them after unix://."""
    for pattern in (KUBELET_PATTERN, DATA_ROOT_PATTERN):
        rule = (
            "!self.startsWith('unix://') || "
            f"self.matches('{USUAL_ADDRESS_PATTERN}') || "  # Tetragon's own directory: mounted whole
            "!self.matches('^unix://" + pattern[1:] + "')"
        )
        assert rule in {r for _, r, _ in cel_rules(served_schema(crd(crds.OBSERVER_KIND)))}


def _both_accept(obj: dict[str, object]) -> None:
    assert api_server_refuses(obj) == []
    assert operator_refuses(obj) is None


@pytest.mark.parametrize("address", TETRAGON_ADDRESSES)
def test_real_tetragon_addresses_are_accepted(address: str) -> None:
    _both_accept(_observer("tetragon.address", address))


@pytest.mark.parametrize(("kind", "path"), RUNTIME_SOCKETS)
def test_real_runtime_sockets_are_accepted(kind: str, path: str) -> None:
    _both_accept(_observer("containerRuntime", {"kind": kind, "socketPath": path}))


@pytest.mark.parametrize("kind", [crds.POLICY_KIND, crds.CLUSTER_POLICY_KIND])
def test_real_syscalls_are_accepted(kind: str) -> None:
    _both_accept(policy(kind, syscalls=SYSCALLS))


# System calls Linux added after 6.1 (the tables run to 6.18 since bbaffcc): both accept them, and
# docs/operator.md names them; a name past the tables (a newer kernel's) both refuse.
NEWER_SYSCALLS = ["cachestat", "fchmodat2", "map_shadow_stack", "futex_wait", "statmount", "listmount"]
NEWER_SYSCALLS += ["mseal"]


@pytest.mark.parametrize("name", NEWER_SYSCALLS)
def test_syscalls_newer_than_6_1_are_accepted_by_both_as_the_docs_say(name: str) -> None:
    _both_accept(policy(syscalls=["openat", name]))
    text = " ".join((ROOT / "docs" / "operator.md").read_text().split())
    assert "The list is Linux 6.18's" in text and f"`{name}`" in text


def test_a_syscall_past_the_tables_is_refused_by_both_naming_the_tables_release() -> None:
    obj = policy(syscalls=["openat", "futex_frobnicate"])
    assert any("bare name" in m for m in api_server_refuses(obj))
    assert "Linux 6.18" in (operator_refuses(obj) or "")


def _socket_objects(path: str) -> list[dict[str, object]]:
    return [
        _observer("containerRuntime", {"kind": "containerd", "socketPath": path}),
        _observer("tetragon.address", f"unix://{path}"),
    ]


@pytest.mark.parametrize("path", KUBELET_REFUSED)
def test_no_socket_mounts_the_kubelets_pod_data(path: str) -> None:
    for obj in _socket_objects(path):
        assert api_server_refuses(obj), obj["spec"]
        assert "kubelet" in (operator_refuses(obj) or ""), obj["spec"]


@pytest.mark.parametrize("path", KUBELET_KEPT)
def test_the_kubelets_socket_directories_stay_accepted(path: str) -> None:
    for obj in _socket_objects(path):
        _both_accept(obj)


@pytest.mark.parametrize("path", DATA_ROOTS_REFUSED)
def test_no_socket_mounts_a_data_root(path: str) -> None:
    for obj in _socket_objects(path):
        assert api_server_refuses(obj), obj["spec"]
        assert "data root" in (operator_refuses(obj) or ""), obj["spec"]


@pytest.mark.parametrize("path", DATA_ROOTS_KEPT)
def test_look_alikes_of_data_roots_stay_accepted(path: str) -> None:
    for obj in _socket_objects(path):
        _both_accept(obj)
