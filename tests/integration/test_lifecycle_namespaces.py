"""A container of another containerd namespace runs where the registry cannot see it.

The containerd observer follows one namespace (``k8s.io``). A container run in
another (``default`` by ``ctr``/``nerdctl``, ``moby`` by Docker on a node whose
Docker uses the node's containerd) may be a silent container of any image:
while one runs the registry is not in sync (no window above ActiveTracing), and
a sample since which one started says so too (docs/lifecycle.md "What is
observed"). Real containerd (tests/containerd_harness.py), the agent's
lifecycle part sampling the real observer.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from stellaops_runtime.agent.lifecycle_part import LifecyclePart, Target, lifecycle_state
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.lifecycle.containerd_client import ContainerdClient
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from stellaops_runtime.wire.containerd import events_pb2
from tests.containerd_harness import Containerd, Image, Watcher, build_image, running

OTHER = "stella-other"


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def image(ctd: Containerd) -> Image:
    img = build_image(ctd.dir)
    ctd.import_image(img)
    other(ctd, "images", "import", str(img.tar))
    return img


def other(ctd: Containerd, *args: str) -> str:
    r = subprocess.run(
        ["ctr", "-a", ctd.address, "-n", OTHER, *args], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def remove(ctd: Containerd, name: str) -> None:
    subprocess.run(
        ["ctr", "-a", ctd.address, "-n", OTHER, "task", "kill", "-s", "9", name],
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        ["ctr", "-a", ctd.address, "-n", OTHER, "task", "rm", "-f", name], capture_output=True, timeout=60
    )
    subprocess.run(
        ["ctr", "-a", ctd.address, "-n", OTHER, "container", "rm", name], capture_output=True, timeout=60
    )


async def publish(ctd: Containerd, value: bytes) -> None:
    client = ContainerdClient(ctd.address, namespace=OTHER, timeout=5.0)
    try:
        await client.publish("/tasks/start", "containerd.events.TaskStart", value)
    finally:
        await client.close()


def wait(check: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


class Sampler:
    """The agent's lifecycle part sampling the watcher's observer, on the observer's loop."""

    def __init__(self, w: Watcher) -> None:
        cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
        self.pipeline = Pipeline(cfg, node_name="n1")
        self.part = LifecyclePart(cfg, Target("containerd", "unused"), node_name="n1", pipeline=self.pipeline)
        self.part.observer = w.observer
        self.w = w

    def state(self) -> str:
        async def in_pipeline(fn: Any, *args: Any) -> Any:
            return fn(*args)

        source = SimpleNamespace(connects=1, connected=True)
        sample = self.part._sample_once(in_pipeline, lambda: source)
        asyncio.run_coroutine_threadsafe(sample, self.w._loop).result(30)
        return lifecycle_state(self.part, self.pipeline)


def test_a_container_of_another_namespace_keeps_the_registry_out_of_sync(
    ctd: Containerd, image: Image, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="stellaops_runtime.lifecycle.observer")
    before, during, brief = (f"o-{uuid.uuid4().hex[:8]}" for _ in range(3))
    other(ctd, "run", "-d", image.ref, before)
    try:
        obs = ContainerdObserver(ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=5.0))
        with Watcher(obs) as w:
            s = Sampler(w)
            # Running before the observer connected: found by the rebuild's lists.
            assert s.state() == "not_in_sync" and not s.part.runs.containers.known
            assert w.query(lambda: set(obs.unwatched)) == {(OTHER, before)}
            assert any(f"namespace '{OTHER}'" in r.getMessage() for r in caplog.records)
            remove(ctd, before)
            wait(lambda: not w.query(lambda: set(obs.unwatched)), "the foreign container's exit")
            s.state()  # the sample that saw it go
            assert s.state() == "in_sync"
            # Started while the observer watches: its task start event.
            other(ctd, "run", "-d", image.ref, during)
            wait(lambda: w.query(lambda: set(obs.unwatched)) == {(OTHER, during)}, "the foreign start")
            assert s.state() == "not_in_sync"
            remove(ctd, during)
            wait(lambda: not w.query(lambda: set(obs.unwatched)), "the foreign container's exit")
            s.state()
            assert s.state() == "in_sync"
            # Started and gone between two samples: the sample after it is not in sync either.
            starts = w.query(lambda: obs.stats.unwatched_starts)
            other(ctd, "run", "--rm", image.ref, brief, "/prog", "exit", "0")
            wait(lambda: w.query(lambda: obs.stats.unwatched_starts) > starts, "the brief start")
            wait(lambda: not w.query(lambda: set(obs.unwatched)), "the brief container's exit")
            assert s.state() == "not_in_sync"
            assert s.state() == "in_sync"
            # A forged start (no container containerd could have: a 1 MiB id) is not held, yet the
            # next sample is not in sync; nothing ends it, and the one after is.
            forged = events_pb2.TaskStart(container_id="x" * (1 << 20), pid=1).SerializeToString()
            starts = w.query(lambda: obs.stats.unwatched_starts)
            asyncio.run(publish(ctd, forged))
            wait(lambda: w.query(lambda: obs.stats.unwatched_starts) > starts, "the forged start")
            assert w.query(lambda: set(obs.unwatched)) == set()
            assert s.state() == "not_in_sync"
            assert s.state() == "in_sync"
            # The observer's own namespace's containers are followed, as before.
            ctd.ctr("run", "-d", image.ref, "own-" + before)
            w.wait_record("own-" + before, "status", "running", namespace=ctd.namespace)
            assert w.query(lambda: set(obs.unwatched)) == set() and s.state() == "in_sync"
    finally:
        for name in (before, during, brief):
            remove(ctd, name)
        ctd.remove_all()


class LateClient(ContainerdClient):
    """The real containerd, but a container named ``slow`` is read only once ``gone`` is set (a busy
    agent, a backlog): by then ``ctr run --rm`` has removed it."""

    def __init__(self, address: str, *, namespace: str, slow: str) -> None:
        super().__init__(address, namespace=namespace, timeout=5.0)
        self.slow = slow
        self.gone = threading.Event()

    async def get_container(self, container_id: str) -> Any:
        if container_id == self.slow:
            await asyncio.to_thread(self.gone.wait, 30)
        return await super().get_container(container_id)


def test_a_container_gone_before_the_observer_read_it_keeps_the_sample_out_of_sync(
    ctd: Containerd, image: Image
) -> None:
    """Its task started in the watched namespace, but containerd no longer had the container when the
    observer asked: no record, no run. It ran an image the registry cannot name, so the sample after
    it is not in sync (as for a start in another namespace), never in_sync as if nothing ran."""
    brief = f"r-{uuid.uuid4().hex[:8]}"
    client = LateClient(ctd.socket, namespace=ctd.namespace, slow=brief)
    with Watcher(ContainerdObserver(client)) as w:
        s = Sampler(w)
        assert s.state() == "in_sync"
        ctd.ctr("run", "--rm", image.ref, brief, "/prog", "exit", "0")
        client.gone.set()
        w.wait_for(lambda e: e.container_id == brief and str(e.event_type) == "delete")
        assert s.state() == "not_in_sync"
        assert s.state() == "in_sync"
    ctd.remove_all()
