"""An OOM kill whose ``/tasks/oom`` containerd never sends is still reported.

containerd's runc shim can miss the OOM of a task that exits at once (CI saw
no ``/tasks/oom`` within 30 s of the exit). The observer then reads the
container's own cgroup's ``memory.events`` at the exit. These tests drive
the containerd observer's task handling with a fake cgroup tree: the exit of
an OOM-killed container says so; a plain SIGKILL does not; a cgroup shared
with other containers (its path not naming this one) is never read; a late
``/tasks/oom`` still marks the stopped record.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.lifecycle.cgroups import CgroupResolver
from stellaops_runtime.lifecycle.decode import Decoded
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from stellaops_runtime.lifecycle.registry import ContainerRecord
from stellaops_runtime.wire.containerd import events_pb2


def _observer(tmp_path: Path) -> tuple[ContainerdObserver, Path]:
    cg = tmp_path / "cg"
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(f"40 30 0:35 / {cg} rw - cgroup2 cgroup2 rw\n")
    client = SimpleNamespace(address="unix:///nowhere", namespace="k8s.io")
    obs = ContainerdObserver(client, resolver=CgroupResolver(str(proc)))  # type: ignore[arg-type]
    return obs, cg


def _running(obs: ContainerdObserver, cid: str, cgroup_path: str) -> ContainerRecord:
    rec = ContainerRecord(container_id=cid, namespace="k8s.io", status="running", pid=4242)
    rec.cgroup_path = cgroup_path
    obs.registry.put(rec)
    return rec


def _events(cg: Path, path: str, text: str) -> None:
    d = cg / path.lstrip("/")
    d.mkdir(parents=True, exist_ok=True)
    (d / "memory.events").write_text(text)


def _exit(obs: ContainerdObserver, cid: str, status: int) -> list:  # type: ignore[type-arg]
    p = events_pb2.TaskExit(container_id=cid, id=cid, pid=4242, exit_status=status)
    d = Decoded(topic="/tasks/exit", namespace="k8s.io", timestamp=datetime.now(UTC), payload=p)
    return asyncio.run(obs._apply(d))


def test_an_exit_whose_cgroup_counted_an_oom_kill_is_oom_killed(tmp_path: Path) -> None:
    obs, cg = _observer(tmp_path)
    _running(obs, "c1", "/k8s.io/c1")
    _events(cg, "/k8s.io/c1", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    (die,) = _exit(obs, "c1", 137)
    assert die.event_type == T.DIE and die.exit_code == 137 and die.oom_killed is True
    assert obs.stats.oom_from_cgroup == 1


def test_a_plain_sigkill_is_not_oom_killed(tmp_path: Path) -> None:
    obs, cg = _observer(tmp_path)
    _running(obs, "c2", "/k8s.io/c2")
    _events(cg, "/k8s.io/c2", "oom 0\noom_kill 0\n")
    (die,) = _exit(obs, "c2", 137)
    assert die.oom_killed is False and obs.stats.oom_from_cgroup == 0


def test_a_gone_cgroup_or_one_shared_with_others_is_not_read(tmp_path: Path) -> None:
    obs, cg = _observer(tmp_path)
    _running(obs, "c3", "/k8s.io/c3")  # its directory is gone (task deleted first)
    (die,) = _exit(obs, "c3", 137)
    assert die.oom_killed is False
    # A pod-level cgroup holding several containers: its kills may be a neighbour's.
    _running(obs, "c4", "/kubepods/pod-1")
    _events(cg, "/kubepods/pod-1", "oom_kill 3\n")
    (die,) = _exit(obs, "c4", 137)
    assert die.oom_killed is False and obs.stats.oom_from_cgroup == 0


def test_a_late_oom_event_still_marks_the_stopped_record(tmp_path: Path) -> None:
    obs, _cg = _observer(tmp_path)
    _running(obs, "c5", "/k8s.io/c5")
    (die,) = _exit(obs, "c5", 137)
    assert die.oom_killed is False
    p = events_pb2.TaskOOM(container_id="c5")
    d = Decoded(topic="/tasks/oom", namespace="k8s.io", timestamp=datetime.now(UTC), payload=p)
    assert asyncio.run(obs._apply(d)) == []
    rec = obs.registry.get("k8s.io", "c5")
    assert rec is not None and rec.oom_killed is True
