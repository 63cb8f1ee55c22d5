"""Which container runtime socket a RuntimeObserver may point its agents at (``spec.containerRuntime``).

The operator mounts the socket's host directory (or the socket itself) into
every agent pod at the same path (controller/runtime_socket.py), so a path
here is also a path the agent container sees. The CRD refuses what its
OpenAPI pattern and CEL rules can say (``manifests/crds/runtimeobservers.yaml``);
``socket_path_problem`` says the same and what a schema cannot (the byte
length a Unix socket address can hold), for the operator's second line of
defence (contracts/crd_validation.py, reason ``InvalidSocketPath``).

Refused, because the agent must not see them or because they would hide what
the agent pod mounts itself: a relative or unnormalized path (``..``,
``.``, ``//``, a trailing ``/``), a NUL, a socket directly in ``/``, anything
at or under the host's system trees (``/proc``, ``/sys``, ``/dev``, ``/etc``,
``/boot``, ``/usr``, ``/bin``, ``/sbin``, ``/lib*``, ``/root``, ``/home``) and
the agent's own mounts (Tetragon's directory, the spool and index cache, the
BCC header cache, the image's ``/opt/stellaops`` with the agent's virtualenv)
and ``(/var)/run/secrets``, where the API server's
ServiceAccount admission mounts the pod's token (``kubernetes.io/serviceaccount``;
a mount there would take its place, one above it leaves no mount point, and the
agent could not reach the API server). And the kubelet's ``/var/lib/kubelet``:
a socket directly in it, or one whose directory mounted whole would show the
agent the pods' data there (``pods/``, with every pod's volumes, Secrets and
ServiceAccount tokens among them; ``plugins/`` and ``plugins/kubernetes.io/``,
where volumes are mounted; ``pki/``, the kubelet's client key;
``checkpoints/``). Its socket-only directories (``pod-resources``,
``device-plugins``, ``plugins_registry``, a CSI driver's ``plugins/<name>``)
stay accepted. The same for any kubelet's directory: k0s's
``/var/lib/k0s/kubelet``, MicroK8s's ``/var/snap/microk8s/common/var/lib/kubelet``,
any directory named ``kubelet`` (a ``--root-dir``), and, under any name, a
socket at or under a ``pods``, ``pki``, ``checkpoints`` or
``plugins/kubernetes.io`` directory. And data roots (``DATA_ROOT_PATTERN``):
etcd's, Docker's, containerd's and Podman's roots, k0s's, k3s's and
MicroK8s's data directories, whose mount would hand the agent a cluster's
store or every container's filesystem. A kubelet root of another name with
the socket directly in it no path rule can tell: the agent looks at the
directory, and each of its subdirectories, at start (``data_root_problem``,
agent/runtime_target.py).
"""

from __future__ import annotations

import posixpath
import re
from typing import Literal

RuntimeKind = Literal["containerd", "docker", "cri"]
RUNTIME_KINDS: tuple[RuntimeKind, ...] = ("containerd", "docker", "cri")
# Where each kind's socket usually is, when ``socketPath`` is not given.
DEFAULT_RUNTIME_SOCKETS: dict[str, str] = {
    "containerd": "/run/containerd/containerd.sock",
    "docker": "/var/run/docker.sock",
    "cri": "/var/run/crio/crio.sock",
}
# The agent config key each kind's address goes to (contracts/config_node.py, LifecycleConfig).
ADDRESS_KEYS: dict[str, str] = {
    "containerd": "containerdAddress",
    "docker": "dockerAddress",
    "cri": "criAddresses",
}

# The runtime directories mounted when ``spec.containerRuntime`` is unset (controller/runtime_socket.py).
CONTAINERD_SOCKET_DIR = "/run/containerd"  # the lifecycle observer's containerd socket (docs/lifecycle.md)
CRIO_SOCKET_DIR = "/var/run/crio"  # CRI-O's CRI socket, for the same observer (lifecycle.criAddresses)
# Directories the agent must not see whole: a socket in one of them is mounted on its own.
SHARED_DIRS = frozenset({"/var/run", "/var/lib/kubelet"})

# An absolute, normalized path (no "", "." or ".." segment) without a control character (a NUL, a newline).
SOCKET_PATH_PATTERN = (
    r"^(/([^/.\x00-\x1f\x7f][^/\x00-\x1f\x7f]*|\.[^/.\x00-\x1f\x7f][^/\x00-\x1f\x7f]*"
    r"|\.\.[^/\x00-\x1f\x7f]+))+$"
)
# A socket inside a directory: never directly in "/" (the directory mounted would be the host's root).
NESTED_PATTERN = r"^/[^/]+/.+"
# The trees the agent must not see or must not have hidden: the host's system trees and its own mounts.
FORBIDDEN_PATTERN = (
    r"^(/(proc|sys|dev|etc|boot|usr|bin|sbin|lib|lib32|lib64|libx32|root|home)"
    r"|(/var)?/run/(tetragon|secrets)|/var/(lib|cache)/stellaops-runtime|/opt/stellaops)(/|$)"
)
# A kubelet's directory, wherever its --root-dir put it: /var/lib/kubelet, k0s's /var/lib/k0s/kubelet,
# MicroK8s's /var/snap/microk8s/common/var/lib/kubelet, or any other directory named kubelet: a socket
# directly in it or in its plugins/. And, under any name, what a kubelet's directory holds: pods/ (every
# pod's volumes, Secrets and ServiceAccount tokens among them), plugins/kubernetes.io (volume mounts),
# pki/ (the kubelet's client key), checkpoints/: no socket at or under a directory of those names. Its
# socket-only directories (pod-resources, device-plugins, plugins_registry, a CSI driver's
# plugins/<name>) stay. (A root-dir of another name with the socket directly in it only the agent can
# see: ``data_root_problem``.)
KUBELET_PATTERN = (
    r"^(/.*)?/(kubelet/([^/]+|plugins/[^/]+)|(pods|pki|checkpoints|plugins/kubernetes[.]io)/.+)$"
)
# The data of a cluster's store or of every container, which a mounted directory would hand the agent:
# etcd's, Docker's, containerd's and Podman/CRI-O's roots (under any prefix: a node's root mounted
# elsewhere), k0s's and k3s/RKE2's whole data directories (their etcd or kine database, keys, containerd
# root; their runtime sockets are in /run/k0s and /run/k3s), and MicroK8s's (its socket is in
# /var/snap/microk8s/common/run, which stays).
DATA_ROOT_PATTERN = (
    r"^((/.*)?/var/lib/(etcd|docker|containerd|containers)|/var/lib/(k0s|rancher)"
    r"|/var/snap/microk8s/[^/]+/var)(/|$)"
)
# sun_path holds 108 bytes with its terminating NUL: a longer path cannot be connected to.
MAX_SOCKET_PATH_BYTES = 107

_PATH_RE = re.compile(SOCKET_PATH_PATTERN)
_NESTED_RE = re.compile(NESTED_PATTERN)
_FORBIDDEN_RE = re.compile(FORBIDDEN_PATTERN)
_KUBELET_RE = re.compile(KUBELET_PATTERN)
_DATA_ROOT_RE = re.compile(DATA_ROOT_PATTERN)


def socket_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be the runtime socket the agents are given, or None when it can."""
    if not _PATH_RE.fullmatch(path):
        return (
            "expected an absolute, normalized path on the node "
            "(no '..', '.', '//', trailing '/', NUL or other control character)"
        )
    if not _NESTED_RE.match(path):
        return "a socket inside a directory (/run/containerd/containerd.sock), never directly in /"
    if _FORBIDDEN_RE.match(path):
        return (
            "the agent must not mount it: /proc, /sys, /dev, /etc, /boot, /usr, /bin, /sbin, /lib*, "
            "/root, /home, the agent's own directories (/var/run/tetragon, "
            "/var/lib/stellaops-runtime, /var/cache/stellaops-runtime, the image's /opt/stellaops) "
            "and its ServiceAccount "
            "token's /var/run/secrets are refused"
        )
    return host_data_problem(path) or socket_size_problem(path)


def host_data_problem(path: str) -> str | None:
    """Why mounting the directory of socket ``path`` would show the agent a kubelet's pod data or a
    data root (KUBELET_PATTERN, DATA_ROOT_PATTERN), or None. The agent checks it at start too."""
    if _KUBELET_RE.match(path):
        return (
            "its directory is a kubelet's (/var/lib/kubelet, k0s's, MicroK8s's, any directory named kubelet) "
            "or would mount a kubelet's pod data into the agent (pods/: every pod's volumes and Secrets; "
            "plugins/, plugins/kubernetes.io: volume mounts; pki/: the kubelet's key; checkpoints/): "
            "give the socket a directory of its own"
        )
    if _DATA_ROOT_RE.match(path):
        return (
            "its directory would mount a data root into the agent (etcd's data, or every container's "
            "filesystem: /var/lib/etcd, /var/lib/docker, /var/lib/containerd, /var/lib/containers, "
            "/var/lib/k0s, /var/lib/rancher, /var/snap/microk8s/*/var): give the socket a directory "
            "of its own (/run/k0s, /run/k3s/containerd, /var/snap/microk8s/common/run)"
        )
    return None


# What a directory holds when it is a kubelet's root (whatever its name), etcd's data directory, or a
# Docker, containerd or Podman/CRI-O storage root: names the agent, which sees the directory mounted for
# its socket, checks at start in it and in each of its subdirectories (agent/runtime_target.py), where
# no path rule can know a --root-dir.
_KUBELET_ENTRIES = frozenset({"plugins", "pki", "pod-resources", "device-plugins", "plugins_registry"})
_DATA_ENTRIES = {
    "member": "etcd's data",
    "overlay2": "Docker's storage",
    "io.containerd.snapshotter.v1.overlayfs": "containerd's root",
    "io.containerd.content.v1.content": "containerd's root",
    "overlay-containers": "Podman's or CRI-O's storage",
}


def data_root_problem(entries: set[str]) -> str | None:
    """Why a socket's directory holding ``entries`` (its names) must not be mounted, or None."""
    if "pods" in entries and entries & _KUBELET_ENTRIES:
        return "it is a kubelet's directory (pods/ holds every pod's volumes and Secrets)"
    for name, what in _DATA_ENTRIES.items():
        if name in entries:
            return f"it holds {what} ({name}/)"
    if {"containers", "image", "volumes"} <= entries:
        return "it holds Docker's storage (containers/, image/, volumes/)"
    return None


def socket_size_problem(path: str) -> str | None:
    """Why ``path`` cannot be a Unix socket's address (too many bytes, not UTF-8), or None."""
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no API server sends one, kmock or a test may
        return "not valid UTF-8"
    if size > MAX_SOCKET_PATH_BYTES:
        return f"longer than a Unix socket address holds ({MAX_SOCKET_PATH_BYTES} bytes)"
    return None


def shared_directory(directory: str) -> bool:
    """A directory in ``/``, in ``/var``, or one of SHARED_DIRS: the agent pod never mounts it whole."""
    return directory.count("/") <= 1 or posixpath.dirname(directory) == "/var" or directory in SHARED_DIRS


def runtime_host_paths(socket: str | None) -> list[tuple[str, str]]:
    """(host path, hostPath type) mounted for the runtime socket ``socket`` (None: the defaults)."""
    if socket is None:
        return [(CONTAINERD_SOCKET_DIR, "DirectoryOrCreate"), (CRIO_SOCKET_DIR, "DirectoryOrCreate")]
    directory = posixpath.dirname(socket)
    if shared_directory(directory):
        return [(socket, "Socket")]
    return [(directory, "DirectoryOrCreate")]


def shown(path: str, limit: int = 120) -> str:
    """``path`` for a message: its repr, clipped (the CRD bounds it; a caller without one may not)."""
    return repr(path) if len(path) <= limit else f"{path[:limit]!r}... ({len(path)} characters)"
