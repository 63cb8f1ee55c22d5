"""The node's container runtime socket in the agent pod: its host mount and the agent config's lifecycle keys.

The agent's lifecycle observer (agent/lifecycle_part.py) lists the node's
containers from its runtime; without it no window of a container's image reads
above ActiveTracing (docs/lifecycle.md, "Without the lifecycle part"). Where
the socket is depends on the node's distribution, so the RuntimeObserver says
it (``spec.containerRuntime``, checked by contracts/runtime_socket.py):

- unset: containerd's ``/run/containerd`` and CRI-O's ``/var/run/crio`` are
  mounted (type ``DirectoryOrCreate``: a node with neither still starts its
  agent) and the agent config says ``lifecycle: {enabled: auto, runtime:
  auto}``, so the agent watches whichever socket is there;
- ``{kind, socketPath}``: only that socket's directory is mounted, at the same
  path (so the address in the config is the host's path), type
  ``DirectoryOrCreate`` for the same reason, and the config names that one
  runtime (``runtime: containerd|docker|cri``) and its address
  (``containerdAddress``, ``dockerAddress`` or ``criAddresses``). A node
  where the socket is absent still starts its agent, which says
  ``ContainersKnown`` False ``NoRuntimeSocket``. When the directory is one
  shared by the whole system (``/run``, ``/var/run``, ``/tmp``, any directory
  directly in ``/`` or in ``/var``, the kubelet's ``/var/lib/kubelet``), which
  the agent has no business seeing whole, the socket itself is mounted, type
  ``Socket``: the kubelet then does not start the agent where it is absent
  (the pod waits in ContainerCreating with a FailedMount event; the
  RuntimeObserver stays Progressing, fewer agents ready than desired, and once
  every agent is updated its RollingOut message says so), and a runtime
  that re-creates its socket on restart (dockerd without systemd's
  docker.socket) leaves the agent on the old one until the agent restarts
  (meanwhile the registry is not in sync and windows are capped, never wrong).

``enabled`` stays ``auto``: a configured socket that is absent at start is
reported (``no_runtime_socket``), not retried into a vaguer ``not_in_sync``.
"""

from __future__ import annotations

import posixpath
from typing import Any

from stellaops_runtime.contracts.crd_specs import RuntimeObserverSpec, SpecError
from stellaops_runtime.contracts.runtime_socket import (
    ADDRESS_KEYS,
    runtime_host_paths,
    shared_directory,
    shown,
    socket_path_problem,
)
from stellaops_runtime.contracts.tetragon_socket import tetragon_host_dir, tetragon_socket_problem

RUNTIME_VOLUME = "runtime-socket"  # the volume of ``spec.containerRuntime``'s socket


def runtime_mounts(spec: RuntimeObserverSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumeMounts, volumes) of the runtime socket, all read-only, mounted where the node has them."""
    runtime = spec.container_runtime
    if runtime is not None and (problem := socket_path_problem(runtime.socket)):
        # parse_observer_spec refuses it first; a spec built another way is not rendered either
        raise SpecError(
            "InvalidSocketPath", f"spec.containerRuntime.socketPath {shown(runtime.socket)}: {problem}"
        )
    paths = runtime_host_paths(None if runtime is None else runtime.socket)
    names = ["containerd", "crio"] if runtime is None else [RUNTIME_VOLUME]
    parts = [(name, path, kind) for name, (path, kind) in zip(names, paths, strict=True)]
    mounts = [{"name": name, "mountPath": path, "readOnly": True} for name, path, _ in parts]
    volumes = [{"name": name, "hostPath": {"path": path, "type": kind}} for name, path, kind in parts]
    return mounts, volumes


def tetragon_mount_dir(spec: RuntimeObserverSpec) -> str:
    """The node directory mounted for Tetragon's socket, refused as parse refuses it (tetragon_socket.py)."""
    address = spec.tetragon.address
    runtime = spec.container_runtime
    if problem := tetragon_socket_problem(address, None if runtime is None else runtime.socket):
        raise SpecError("InvalidSocketPath", f"spec.tetragon.address {shown(address)}: {problem}")
    return tetragon_host_dir(address)


def socket_mounted_alone(spec: RuntimeObserverSpec) -> str | None:
    """The socket when it is mounted on its own (type ``Socket``): an agent on a node without it
    waits in ContainerCreating, which the RuntimeObserver's RollingOut message then points at."""
    runtime = spec.container_runtime
    if runtime is None or not shared_directory(posixpath.dirname(runtime.socket)):
        return None
    return runtime.socket


def lifecycle_section(spec: RuntimeObserverSpec) -> dict[str, Any]:
    """The agent config's ``lifecycle`` section (contracts/config_node.py, LifecycleConfig)."""
    runtime = spec.container_runtime
    if runtime is None:
        # containerd's and CRI-O's directories are mounted: containerd's events when its socket is
        # there, else CRI-O's CRI (lifecycle.md "One runtime, never two"). On neither (k3s's
        # /run/k3s/containerd, Docker) the agent cannot know silent containers: its container windows
        # read at most ActiveTracing and the ObservationNode says ContainersKnown False.
        return {"enabled": "auto", "runtime": "auto"}
    key = ADDRESS_KEYS[runtime.kind]
    address: str | list[str] = [runtime.socket] if key == "criAddresses" else runtime.socket
    return {"enabled": "auto", "runtime": runtime.kind, key: address}
