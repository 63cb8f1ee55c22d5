"""A container's last native records keep its image after the runtime reported its exit.

The agent decodes a native BPF record in its pipeline, up to a poll interval
(or a queue backlog) after the kernel wrote it, and names its container by
looking the record's cgroup id up in the snapshot the lifecycle observer
holds *then*. containerd reports an exit within milliseconds, so by the time a
short-lived container's records (a Job, an init container: often all of
them) are decoded, the observer has marked it stopped. Those records must
still be filed under the container's image (and its pod, which the opt-out
reads), never under no image.

Real containerd (tests/containerd_harness.py) runs a container whose program
exits at once; real BCC exec probes record it; the test decodes the records
after the observer announced the container's STOP, as a lagging pipeline
would, against the lookup built from the observer's registry, and checks
each record of the container's cgroup against the truth: the image digest
computed when the image was built.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stellaops_runtime.contracts.events import EventKind
from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.lifecycle.containerd_client import ContainerdClient
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from stellaops_runtime.native import records
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.detect import Report, detect
from stellaops_runtime.native.events import Decoder
from stellaops_runtime.native.source import NativeProbeSource
from stellaops_runtime.sources.queue import EventQueue
from tests.containerd_harness import Containerd, Image, Watcher, build_image, running

pytestmark = pytest.mark.bpf

POD = ("--label", "io.kubernetes.pod.namespace=batch", "--label", "io.kubernetes.pod.name=job-1")


@pytest.fixture(scope="module")
def report() -> Report:
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=str(Path(".cache/native").resolve()))
    if rep.posture < Posture.PASSIVE:
        pytest.skip(f"native probes give {rep.posture} here: {rep.missing}")
    return rep


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def image(ctd: Containerd) -> Image:
    img = build_image(ctd.dir, ref="test.local/late:1", env=("ROLE=job",))
    ctd.import_image(img)
    return img


async def _capture(report: Report, work: Callable[[], None]) -> list[tuple[bytes, int]]:
    """Every exec record the kernel wrote while ``work`` ran (in a thread), undecoded."""
    queue = EventQueue(100_000, max_bytes=64 << 20)
    source = NativeProbeSource(
        NativeConfig(exec_events=True),
        queue=queue,
        kernel_source=report.kernel_source,
        ring_buffer=report.ok("ring buffer"),
        retry_seconds=3600,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        await source.ready.wait()
        assert source.stats.connected, source.stats.last_error
        await asyncio.get_running_loop().run_in_executor(None, work)
        await asyncio.sleep(0.3)  # the last records are on their way
    finally:
        stop.set()
        await task
    return queue.take(len(queue))


@pytest.mark.parametrize("removed", [False, True], ids=["kept", "removed"])
def test_records_decoded_after_the_exit_keep_the_containers_image(
    report: Report, ctd: Containerd, image: Image, removed: bool
) -> None:
    """Kept: a Job's container, stopped until it is removed. Removed: ``ctr run --rm`` (as
    ``docker run --rm``) removes it right after the exit; the lookup then names it through
    the registry's departed containers (ContainerRegistry.departed)."""
    name = f"job-{uuid.uuid4().hex[:8]}"
    rm = ("--rm",) if removed else ()
    last = T.DELETE if removed else T.STOP
    obs = ContainerdObserver(ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=5.0))
    try:
        with Watcher(obs) as w:

            def work() -> None:
                # Like a Job's pod: runs, exits 3; the stopped container stays until it is removed.
                assert ctd.ctr_status("run", *rm, *POD, image.ref, name, "/prog", "exit", "3") == 3
                w.wait_for(lambda ev: ev.container_id == name and ev.event_type == last)

            payloads = asyncio.run(_capture(report, work))
            start = w.wait_for(lambda ev: ev.container_id == name and ev.event_type == T.START)
            cgroup = start.cgroup_id
            assert cgroup, "the START event carries the container's cgroup id"
            # The snapshot the agent's pipeline holds once the observer has handled the exit.
            reg = obs.registry
            lookup = w.query(lambda: ContainerLookup(reg.records(), "containerd", departed=reg.departed()))
            gone = w.query(lambda: reg.get(ctd.namespace, name))
            assert gone is None if removed else gone.status == "stopped"
    finally:
        ctd.remove_all()

    decoder = Decoder(node_name="n1", targets=(), wall_minus_monotonic_ns=0, containers=lookup.by_cgroup)
    mine = []
    for payload, received in payloads:
        if records.HEADER.unpack_from(payload, 0)[7] != cgroup:
            continue
        ev = decoder.decode(payload, received_ns=received)
        assert ev is not None
        mine.append(ev)
    assert any(ev.kind == EventKind.EXEC and ev.process.binary == "/prog" for ev in mine), [
        ev.process.binary for ev in mine
    ]
    for ev in mine:  # every record of the container's cgroup: its container and image, its pod
        assert ev.container is not None, f"{ev.process.binary}: no container"
        assert (ev.container.id, ev.container.image_digest) == (name, image.manifest_digest)
        assert ev.container.cgroup_id == cgroup
        pod = lookup.pod_by_cgroup(cgroup)
        assert pod is not None and (pod.namespace, pod.name) == ("batch", "job-1")


def test_a_stopped_container_keeps_its_cgroup_across_a_runtime_restart(ctd: Containerd, image: Image) -> None:
    """After containerd restarts, the rebuild lists a container whose task was deleted as never
    started, with no cgroup: the observer keeps what it knew (stopped, exit code, cgroup), so the
    container's records decoded after the reconnect still name it."""
    name = f"job-{uuid.uuid4().hex[:8]}"
    obs = ContainerdObserver(
        ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=2.0),
        reconnect_initial=0.2,
        reconnect_max=0.5,
    )
    try:
        with Watcher(obs) as w:
            assert ctd.ctr_status("run", *POD, image.ref, name, "/prog", "exit", "3") == 3  # task deleted
            stop = w.wait_for(lambda ev: ev.container_id == name and ev.event_type == T.STOP)
            assert stop.cgroup_id
            ctd.kill()
            ctd.start()
            w.wait_record(name, "status", "stopped", namespace=ctd.namespace)
            deadline = time.monotonic() + 30
            while w.query(lambda: obs.stats.resyncs) < 2:
                assert time.monotonic() < deadline, "no rebuild after the restart"
                time.sleep(0.05)
            rec = w.query(lambda: obs.registry.get(ctd.namespace, name))
            assert (rec.status, rec.exit_code, rec.cgroup_id) == ("stopped", 3, stop.cgroup_id)
            lookup = w.query(lambda: ContainerLookup(obs.registry.records(), "containerd"))
            got = lookup.by_cgroup(stop.cgroup_id)
            assert got is not None and got.image_digest == image.manifest_digest
    finally:
        ctd.remove_all()
