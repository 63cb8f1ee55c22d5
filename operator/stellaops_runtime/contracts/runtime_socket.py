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
stay accepted.
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
# The kubelet's directory (its root-dir's default): a socket directly in it, or one whose directory is or
# holds pods' data: pods/ (every pod's volumes, Secrets and ServiceAccount tokens among them), plugins/ and
# its kubernetes.io volume mounts, pki/ (the kubelet's client key), checkpoints/. Its socket-only
# directories (pod-resources, device-plugins, plugins_registry, a CSI driver's plugins/<name>) stay.
KUBELET_PATTERN = (
    r"^/var/lib/kubelet/([^/]+|plugins/[^/]+|(pods|pki|checkpoints|plugins/kubernetes[.]io)/.+)$"
)
# sun_path holds 108 bytes with its terminating NUL: a longer path cannot be connected to.
MAX_SOCKET_PATH_BYTES = 107

_PATH_RE = re.compile(SOCKET_PATH_PATTERN)
_NESTED_RE = re.compile(NESTED_PATTERN)
_FORBIDDEN_RE = re.compile(FORBIDDEN_PATTERN)
_KUBELET_RE = re.compile(KUBELET_PATTERN)


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
    if _KUBELET_RE.match(path):
        return (
            "its directory is the kubelet's /var/lib/kubelet or would mount the kubelet's pod data into "
            "the agent (pods/: every pod's volumes and Secrets; plugins/, plugins/kubernetes.io: volume "
            "mounts; pki/: the kubelet's key; checkpoints/): give the socket a directory of its own"
        )
    return socket_size_problem(path)


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
