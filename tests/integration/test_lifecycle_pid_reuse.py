"""A container's init pid reused before the observer looked at it must not give it another cgroup.

The observer learns a container's cgroup id by reading ``/proc/<pid>/cgroup``
of the init pid containerd's task event names. When it handles that event
late (a backlog, a slow rebuild) the container may be gone and its pid held
by another process: that process's cgroup (the host's root cgroup here, or
another container's) must not become the container's, or the other
processes' events would be filed under this container's image, and, once the
container stopped, for as long as the runtime keeps it.

Real containerd runs a container that sleeps and exits while the observer's
event loop is held; a helper then forks a child into the dead init's pid
(tests/pid_reuse.py); the loop is released. Truth: the cgroup inode of the
init read while it ran, and the cgroup of the helper's child. The container's
own cgroup is still found, from its spec (``/k8s.io/<id>``), while the
stopped task keeps its directory; so is that of a container whose init
exited before the observer looked at all, which used to get none and file
its processes' records under no image.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.lifecycle.cgroups import CgroupResolver
from stellaops_runtime.lifecycle.containerd_client import ContainerdClient
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from tests import pid_reuse
from tests.containerd_harness import Containerd, Image, Watcher, build_image, running


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    if not pid_reuse.can_pick_pids():
        pytest.skip("choosing the next pid needs root (/proc/sys/kernel/ns_last_pid)")
    yield from running()


@pytest.fixture(scope="module")
def image(ctd: Containerd) -> Image:
    img = build_image(ctd.dir, ref="test.local/pidreuse:1")
    ctd.import_image(img)
    return img


def test_a_reused_init_pid_gives_the_container_no_foreign_cgroup(ctd: Containerd, image: Image) -> None:
    name = f"c-{uuid.uuid4().hex[:8]}"
    resolver = CgroupResolver()
    obs = ContainerdObserver(ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=5.0))
    helper = None
    try:
        with Watcher(obs) as w:
            gate = threading.Event()
            w._loop.call_soon_threadsafe(gate.wait, 60)  # the observer falls behind containerd
            try:
                ctd.ctr("run", "-d", image.ref, name, "/prog", "sleep", "1")
                pid = ctd.task_pid(name)
                truth = resolver.resolve(pid)
                assert truth is not None and truth.cgroup_id
                deadline = time.monotonic() + 20
                while Path(f"/proc/{pid}").exists():  # the init exits; the task stays (stopped)
                    assert time.monotonic() < deadline, "the container did not exit"
                    time.sleep(0.05)
                time.sleep(0.6)  # the newcomer starts well after containerd's task events
                helper = pid_reuse.fork_into(pid)
                if helper is None:
                    pytest.skip(f"pid {pid} was taken by another process first")
                foreign = resolver.resolve(pid)
                assert foreign is not None and foreign.cgroup_id != truth.cgroup_id
            finally:
                gate.set()
            w.wait_for(lambda ev: ev.container_id == name and ev.event_type == T.DIE)
            rec = w.query(lambda: obs.registry.get(ctd.namespace, name))
            lookup = w.query(lambda: ContainerLookup(obs.registry.records(), "containerd"))
            starts = [e for e in w.events if e.container_id == name and e.event_type == T.START]
            assert rec.cgroup_id == truth.cgroup_id, (rec.cgroup_path, foreign.path)  # from the spec
            assert [e.cgroup_id for e in starts] == [truth.cgroup_id]
            assert lookup.by_cgroup(foreign.cgroup_id) is None  # the newcomer's cgroup names no image
            assert w.query(lambda: obs.by_cgroup(foreign.cgroup_id)) is None
            assert lookup.by_cgroup(truth.cgroup_id).id == name  # type: ignore[union-attr]
    finally:
        if helper is not None:
            pid_reuse.release(helper, pid)
        ctd.remove_all()


def test_a_container_gone_before_the_observer_looked_gets_its_cgroup_from_its_spec(
    ctd: Containerd, image: Image
) -> None:
    name = f"c-{uuid.uuid4().hex[:8]}"
    obs = ContainerdObserver(ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=5.0))
    try:
        with Watcher(obs) as w:
            gate = threading.Event()
            w._loop.call_soon_threadsafe(gate.wait, 60)  # the observer falls behind containerd
            try:
                ctd.ctr("run", "-d", image.ref, name, "/prog", "exit", "0")  # exits at once; task kept
                truth = CgroupResolver().resolve_spec(f"/{ctd.namespace}/{name}")
                assert truth is not None and truth.cgroup_id
                deadline = time.monotonic() + 20
                while "STOPPED" not in ctd.ctr("task", "ls"):  # the init is gone before the observer looks
                    assert time.monotonic() < deadline, "the container did not exit"
                    time.sleep(0.05)
            finally:
                gate.set()
            w.wait_for(lambda ev: ev.container_id == name and ev.event_type == T.DIE)
            start = w.wait_for(lambda ev: ev.container_id == name and ev.event_type == T.START)
            assert start.cgroup_id == truth.cgroup_id
            lookup = w.query(lambda: ContainerLookup(obs.registry.records(), "containerd"))
            assert lookup.by_cgroup(truth.cgroup_id).id == name  # type: ignore[union-attr]
    finally:
        ctd.remove_all()
