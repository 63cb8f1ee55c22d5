"""The CRI lifecycle observer against containerd's real CRI plugin running real pods.

A private containerd with ``io.containerd.grpc.v1.cri`` on (tests/cri_harness.py)
runs pods on the node's network and containers of an image built in the test;
the test drives it as kubelet does (RunPodSandbox, CreateContainer,
StartContainer, StopContainer, RemoveContainer). Debian's containerd 1.6
answers ``GetContainerEvents`` with UNIMPLEMENTED, so everything here goes
through the relist fallback (the event stream is tested against an
in-process server in test_lifecycle_cri_events.py). The observer must report
what the kernel and the runtime know: the pid the runtime shows, the inode of
the container's cgroup v2 directory, the manifest digest computed in the
test, the pod's namespace and name from its sandbox, the exit code and OOM
kills, each event once, and survive containerd being killed and restarted.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.lifecycle.cgroups import unified_path
from stellaops_runtime.lifecycle.cri_client import CriClient
from stellaops_runtime.lifecycle.cri_observer import CriObserver
from stellaops_runtime.wire.cri import api_pb2
from tests.containerd_harness import Watcher, build_image, eventually
from tests.cri_harness import CriSetup, running

SECRET = "hunter2-cri-s3cr3t"


@pytest.fixture(scope="module")
def cri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CriSetup]:
    yield from running(tmp_path_factory.mktemp("cri-images"))


def observer(cri: CriSetup, **kw: float) -> CriObserver:
    kw = {"relist_seconds": 0.2, "reconnect_initial": 0.1, "reconnect_max": 0.5, **kw}
    return CriObserver(CriClient(cri.containerd.socket, timeout=3.0), **kw)  # type: ignore[arg-type]


def _name() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


def _pid(cri: CriSetup, cid: str) -> int:
    pid = json.loads(cri.driver.status(cid).info["info"])["pid"]
    assert isinstance(pid, int) and pid > 0
    return pid


def _cgroup_inode(pid: int) -> tuple[str, int]:
    """The cgroup v2 path of ``pid`` and the inode of its directory, read here independently."""
    path = unified_path(Path(f"/proc/{pid}/cgroup").read_text())
    assert path is not None
    mount = next(
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split(" - ")[1].startswith("cgroup2 ")
    )
    return path, os.stat(mount + path).st_ino


def _kinds(w: Watcher, cid: str) -> list[T]:
    return [e.event_type for e in list(w.events) if e.container_id == cid]


def test_pod_container_lifecycle_through_the_cri(cri: CriSetup) -> None:
    d = cri.driver
    with Watcher(observer(cri)) as w:
        pod = d.run_pod(_name(), "shop", annotations={"stellaops.io/observe-level": "full"})
        cid = d.create(
            pod, "cart", cri.image.ref, ["sleep", "600"], env={"API_TOKEN": SECRET, "MODE": "fast"}
        )
        d.start(cid)
        pid = _pid(cri, cid)
        path, inode = _cgroup_inode(pid)

        create = w.wait_for(lambda e: e.event_type == T.CREATE and e.container_id == cid)
        start = w.wait_for(lambda e: e.event_type == T.START and e.container_id == cid)
        for ev in (create, start):
            assert ev.runtime == "cri"
            assert ev.image_ref == cri.image.ref and ev.image_digest == cri.image.manifest_digest
            assert (ev.pod_namespace, ev.pod_name, ev.container_name) == ("shop", pod.name, "cart")
            # The environment comes from the runtime's spec: names stay, secret values never leave.
            assert "API_TOKEN=[REDACTED]" in ev.env_vars and "MODE=fast" in ev.env_vars
            assert SECRET not in repr(ev.to_json())
        assert (start.pid, start.cgroup_path, start.cgroup_id) == (pid, path, inode)
        assert start.started_at is not None and start.exit_code is None
        assert w.observer.mode == "relist"  # containerd 1.6: GetContainerEvents is UNIMPLEMENTED
        assert w.observer.runtime_name == "containerd"

        rec = w.query(lambda: w.observer.by_cgroup(inode))
        assert rec is not None and rec.container_id == cid and rec.pod_uid == pod.uid
        assert rec.image_digest == cri.image.manifest_digest and SECRET not in repr(rec.to_json())
        sandbox = w.query(lambda: w.observer.registry.get("", pod.sandbox_id))
        assert sandbox is not None and sandbox.is_sandbox and sandbox.status == "running"
        assert (sandbox.pod_namespace, sandbox.pod_name, sandbox.pod_uid) == ("shop", pod.name, pod.uid)
        assert sandbox.pod_annotations == {"stellaops.io/observe-level": "full"}

        d.stop(cid, timeout=0)  # SIGKILL
        die = w.wait_for(lambda e: e.event_type == T.DIE and e.container_id == cid)
        stop = w.wait_for(lambda e: e.event_type == T.STOP and e.container_id == cid)
        assert (die.exit_code, die.pid, die.oom_killed) == (137, pid, False)
        assert die.stopped_at is not None and start.started_at is not None
        assert die.stopped_at >= start.started_at and stop.exit_code == 137
        assert w.query(lambda: w.observer.by_cgroup(inode)) is None  # a dead cgroup names nobody

        # The CRI has no image events: an image arriving is no event of this observer.
        cri.containerd.import_cri_image(
            build_image(cri.containerd.dir, ref="test.local/cri-late:1", env=("L=1",))
        )
        d.remove(cid)
        w.wait_for(lambda e: e.event_type == T.DELETE and e.container_id == cid)
        assert w.query(lambda: w.observer.registry.get("", cid)) is None
        time.sleep(0.6)  # three more relists: nothing is announced twice
        assert _kinds(w, cid) == [T.CREATE, T.START, T.DIE, T.STOP, T.DELETE]
        assert _kinds(w, pod.sandbox_id) == []  # a pod sandbox is a registry entry, not events
        assert [e for e in w.events if e.event_type == T.IMAGE_PULL] == []
        d.stop_pod(pod.sandbox_id)
        d.remove_pod(pod.sandbox_id)
        stats = w.observer.stats
        assert sum(stats.decode_failures.values()) == 0 and stats.spec_problems == 0
        assert stats.stream_errors == 0 and w.observer.relists > 3


def test_exit_code_and_oom_between_two_looks(cri: CriSetup) -> None:
    """A container created, started and gone between two relists still yields all four events."""
    d = cri.driver
    with Watcher(observer(cri, relist_seconds=1.0)) as w:
        pod = d.run_pod(_name())
        code = d.create(pod, "exits", cri.image.ref, ["exit", "3"])
        d.start(code)
        oom = d.create(pod, "eats", cri.image.ref, ["eat"], memory_limit=16 << 20)
        d.start(oom)
        die = w.wait_for(lambda e: e.event_type == T.DIE and e.container_id == code)
        assert die.exit_code == 3 and not die.oom_killed and die.stopped_at is not None
        assert _kinds(w, code)[:4] == [T.CREATE, T.START, T.DIE, T.STOP]
        killed = w.wait_for(lambda e: e.event_type == T.DIE and e.container_id == oom, timeout=60)
        assert killed.exit_code == 137
        # containerd's shim may report the OOM after the exit (containerd#12714): the status says
        # "OOMKilled" only a moment later. The observer's record must then say OOM too. A `die`
        # may also say OOM when the runtime never does: the kernel's count kept while the cgroup
        # lived (lifecycle/oom_watch.py, tests/integration/test_cri_missed_oom.py).
        if eventually(lambda: d.status(oom).status.reason == "OOMKilled"):
            w.wait_record(oom, "oom_killed", True)
        d.stop_pod(pod.sandbox_id)
        d.remove_pod(pod.sandbox_id)
        w.wait_for(lambda e: e.event_type == T.DELETE and e.container_id == oom)


def test_a_restarted_observer_finds_what_runs(cri: CriSetup) -> None:
    """What ran before the observer started is in its registry (listed, not announced)."""
    d = cri.driver
    pod = d.run_pod(_name(), "billing")
    live = d.create(pod, "live", cri.image.ref, ["sleep", "600"])
    d.start(live)
    done = d.create(pod, "done", cri.image.ref, ["exit", "7"])
    d.start(done)
    d.wait_state(done, api_pb2.CONTAINER_EXITED)
    pid = _pid(cri, live)
    path, inode = _cgroup_inode(pid)
    try:
        for _ in range(2):  # the agent restarted: a new observer, an empty registry
            with Watcher(observer(cri)) as w:
                rec = w.query(lambda: w.observer.by_cgroup(inode))
                assert rec is not None and rec.container_id == live
                assert (rec.pid, rec.cgroup_path, rec.status) == (pid, path, "running")
                assert rec.image_digest == cri.image.manifest_digest
                assert (rec.pod_namespace, rec.pod_name) == ("billing", pod.name)
                gone = w.query(lambda: w.observer.registry.get("", done))
                assert gone is not None and gone.status == "stopped" and gone.exit_code == 7
                time.sleep(0.5)
                assert [e for e in w.events if e.container_id in (live, done)] == []
                assert w.observer.stats.resyncs == 1
    finally:
        d.stop_pod(pod.sandbox_id)
        d.remove_pod(pod.sandbox_id)


def test_survives_containerd_killed_and_restarted(cri: CriSetup) -> None:
    """Backoff while the socket is gone, a relist on return, and what changed meanwhile is announced."""
    d = cri.driver
    ctd = cri.containerd
    pod = d.run_pod(_name(), "ops")
    stays = d.create(pod, "stays", cri.image.ref, ["sleep", "600"])
    d.start(stays)
    dies = d.create(pod, "dies", cri.image.ref, ["sleep", "600"])
    d.start(dies)
    _, stays_inode = _cgroup_inode(_pid(cri, stays))
    dies_pid = _pid(cri, dies)
    try:
        with Watcher(observer(cri)) as w:
            ctd.kill()
            deadline = time.monotonic() + 20
            while w.query(lambda: w.observer.stats.stream_errors) < 2:  # retried, with backoff
                assert time.monotonic() < deadline, w.observer.stats
                time.sleep(0.05)
            # While containerd is away the registry still answers, and a container dies.
            assert w.query(lambda: w.observer.by_cgroup(stays_inode)) is not None
            os.kill(dies_pid, signal.SIGKILL)
            ctd.start()
            die = w.wait_for(lambda e: e.event_type == T.DIE and e.container_id == dies, timeout=30)
            assert die.exit_code == 137 and die.stopped_at is not None
            w.wait_synced()
            assert w.query(lambda: w.observer.stats.reconnects) >= 1
            assert w.query(lambda: w.observer.by_cgroup(stays_inode)) is not None
            assert _kinds(w, stays) == [] and _kinds(w, dies) == [T.DIE, T.STOP]
    finally:
        d.stop_pod(pod.sandbox_id)
        d.remove_pod(pod.sandbox_id)


def test_the_containers_cli_lists_a_cri_runtime(cri: CriSetup) -> None:
    """``stella-runtime containers --runtime cri``, the real CLI, lists pods and containers of the CRI."""
    from tests.e2e.harness import cli

    d = cri.driver
    pod = d.run_pod(_name(), "cli")
    cid = d.create(pod, "web", cri.image.ref, ["sleep", "600"], env={"API_TOKEN": SECRET})
    d.start(cid)
    pid = _pid(cri, cid)
    _, inode = _cgroup_inode(pid)
    try:
        r = cli("containers", "--runtime", "cri", "--address", cri.containerd.socket, "--json")
        assert r.returncode == 0, r.stderr
        records = {
            rec["container_id"]: rec for rec in (json.loads(x)["registry"] for x in r.stdout.splitlines())
        }
        web = records[cid]
        assert (web["status"], web["pid"], web["cgroup_id"]) == ("running", pid, inode)
        assert web["image_digest"] == cri.image.manifest_digest
        assert (web["pod_namespace"], web["pod_name"]) == ("cli", pod.name)
        assert SECRET not in r.stdout
        assert records[pod.sandbox_id]["pod_name"] == pod.name  # the sandbox is listed too
        table = cli("containers", "--runtime", "cri", "--address", cri.containerd.socket)
        assert table.returncode == 0 and cid in table.stdout and f"cli/{pod.name}" in table.stdout
        gone = cli("containers", "--runtime", "cri", "--address", str(cri.containerd.dir / "nothing.sock"))
        assert gone.returncode == 2 and "cannot read containers from" in gone.stderr
    finally:
        d.stop(cid)
        d.remove(cid)
        d.stop_pod(pod.sandbox_id)
        d.remove_pod(pod.sandbox_id)
