"""Which container a ``cgroupAllow`` cgroup is, for the switch back's overlap filter (RSW3, s42).

native/cgroup_ids.py (dddf866) names the container whose cgroup directory a
cgroup of ``native.cgroupAllow`` is, and the overlap filter then skips
Tetragon's cached calls carrying that container id as the probes' own
(agent/source_switch_overlap.py). The probes match a call's own cgroup exactly
(``bpf_get_current_cgroup_id``), so the filter may only name a container all of
whose calls the probes counted. Two directories named the container wrongly,
and Tetragon's copies of calls the probes never counted, their only count, were
skipped:

- a container runtime's monitor beside the container (CRI-O's
  ``crio-conmon-<id>.scope``, Podman's ``libpod-conmon-<id>.scope``): the probes
  counted the monitor's calls, not the container's;
- a container's cgroup holding cgroups of its own (systemd or a container
  engine inside it): its processes there are in another cgroup than the one
  allowed.

Neither names the container now: its cached calls may count twice, none is lost.
"""

from __future__ import annotations

from pathlib import Path

from stellaops_runtime.agent.source_switch_overlap import Load
from stellaops_runtime.contracts.events import ContainerInfo, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.native.cgroup_ids import container_ids
from stellaops_runtime.native.config import NativeConfig, UprobeTarget

CID = "ab" * 32
LIBZ = UprobeTarget("/usr/lib/x86_64-linux-gnu/libz.so.1", "crc32")


def skipped(cgroup: Path, tree: Path) -> bool:
    """Whether the filter of probes limited to ``cgroup`` skips Tetragon's cached call of CID."""
    ino = cgroup.stat().st_ino
    (tree / "cgroup.controllers").write_text("")  # a cgroup v2 tree (test_cgroup_ids_v1.py)
    ids = container_ids([ino], (str(tree),)).values()
    load = Load.of(NativeConfig(uprobes=(LIBZ,), cgroup_allow=(ino,)), [f"uprobe {LIBZ.label()}"],
                   since_ns=100, detached_ns=200, cgroup_containers=ids)  # fmt: skip
    assert load is not None
    proc, container = ProcessInfo(pid=1, binary="/bin/a"), ContainerInfo(id=CID)
    call = RuntimeCallEvent(
        EventKind.UPROBE, 150, "n", proc, container, function_name="crc32", module=LIBZ.binary
    )
    return load.counted(call)


def test_the_containers_own_cgroup_names_it(tmp_path: Path) -> None:
    pod = tmp_path / "kubepods.slice" / "kubepods-pod1.slice"
    for name in (f"cri-containerd-{CID}.scope", f"docker-{CID}.scope", f"crio-{CID}.scope", CID):
        (pod / name).mkdir(parents=True)
        assert skipped(pod / name, tmp_path), name


def test_a_runtime_monitor_beside_the_container_does_not_name_it(tmp_path: Path) -> None:
    pod = tmp_path / "kubepods.slice" / "kubepods-pod1.slice"
    for name in (f"crio-conmon-{CID}.scope", f"libpod-conmon-{CID}.scope"):
        (pod / name).mkdir(parents=True)
        assert not skipped(pod / name, tmp_path), f"{name}: the container's calls, not counted, skipped"


def test_a_container_cgroup_holding_cgroups_does_not_name_it(tmp_path: Path) -> None:
    scope = tmp_path / "kubepods.slice" / f"cri-containerd-{CID}.scope"
    (scope / "init.scope").mkdir(parents=True)  # systemd inside the container: its processes are there
    assert not skipped(scope, tmp_path), "calls in the container's own cgroups, not counted, skipped"
