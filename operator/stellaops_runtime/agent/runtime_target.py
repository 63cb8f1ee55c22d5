"""Which container runtime socket the agent watches, chosen once at start (agent/lifecycle_part.py).

``lifecycle.runtime`` names one runtime or ``auto`` (containerd's events service,
then Docker, then the CRI sockets: one runtime, never two). A socket whose
directory, as the agent pod mounts it, would show the agent a kubelet's pod data
or a data root is refused here as the operator refuses it
(contracts/runtime_socket.py): by its path, and by what the directory or one
of its subdirectories holds, which is how a kubelet ``--root-dir`` or a data
root of another name shows.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from dataclasses import dataclass

from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.contracts.runtime_socket import (
    data_root_problem,
    host_data_problem,
    runtime_host_paths,
)

log = logging.getLogger(__name__)

DEFAULT_CONTAINERD_SOCKET = "/run/containerd/containerd.sock"  # never taken for a CRI runtime by ``auto``
# Names read of a directory (and of each subdirectory) mounted for the socket, for its shape: bounded,
# as the directory may be anything the node holds.
ENTRIES_MAX = 4096


@dataclass(frozen=True, slots=True)
class Target:
    runtime: str  # "containerd" | "docker" | "cri"
    address: str


def _socket_path(address: str) -> str:
    for prefix in ("unix://", "unix:"):
        if address.startswith(prefix):
            return address[len(prefix) :]
    return address


def lifecycle_target(config: AgentConfig) -> Target | None:
    """Which runtime the agent watches, or None (off, or ``auto`` and no runtime socket exists).

    One runtime, never two: ``auto`` tries containerd's events service, then
    Docker, then the CRI sockets other than containerd's (its own or the
    default one), so containerd is watched through its events service, never
    through its CRI as well (docs/lifecycle.md, "CRI")."""
    lc = config.lifecycle
    if lc.enabled is False:
        return None
    found = candidates(config)
    for t in found:
        if _refused(t):
            return None
        if os.path.exists(_socket_path(t.address)):
            return t
    if lc.enabled is True:  # asked for: watched anyway, retried (and counted) until the socket appears
        return found[0]
    return None


def _refused(t: Target) -> bool:
    """Whether the directory mounted for the socket of ``t`` would show the agent a kubelet's pod
    data or a data root (contracts/runtime_socket.py): by its path, or, for a directory of any name
    (a kubelet --root-dir), by what it holds. Logged; such a runtime is not watched."""
    path = _socket_path(t.address)
    problem = host_data_problem(path)
    if problem is None:
        for mounted, kind in runtime_host_paths(path):
            if kind != "Socket" and (found := _shape_problem(mounted)):
                problem = f"the directory {mounted!r} mounted for it: {found}"
    if problem is not None:
        log.error(
            "container lifecycle observer: %s socket %r refused: %s. Give the socket a directory of its "
            "own (the agent pod mounts the socket's directory); until then the node's containers are "
            "not known and no window reads above ActiveTracing",
            t.runtime, path[:200], problem,
        )  # fmt: skip
    return problem is not None


def _shape_problem(directory: str) -> str | None:
    """What ``directory`` or one of its subdirectories (the mount shows the agent those too) holds
    that the agent must not see (``data_root_problem``), or None. A symlink is not followed: in the
    agent's mount it points into the agent's own filesystem, not the node's."""
    with contextlib.suppress(OSError):
        with os.scandir(directory) as it:
            entries = list(itertools.islice(it, ENTRIES_MAX))
        if found := data_root_problem({e.name for e in entries}):
            return found
        for entry in entries:
            with contextlib.suppress(OSError):
                if not entry.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(entry.path) as it:
                    names = {e.name for e in itertools.islice(it, ENTRIES_MAX)}
                if found := data_root_problem(names):
                    return f"its subdirectory {entry.name[:64]!r}: {found}"
    return None


def candidates(config: AgentConfig) -> list[Target]:
    """The runtimes ``lifecycle.runtime`` lets the agent watch, in the order they are tried."""
    lc = config.lifecycle
    containerd = Target("containerd", lc.containerd_address)
    docker = Target("docker", lc.docker_address)
    cri = [Target("cri", address) for address in lc.cri_addresses]
    containerds = {_socket_path(lc.containerd_address), DEFAULT_CONTAINERD_SOCKET}
    auto = [containerd, docker, *(t for t in cri if _socket_path(t.address) not in containerds)]
    return {"containerd": [containerd], "docker": [docker], "cri": cri}.get(lc.runtime, auto)
