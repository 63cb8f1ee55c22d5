"""The ``ContainersKnown`` ``RegistryNotInSync`` message says which runtime, why, and since when.

It said only "the container runtime's registry is not in sync (before its
first sample, the runtime away, or its observer stopped)": an operator
looking at a node that stayed out of sync (the RuntimeObserver Degraded after
its grace period) had to find the agent's log to learn which socket it
watched and what failed. Now the agent's condition message names the runtime
and its address (redacted), the observer's error or what it waits for, and
since when (the condition's transition, kept while it lasts).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from stellaops_runtime.agent.observation_status import CONTAINERS_CONDITION, build_status
from stellaops_runtime.agent.registry_detail import registry_detail
from stellaops_runtime.lifecycle.containerd_client import ContainerdClient
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from tests.unit.test_working_source import UP, caps


def _known(detail: str | None, existing: Any = None, now: str = "2026-12-05T20:00:00Z") -> dict[str, Any]:
    status = build_status(
        capabilities=caps(), tetragon=UP, policies=[], existing_conditions=existing, now=now,
        containers="not_in_sync", containers_detail=detail,
    )  # fmt: skip
    return {c["type"]: c for c in status["conditions"]}[CONTAINERS_CONDITION]


def test_the_message_says_why_and_since_when_and_keeps_saying_it() -> None:
    why = "containerd at unix:///run/containerd/containerd.sock does not answer: connection refused"
    first = _known(why)
    assert first["status"] == "False" and first["reason"] == "RegistryNotInSync"
    assert why in first["message"] and "since 2026-12-05T20:00:00Z" in first["message"]
    # a later report, the same cause: the same message (nothing written while nothing changes)
    later = _known(why, existing=[first], now="2026-12-05T20:05:00Z")
    assert later == first
    # without a detail (an older wiring) the message is the one before
    assert "since" not in _known(None)["message"]


def test_a_real_observer_that_cannot_reach_containerd_is_named_with_its_error(tmp_path: Path) -> None:
    address = f"unix://{tmp_path}/containerd.sock"  # nothing listens there

    async def run() -> ContainerdObserver:
        obs = ContainerdObserver(
            ContainerdClient(address, namespace="k8s.io", timeout=1.0), reconnect_initial=0.05
        )
        stop = asyncio.Event()

        async def consume() -> None:
            async for _ in obs.events(stop):
                pass

        task = asyncio.create_task(consume())
        for _ in range(200):
            if obs.stats.last_error:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)
        return obs

    obs = asyncio.run(run())
    lifecycle = SimpleNamespace(target=SimpleNamespace(runtime="containerd", address=address), observer=obs)
    detail = registry_detail(lifecycle)
    assert detail is not None and detail.startswith(f"containerd at {address} does not answer: ")
    assert obs.stats.last_error[:40] in detail


def test_each_state_of_the_observer_is_named() -> None:
    target = SimpleNamespace(runtime="docker", address="unix:///var/run/docker.sock")
    synced = asyncio.Event()
    obs = SimpleNamespace(
        stats=SimpleNamespace(connected=True, last_error="old"), synced=synced, unwatched=set()
    )
    assert registry_detail(None) is None
    assert "has not started" in str(registry_detail(SimpleNamespace(target=target, observer=None)))
    waiting = str(registry_detail(SimpleNamespace(target=target, observer=obs)))
    assert "not listed yet" in waiting and "old" not in waiting  # connected: an old error is no cause
    synced.set()
    obs.unwatched = {("moby", "c1"), ("other", "c2")}
    assert "moby, other" in str(registry_detail(SimpleNamespace(target=target, observer=obs)))
    obs.unwatched = set()
    assert "no image digest" in str(registry_detail(SimpleNamespace(target=target, observer=obs)))


def test_a_secret_in_the_address_or_error_is_not_shown() -> None:
    target = SimpleNamespace(runtime="docker", address="tcp://user:hunter2@docker.example:2376")
    stats = SimpleNamespace(connected=False, last_error="401 for token=abcdefabcdefabcdef" + "x" * 5000)
    detail = str(registry_detail(SimpleNamespace(target=target, observer=SimpleNamespace(stats=stats))))
    assert "hunter2" not in detail and "abcdefabcdefabcdef" not in detail and len(detail) < 600
