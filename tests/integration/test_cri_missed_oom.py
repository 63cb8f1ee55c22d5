"""An OOM kill the CRI runtime never reports is still reported, against a real CRI containerd.

containerd's shim can miss an OOM (containerd#12714); the CRI status then
says reason ``Error``, not ``OOMKilled``, and the runtime has deleted the
container's cgroup before it says the container exited. Before the fix the
observer's DIE then said "not OOM-killed". Here a real container with a
16 MiB limit has a process (an exec) the kernel's OOM killer really kills;
the runtime's statuses pass through a client that turns ``OOMKilled`` into
``Error`` (as a missed OOM looks). The DIE must still say OOM-killed, from
the count the observer kept while the cgroup lived (lifecycle/oom_watch.py);
a container only stopped must not.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.lifecycle.cri_client import CriClient
from stellaops_runtime.lifecycle.cri_observer import CriObserver
from stellaops_runtime.wire.cri import api_pb2
from tests.containerd_harness import Watcher
from tests.cri_harness import CriSetup, running


class OomBlindCri(CriClient):
    """The real runtime, but as if containerd never reported an OOM: the reason reads ``Error``."""

    async def container_status(self, container_id: str) -> api_pb2.ContainerStatusResponse | None:
        resp = await super().container_status(container_id)
        if resp is not None and resp.status.reason == "OOMKilled":
            resp.status.reason = "Error"
        return resp


@pytest.fixture(scope="module")
def cri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CriSetup]:
    yield from running(tmp_path_factory.mktemp("cri-oom-images"))


def _run_and_stop(cri: CriSetup, w: Watcher, *, eat: bool) -> Any:
    d = cri.driver
    pod = d.run_pod(f"p-{uuid.uuid4().hex[:8]}")
    cid = d.create(pod, "app", cri.image.ref, ["sleep", "120"], memory_limit=16 << 20)
    d.start(cid)
    w.wait_for(lambda e: e.event_type == T.START and e.container_id == cid)
    assert w.query(lambda: w.observer.oom_watch.seen(("", cid))) == 0  # watched from its start on
    if eat:  # a process of the container that the kernel's OOM killer kills
        sock = cri.containerd.socket
        argv = ["ctr", "-a", sock, "-n", "k8s.io", "task", "exec", "--exec-id", "eat", cid, "/prog", "eat"]
        assert subprocess.run(argv, capture_output=True, timeout=60).returncode != 0
    d.stop(cid)
    return w.wait_for(lambda e: e.event_type == T.DIE and e.container_id == cid, timeout=60)


def test_an_oom_the_runtime_does_not_report_is_reported(cri: CriSetup) -> None:
    client = OomBlindCri(cri.containerd.socket, timeout=3.0)
    obs = CriObserver(client, relist_seconds=0.2, reconnect_initial=0.1, reconnect_max=0.5)  # type: ignore[arg-type]
    with Watcher(obs) as w:
        die = _run_and_stop(cri, w, eat=True)
        assert (die.exit_code, die.oom_killed) == (137, True)
        assert w.query(lambda: w.observer.stats.oom_from_cgroup) == 1
        plain = _run_and_stop(cri, w, eat=False)
        assert (plain.exit_code, plain.oom_killed) == (137, False)


def test_a_container_oom_killed_at_its_start_is_reported(cri: CriSetup) -> None:
    """Its program allocates at once: the runtime's first word of it may already say exited. Its
    cgroup was watched from its creation (beside the pod's sandbox, whose parent is watched)."""
    client = OomBlindCri(cri.containerd.socket, timeout=3.0)
    obs = CriObserver(client, relist_seconds=0.2, reconnect_initial=0.1, reconnect_max=0.5)  # type: ignore[arg-type]
    d = cri.driver
    with Watcher(obs) as w:
        unread = w.unread_ooms()
        for _ in range(4):
            pod = d.run_pod(f"p-{uuid.uuid4().hex[:8]}")
            cid = d.create(pod, "app", cri.image.ref, ["eat"], memory_limit=16 << 20)
            d.start(cid)
            die = w.wait_for(lambda e, c=cid: e.event_type == T.DIE and e.container_id == c, timeout=60)
            unread = w.assert_oom_killed(die, unread)
