"""How far the CRI observer trusts ``GetContainerEvents``: only as far as the runtimes' source allows.

Against the in-process CRI server of test_lifecycle_cri_events.py (no runtime
here has the stream), made to behave as the runtimes' source says they do
(lifecycle/cri_stream.py): CRI-O's default ends the stream at once, OK and
empty; containerd 1.7 hands each event to one of its readers; no runtime
says when it registered the stream. In each case a container the stream
never told of must reach the registry by the lists, within ``relist_seconds``,
never only at the once-a-minute backstop.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from stellaops_runtime.wire.cri import api_pb2
from tests.containerd_harness import Watcher
from tests.integration.test_lifecycle_cri_events import CriServer, _info, _subscribed, observer
from tests.integration.test_lifecycle_cri_events import sleeper as sleeper  # the fixture


class Runtime(CriServer):
    """The test server, with a runtime name and version, a stream that may end at once or register late."""

    def __init__(self, socket: str, name: str = "cri-o", version: str = "1.30.0") -> None:
        super().__init__(socket)
        self.name, self.version = name, version
        self.end_at_once = False  # CRI-O with enable_pod_events = false
        self.end_after_lists = 0  # ... answered late: OK and empty once this many lists were answered
        self.register_after_lists = 0  # hold the stream until this many ListContainers were answered
        self.lists = 0

    def _version(self, req: api_pb2.VersionRequest, ctx: grpc.ServicerContext) -> api_pb2.VersionResponse:
        return api_pb2.VersionResponse(version="0.1.0", runtime_name=self.name, runtime_version=self.version)

    def _list_containers(self, req: Any, ctx: grpc.ServicerContext) -> api_pb2.ListContainersResponse:
        out = super()._list_containers(req, ctx)
        self.lists += 1
        return out

    def _events(self, req: Any, ctx: grpc.ServicerContext) -> Iterator[bytes]:
        if self.end_at_once:
            return iter(())
        if self.end_after_lists:  # a loaded CRI-O: its "no stream" comes after the observer's lists
            deadline = time.monotonic() + 20
            while self.lists < self.end_after_lists and time.monotonic() < deadline:
                time.sleep(0.01)
            return iter(())
        deadline = time.monotonic() + 20
        while self.lists < self.register_after_lists and time.monotonic() < deadline:
            time.sleep(0.01)
        return super()._events(req, ctx)


def _start(server: Runtime, sandbox: str, pid: int) -> str:
    cid = uuid.uuid4().hex
    server.set_container(
        sandbox, cid, api_pb2.CONTAINER_RUNNING, info=_info(pid, []), started_at=time.time_ns()
    )
    return cid


def _listed(w: Watcher, cid: str, why: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while w.query(lambda: w.observer.registry.get("", cid)) is None:
        assert time.monotonic() < deadline, why
        time.sleep(0.02)


def test_a_stream_ended_at_once_and_empty_is_no_stream(tmp_path: Path, sleeper: int) -> None:
    """CRI-O's default (enable_pod_events = false) answers GetContainerEvents OK and empty, at once."""
    server = Runtime(str(tmp_path / "crio.sock"))
    server.end_at_once = True
    server.start()
    try:
        sb = server.add_pod("web", "shop", pid=sleeper)
        obs = observer(server)
        w = Watcher(obs)
        w._thread.start()
        deadline = time.monotonic() + 5
        while not w.query(obs.synced.is_set):
            errors = w.query(lambda: (obs.stats.stream_errors, obs.stats.last_error))
            assert time.monotonic() < deadline, f"never in sync on CRI-O's default: {errors}"
            time.sleep(0.02)
        try:
            assert obs.mode == "relist" and obs.stats.stream_errors == 0
            _listed(w, _start(server, sb.id, sleeper), "a container started later is relisted")
        finally:
            w.close()
    finally:
        server.stop()


def test_a_stream_ended_empty_after_the_lists_is_no_stream_either(tmp_path: Path, sleeper: int) -> None:
    """A loaded CRI-O with its default answers OK and empty after the settle time (after the lists):
    the same "no stream" as at once. It was taken for a stream that failed, and each connection
    ended so: a reconnect (a stream error, a WARNING, a hole in the agent's samples) and two more
    lists of every container each time, for as long as CRI-O stayed that slow, since each sync reset
    the backoff. Before its first message a stream is not relied on (the lists are read every
    relist_seconds), so relisting from then on loses nothing."""
    server = Runtime(str(tmp_path / "slow-crio.sock"))
    server.end_after_lists = 3  # the two lists of the connection and one relist
    server.start()
    try:
        sb = server.add_pod("web", "shop", pid=sleeper)
        with Watcher(observer(server, settle_seconds=0.05, relist_seconds=0.05)) as w:
            obs = w.observer
            deadline = time.monotonic() + 10
            while w.query(lambda: server.lists) < 12:  # the end came, and lists went on after it
                assert time.monotonic() < deadline, "the lists stopped"
                time.sleep(0.02)
            state = w.query(
                lambda: (obs.stats.stream_errors, obs.stats.connects, obs.mode, obs.stats.last_error)
            )
            assert state[:3] == (0, 1, "relist"), state
            _listed(w, _start(server, sb.id, sleeper), "a container started later is relisted")
    finally:
        server.stop()


def test_a_stream_registered_after_the_lists_leaves_no_gap_to_the_backstop(
    tmp_path: Path, sleeper: int
) -> None:
    """The runtime registers the stream after both lists (a loaded runtime, past SETTLE_SECONDS): a
    container started in between is on no list and in no event; the lists go on until the stream shows
    it is live, so it is listed within relist_seconds, not at the backstop (600 s here)."""
    server = Runtime(str(tmp_path / "late.sock"))
    server.register_after_lists = 3
    server.start()
    try:
        sb = server.add_pod("web", "shop", pid=sleeper)
        with Watcher(observer(server, settle_seconds=0.05)) as w:
            cid = _start(server, sb.id, sleeper)
            _listed(w, cid, "a container started before the runtime registered the stream")
    finally:
        server.stop()


def test_a_shared_stream_is_not_relied_on_alone(tmp_path: Path, sleeper: int) -> None:
    """containerd 1.7 hands each event to one reader (the kubelet's, crictl's, ours): a start event
    another reader took is made up for by the lists within relist_seconds."""
    server = Runtime(str(tmp_path / "ctd17.sock"), name="containerd", version="v1.7.20")
    server.start()
    try:
        sb = server.add_pod("web", "shop", pid=sleeper)
        with Watcher(observer(server)) as w:
            _subscribed(server)
            seen = _start(server, sb.id, sleeper)
            server.push(server.event(seen, api_pb2.CONTAINER_STARTED_EVENT))  # the stream is live
            _listed(w, seen, "the event delivered")
            taken = _start(server, sb.id, sleeper)  # its event went to the kubelet's stream
            _listed(w, taken, "a start whose event another reader of the shared stream took")
    finally:
        server.stop()


def test_a_busy_stream_does_not_put_the_lists_off(tmp_path: Path, sleeper: int) -> None:
    """Events every 50 ms on a shared stream (a busy node): the lists still run every relist_seconds, so
    a start another reader took is listed; the wait for the next list is not restarted by each event."""
    server = Runtime(str(tmp_path / "busy.sock"), name="containerd", version="v1.7.20")
    server.start()
    stop = threading.Event()
    try:
        sb = server.add_pod("web", "shop", pid=sleeper)
        with Watcher(observer(server)) as w:
            _subscribed(server)
            chatty = _start(server, sb.id, sleeper)

            def chatter() -> None:
                while not stop.wait(0.05):
                    server.push(server.event(chatty, api_pb2.CONTAINER_STARTED_EVENT))

            threading.Thread(target=chatter, daemon=True).start()
            _listed(w, chatty, "the chatty container's event")
            taken = _start(server, sb.id, sleeper)  # its event went to another reader
            _listed(w, taken, "a start another reader took, while events keep coming")
    finally:
        stop.set()
        server.stop()


def test_a_change_the_backstop_list_finds_and_no_event_follows_is_a_hole(
    tmp_path: Path, sleeper: int
) -> None:
    """A stream of its own (CRI-O 1.30), live: the backstop relist finds a container started with no event
    (dropped: CRI-O's channel full while the agent read slowly). Other events may have gone the same way,
    a container created and removed among them: the sample after is not in sync and the time since the
    list before is a hole (lifecycle_missed_events_total). One whose event comes late is no such loss."""
    from tests.integration.test_lifecycle_namespaces import Sampler

    server = Runtime(str(tmp_path / "drop.sock"))
    server.start()
    try:
        sb = server.add_pod("web", "shop", pid=sleeper)
        with Watcher(observer(server, resync_seconds=0.3, in_flight_seconds=0.5)) as w:
            s = Sampler(w)
            _subscribed(server)
            told = _start(server, sb.id, sleeper)
            server.push(server.event(told, api_pb2.CONTAINER_STARTED_EVENT))  # the stream is live
            _listed(w, told, "the event delivered")
            assert s.state() == "in_sync"
            late = _start(server, sb.id, sleeper)  # found by the backstop list, its event sent late
            _listed(w, late, "the backstop list")
            server.push(server.event(late, api_pb2.CONTAINER_STARTED_EVENT))
            before = time.time_ns()
            dropped = _start(server, sb.id, sleeper)  # no event ever
            _listed(w, dropped, "the backstop list")
            deadline = time.monotonic() + 5
            while w.query(lambda: w.observer.stats.missed_events) < 1:
                assert time.monotonic() < deadline, "a change the stream never reported was taken as watched"
                time.sleep(0.02)
            assert w.query(lambda: w.observer.stats.missed_events) == 1  # the late event was no loss
            assert s.state() == "not_in_sync"
            holes = s.part.runs.containers._holes
            assert holes and holes[0][0] < before
    finally:
        server.stop()


def test_a_stale_backlog_from_before_the_agent_is_no_unread_run(tmp_path: Path, sleeper: int) -> None:
    """containerd 1.7 keeps up to 1000 events while no stream reads them and gives them to the next one:
    the agent's first stream starts with the start of a container removed an hour before the agent ran.
    That time is the watch record's (the agent was not running), not a run the registry missed: no hole
    reaching back an hour, no sample out of sync. A gone container's start stamped after the observer
    began still is one."""
    from tests.integration.test_lifecycle_namespaces import Sampler

    server = Runtime(str(tmp_path / "stale.sock"), name="containerd", version="v1.7.20")
    server.start()
    try:
        sb = server.add_pod("web", "shop", pid=sleeper)
        with Watcher(observer(server)) as w:
            s = Sampler(w)
            _subscribed(server)
            assert s.state() == "in_sync"
            hour_ago = time.time_ns() - 3600 * 1_000_000_000
            stale = api_pb2.ContainerEventResponse(
                container_id=uuid.uuid4().hex,
                container_event_type=api_pb2.CONTAINER_STARTED_EVENT,
                created_at=hour_ago,
            )
            stale.pod_sandbox_status.id = sb.id
            server.push(stale.SerializeToString())
            deadline = time.monotonic() + 5
            while w.query(lambda: w.observer.stats.envelopes) < 1:
                assert time.monotonic() < deadline, "the stale event was handled"
                time.sleep(0.02)
            assert s.state() == "in_sync", "a run from before the agent started was taken as one it missed"
            assert not s.part.runs.containers._holes
            fresh = api_pb2.ContainerEventResponse()
            fresh.CopyFrom(stale)
            fresh.container_id, fresh.created_at = uuid.uuid4().hex, time.time_ns()
            server.push(fresh.SerializeToString())
            while w.query(lambda: w.observer.stats.envelopes) < 2:
                assert time.monotonic() < deadline, "the fresh event was handled"
                time.sleep(0.02)
            assert s.state() == "not_in_sync"  # ran since the observer began, and gone unread
    finally:
        server.stop()


def test_a_container_whose_start_failed_is_no_lost_event(tmp_path: Path, sleeper: int) -> None:
    """A StartContainer that fails (its command not found: a pod in CrashLoopBackOff) leaves the container
    exited, never started, and containerd 2.x sends no event of it
    (``internal/cri/server/container_start.go``: the deferred status update, no
    ``generateAndSendContainerEvent``; STARTED only on success). The backstop list finding it exited is no
    change the stream lost: taken as one, every failed start on a node made a hole of a minute. (CRI-O
    removes such a container at once, also without an event: created and gone, it may as well be a run whose
    events were lost, and stays a loss there.)"""
    server = Runtime(str(tmp_path / "startfail.sock"), name="containerd", version="v2.1.4")
    server.start()
    try:
        sb = server.add_pod("web", "shop", pid=sleeper)
        with Watcher(observer(server, resync_seconds=0.1, in_flight_seconds=0.1)) as w:
            _subscribed(server)
            cid = uuid.uuid4().hex
            server.set_container(sb.id, cid, api_pb2.CONTAINER_CREATED)
            server.push(server.event(cid, api_pb2.CONTAINER_CREATED_EVENT))  # the stream is live
            _listed(w, cid, "the created container")
            relists = w.query(lambda: w.observer.relists)
            server.set_container(
                sb.id, cid, api_pb2.CONTAINER_EXITED, exit_code=128, finished_at=time.time_ns()
            )
            deadline = time.monotonic() + 5
            while w.query(lambda: w.observer.registry.get("", cid).status) != "stopped":
                assert time.monotonic() < deadline, "the backstop list found the failed start"
                time.sleep(0.02)
            while w.query(lambda: w.observer.relists) < relists + 4:  # in_flight passed, lists after it
                assert time.monotonic() < deadline, "the lists went on"
                time.sleep(0.02)
            assert w.query(lambda: w.observer.stats.missed_events) == 0, (
                "a failed start was taken as lost events"
            )
    finally:
        server.stop()
