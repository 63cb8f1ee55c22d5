"""An OOM kill Docker never reports is still reported, against a real Docker Engine.

containerd's shim can miss an OOM (containerd#12714); Docker then says
``OOMKilled: false`` and sends no ``oom`` event, and it deletes the
container's cgroup before its ``die``, so the kernel's count is gone when
the exit is handled. Before the fix the observer's DIE then said "not
OOM-killed". Here a real container with a 16 MiB limit has a process the
kernel's OOM killer really kills; the Engine's answers are passed through a
client that hides every OOM report of Docker's (as a missed one looks). The
DIE must still say OOM-killed, from the count the observer kept while the
cgroup lived (lifecycle/oom_watch.py); a container only SIGKILLed must not.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest

from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.lifecycle.docker_client import DockerClient
from stellaops_runtime.lifecycle.docker_observer import DockerObserver
from tests.containerd_harness import Watcher
from tests.docker_harness import Dockerd, Registry, running_engine

MEMORY = ("--memory", str(16 << 20), "--memory-swap", str(16 << 20))


class OomBlindClient(DockerClient):
    """The real Engine, but as if containerd never reported an OOM: no ``oom`` event, no OOMKilled."""

    hidden = 0

    async def get_or_none(self, path: str) -> Any:
        doc = await super().get_or_none(path)
        state = doc.get("State") if isinstance(doc, dict) else None
        if isinstance(state, dict) and state.get("OOMKilled"):
            state["OOMKilled"] = False
            OomBlindClient.hidden += 1
        return doc

    async def events(
        self, filters: dict[str, list[str]], *, since_ns: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        async for line in super().events(filters, since_ns=since_ns):
            if json.loads(line).get("Action") == "oom":
                OomBlindClient.hidden += 1
                continue
            yield line


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[Dockerd, Registry]]:
    yield from running_engine()


def _run_and_kill(d: Dockerd, reg: Registry, w: Watcher, *, eat: bool) -> Any:
    cid = d.docker("run", "-d", "--network", "none", *MEMORY, reg.ref, "sleep", "120")
    w.wait_for(lambda e: e.event_type == T.START and e.container_id == cid)
    # the observer holds the container's OOM counter from its start on
    assert w.query(lambda: w.observer.oom_watch.seen(("", cid))) == 0
    if eat:  # a process of the container that the kernel's OOM killer kills
        d.docker("exec", cid, "/prog", "eat", check=False)
    d.docker("kill", cid)
    return w.wait_for(lambda e: e.event_type == T.DIE and e.container_id == cid, timeout=60)


def test_an_oom_docker_does_not_report_is_reported(engine: tuple[Dockerd, Registry]) -> None:
    d, reg = engine
    client = OomBlindClient(d.socket, timeout=5.0)
    with Watcher(DockerObserver(client)) as w:
        die = _run_and_kill(d, reg, w, eat=True)
        assert (die.exit_code, die.oom_killed) == (137, True)
        assert w.query(lambda: w.observer.stats.oom_from_cgroup) == 1
        plain = _run_and_kill(d, reg, w, eat=False)
        assert (plain.exit_code, plain.oom_killed) == (137, False)
        # nothing of these two left open (other tests' new containers can be watched early meanwhile)
        for cid in (die.container_id, plain.container_id):
            watch = w.query(lambda c=cid: w.observer.oom_watch._watches.get(("", c)))
            assert watch is None or (watch.fd, watch.event_fd) == (-1, -1), watch
    d.remove_all()


def test_a_container_oom_killed_at_its_start_is_reported(engine: tuple[Dockerd, Registry]) -> None:
    """Its program allocates at once: the cgroup can be gone before the observer handles its start
    event. The cgroup was watched from its creation (a sibling's parent directory is watched). On
    this host's cgroup v1 the kernel notifies as the OOM begins and counts the kill only after
    printing its report; the runtime can remove the cgroup in between (seen on a loaded machine):
    the notification alone says OOM-killed. A cgroup gone before the observer could open it says
    "not known", counted, never "not OOM-killed"."""
    d, reg = engine
    client = OomBlindClient(d.socket, timeout=5.0)
    with Watcher(DockerObserver(client)) as w:
        sibling = d.docker("run", "-d", "--network", "none", reg.ref, "sleep", "120")
        w.wait_for(lambda e: e.event_type == T.START and e.container_id == sibling)
        unread = w.unread_ooms()
        for _ in range(4):
            cid = d.docker("run", "-d", "--network", "none", *MEMORY, reg.ref, "eat")
            die = w.wait_for(lambda e, c=cid: e.event_type == T.DIE and e.container_id == c, timeout=60)
            unread = w.assert_oom_killed(die, unread)
        d.docker("kill", sibling)
        w.wait_for(lambda e: e.event_type == T.DIE and e.container_id == sibling)
    d.remove_all()
