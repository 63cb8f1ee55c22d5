"""A container that starts or ends between the observer's list and its event subscription is seen.

Each connection lists the runtime's containers and subscribes to its events.
A runtime registers a subscription when its request arrives, which the client
is not told, so a list read before that instant misses what happens in
between: a container started there was never registered (a silent run while
the agent said in_sync), one that exited there stayed running in the
registry. The clients here hold the real subscription back (the gap a slow
network, a busy runtime or a loaded node opens) until the observer has read
its lists, or for a second when it does not read them first, and start and
kill containers of the real runtime in it. The run must be registered and
its end recorded (docs/lifecycle.md "Subscribe, then list").
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterator

import pytest

from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.lifecycle.containerd_client import ContainerdClient
from stellaops_runtime.lifecycle.docker_client import DockerClient
from stellaops_runtime.lifecycle.docker_observer import DockerObserver
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from stellaops_runtime.lifecycle.registry import ContainerRecord
from stellaops_runtime.wire.containerd import task_pb2
from tests.containerd_harness import Containerd, Image, Watcher, build_image, running
from tests.docker_harness import Dockerd, Registry, running_engine

HOLD_SECONDS = 1.0  # how long the subscription is held when the observer does not list first


class _Gap:
    """Runs ``action`` (in a thread) once, after the observer's first list or HOLD_SECONDS."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.listed = threading.Event()
        self.done = threading.Event()

    async def hold(self) -> None:
        if not self.done.is_set():
            await asyncio.to_thread(self.listed.wait, HOLD_SECONDS)
            await asyncio.to_thread(self.action)
            self.done.set()


class GapContainerd(ContainerdClient):
    def __init__(self, address: str, gap: _Gap, *, namespace: str) -> None:
        super().__init__(address, namespace=namespace, timeout=5.0)
        self.gap = gap

    async def list_tasks(self, namespace: str | None = None) -> list[task_pb2.Process]:
        out = await super().list_tasks(namespace)
        self.gap.listed.set()
        return out

    async def subscribe(self, filters: list[str] | None = None) -> AsyncGenerator[bytes, None]:
        await self.gap.hold()
        async for raw in super().subscribe(filters):
            yield raw


class GapDocker(DockerClient):
    def __init__(self, address: str, gap: _Gap) -> None:
        super().__init__(address, timeout=5.0)
        self.gap = gap

    async def get_json(self, path: str) -> object:
        out = await super().get_json(path)
        if path.startswith("/containers/json"):
            self.gap.listed.set()
        return out

    async def events(
        self, filters: dict[str, list[str]], *, since_ns: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        await self.gap.hold()
        async for line in super().events(filters, since_ns=since_ns):
            yield line


def _wait_done(gap: _Gap) -> None:
    assert gap.done.wait(60), "the gap's containers were started"


# -- containerd ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def image(ctd: Containerd) -> Image:
    img = build_image(ctd.dir)
    ctd.import_image(img)
    return img


def test_containerd_runs_in_the_gap_are_registered(ctd: Containerd, image: Image) -> None:
    before, inside, after = (f"g-{uuid.uuid4().hex[:8]}" for _ in range(3))
    ctd.ctr("run", "-d", image.ref, before)

    def gap() -> None:
        ctd.ctr("task", "kill", "-s", "KILL", before)
        ctd.ctr("run", "-d", image.ref, inside)

    g = _Gap(gap)
    obs = ContainerdObserver(GapContainerd(ctd.socket, g, namespace=ctd.namespace))
    with Watcher(obs) as w:
        _wait_done(g)
        ctd.ctr("run", "-d", image.ref, after)  # once its start is handled, the stream is live
        w.wait_for(lambda e: e.event_type == T.START and e.container_id == after)
        started: ContainerRecord | None = w.query(lambda: obs.registry.get(ctd.namespace, inside))
        assert started is not None, "a container started between the list and the subscription"
        assert started.status == "running" and started.pid == ctd.task_pid(inside) and started.cgroup_id
        ended: ContainerRecord = w.query(lambda: obs.registry.get(ctd.namespace, before))
        assert (ended.status, ended.exit_code) == ("stopped", 137), "a container killed in the gap"
        assert ended.stopped_at is not None
    ctd.remove_all()


# -- docker ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[Dockerd, Registry]]:
    yield from running_engine()


def test_docker_runs_in_the_gap_are_registered(engine: tuple[Dockerd, Registry]) -> None:
    d, reg = engine
    before = d.docker("run", "-d", "--network", "none", reg.ref).strip()
    inside: list[str] = []

    def gap() -> None:
        d.docker("kill", before)
        inside.append(d.docker("run", "-d", "--network", "none", reg.ref).strip())

    g = _Gap(gap)
    obs = DockerObserver(GapDocker(d.socket, g))
    with Watcher(obs) as w:
        _wait_done(g)
        after = d.docker("run", "-d", "--network", "none", reg.ref).strip()
        w.wait_for(lambda e: e.event_type == T.START and e.container_id == after)
        started: ContainerRecord | None = w.query(lambda: obs.registry.get("", inside[0]))
        assert started is not None, "a container started between the list and the subscription"
        assert started.status == "running" and started.cgroup_id
        assert w.query(lambda: obs.by_cgroup(started.cgroup_id)) is not None
        ended: ContainerRecord = w.query(lambda: obs.registry.get("", before))
        assert (ended.status, ended.exit_code) == ("stopped", 137), "a container killed in the gap"
        assert ended.stopped_at is not None
        assert not ended.cgroup_id or w.query(lambda: obs.by_cgroup(ended.cgroup_id)) is None
    d.remove_all()


class LateDocker(DockerClient):
    """The real Engine, but while ``hold`` is set a container is inspected only once it is released."""

    def __init__(self, address: str) -> None:
        super().__init__(address, timeout=5.0)
        self.hold = threading.Event()
        self.released = threading.Event()

    async def get_or_none(self, path: str) -> object:
        if self.hold.is_set() and path.startswith("/containers/"):
            await asyncio.to_thread(self.released.wait, 30)
        return await super().get_or_none(path)


def test_docker_a_container_removed_before_it_was_read_keeps_the_sample_out_of_sync(
    engine: tuple[Dockerd, Registry],
) -> None:
    """``docker run --rm`` of a moment, read late (a busy agent): Docker no longer has it, so no record
    and no run; the sample after its start is not in sync (test_lifecycle_namespaces for containerd)."""
    from tests.integration.test_lifecycle_namespaces import Sampler

    d, reg = engine
    client = LateDocker(d.socket)
    with Watcher(DockerObserver(client)) as w:
        s = Sampler(w)
        assert s.state() == "in_sync"
        client.hold.set()
        cid = d.docker("run", "-d", "--rm", "--network", "none", reg.ref, "exit", "0").strip()
        deadline = time.monotonic() + 30
        while d.docker("ps", "-aq", "--no-trunc", "--filter", f"id={cid}").strip():
            assert time.monotonic() < deadline, "docker removed the container"
            time.sleep(0.05)
        gone_ns = time.time_ns()
        assert s.state() == "in_sync"  # its start not read yet: the registry says nothing of it
        client.released.set()
        w.wait_for(lambda e: e.container_id == cid and str(e.event_type) == "delete")
        assert s.state() == "not_in_sync"
        # It ran before that sample in sync: the time the registry missed reaches back to its start.
        holes = s.part.runs.containers._holes
        assert holes and holes[0][0] < gone_ns
        assert s.state() == "in_sync"


class ListedThenGone(DockerClient):
    """The real Engine; the inspect of container ``slow`` waits until the test removed it."""

    def __init__(self, address: str) -> None:
        super().__init__(address, timeout=5.0)
        self.slow = ""
        self.removed = threading.Event()
        self.asked = threading.Event()

    async def get_or_none(self, path: str) -> object:
        if self.slow and path.startswith(f"/containers/{self.slow}/"):
            self.asked.set()
            await asyncio.to_thread(self.removed.wait, 30)
        return await super().get_or_none(path)


def test_docker_a_listed_container_removed_before_its_inspect_keeps_the_sample_out_of_sync(
    engine: tuple[Dockerd, Registry],
) -> None:
    """The rebuild lists a running container, which is removed before its inspect: no record, no run
    of its image; the sample after the sync is not in sync (it ran, unnamed), then in sync. Here at
    the first sync; the same rebuild runs at every reconnect, where the time is watched."""
    from tests.integration.test_lifecycle_namespaces import Sampler

    d, reg = engine
    client = ListedThenGone(d.socket)
    client.slow = d.docker("run", "-d", "--network", "none", reg.ref).strip()

    def remove() -> None:
        assert client.asked.wait(30)
        d.docker("rm", "-f", client.slow)
        client.removed.set()

    remover = threading.Thread(target=remove)
    remover.start()
    try:
        with Watcher(DockerObserver(client)) as w:
            remover.join(30)
            assert w.query(lambda: w.observer.registry.get("", client.slow)) is None
            s = Sampler(w)
            assert s.state() == "not_in_sync"
            assert s.state() == "in_sync"
    finally:
        client.removed.set()
        remover.join(30)
