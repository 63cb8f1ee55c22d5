"""A container whose image digest is not known may be any image's silent container.

Its reference moved after it was created, its image was removed, or the image
has no registry digest: the registry cannot say which image it runs, so while
it runs (and at the agent's sample after it stopped) the registry is not in
sync: no window above ActiveTracing (lifecycle/imageless.py, docs/lifecycle.md
"Observation windows of images that ran"). Real containerd, an image removed
under a running container; the agent's lifecycle part sampling the real observer.
"""

from __future__ import annotations

import asyncio
import logging
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
from tests.containerd_harness import Containerd, Image, Watcher, build_image, running

GONE = "test.local/removed:1"


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def image(ctd: Containerd) -> Image:
    img = build_image(ctd.dir)
    ctd.import_image(img)
    return img


def wait(check: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def sampler(w: Watcher) -> Callable[[], str]:
    """One sample of the agent's lifecycle part over the watcher's observer: the state it gives."""
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
    pipeline = Pipeline(cfg, node_name="n1")
    part = LifecyclePart(cfg, Target("containerd", "unused"), node_name="n1", pipeline=pipeline)
    part.observer = w.observer
    source = SimpleNamespace(connects=1, connected=True)

    async def in_pipeline(fn: Any, *args: Any) -> Any:
        return fn(*args)

    def state() -> str:
        sample = part._sample_once(in_pipeline, lambda: source)
        asyncio.run_coroutine_threadsafe(sample, w._loop).result(30)
        return lifecycle_state(part, pipeline)

    return state


def test_a_container_of_an_unknown_image_keeps_the_registry_out_of_sync(
    ctd: Containerd, image: Image, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="stellaops_runtime.lifecycle.imageless")
    known, unknown = (f"i-{uuid.uuid4().hex[:8]}" for _ in range(2))
    ctd.ctr("run", "-d", image.ref, known)
    ctd.ctr("images", "tag", image.ref, GONE)
    ctd.ctr("run", "-d", GONE, unknown)
    ctd.ctr("images", "rm", GONE)  # the container runs on; its image's digest cannot be looked up
    try:
        obs = ContainerdObserver(ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=5.0))
        with Watcher(obs) as w:
            state = sampler(w)
            rec = w.query(lambda: obs.registry.get(ctd.namespace, unknown))
            assert rec is not None and rec.status == "running" and rec.image_digest == ""
            assert state() == "not_in_sync"
            assert any(unknown[:12] in r.getMessage() for r in caplog.records)
            ctd.ctr("task", "kill", "-s", "9", unknown)
            w.wait_record(unknown, "status", "stopped", timeout=60, namespace=ctd.namespace)
            assert state() == "not_in_sync"  # it ran since the last sample
            assert state() == "in_sync"  # the container of a known image alone
            got = w.query(lambda: obs.registry.get(ctd.namespace, known))
            assert got is not None and got.image_digest == image.manifest_digest
    finally:
        ctd.remove_all()
