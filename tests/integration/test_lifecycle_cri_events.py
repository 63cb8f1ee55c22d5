"""The CRI observer's ``GetContainerEvents`` path and hostile replies, against an in-process CRI server.

No runtime on this machine has the CRI event stream (Debian's containerd 1.6
answers it UNIMPLEMENTED; CRI-O is not packaged), so these tests serve our
own ``runtime.v1`` messages (wire/cri) from a small gRPC server on a unix
socket: the lists, verbose statuses, ImageStatus and a ``GetContainerEvents``
stream fed by the test, which can also put raw bytes on it. The container's
pid is a real process started here, so the cgroup the observer reports is
checked against the kernel. docs/lifecycle.md says which promises rest on
this server rather than on a real runtime.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.lifecycle.cri_client import CriClient
from stellaops_runtime.lifecycle.cri_observer import CriObserver
from stellaops_runtime.lifecycle.cri_records import MAX_MAP_ENTRIES, ns_time
from stellaops_runtime.wire.cri import api_pb2
from tests.containerd_harness import Watcher
from tests.integration.test_lifecycle_cri import _cgroup_inode

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
IMAGE = "registry.test/shop/cart:1.2"
SECRET = "s3cr3t-from-the-cri"
NS = 1_000_000_000


class CriServer:
    """A CRI runtime in this process: state the test sets, served over gRPC with our messages."""

    def __init__(self, socket: str, *, events: bool = True) -> None:
        self.socket = socket
        self.sandboxes: dict[str, api_pb2.PodSandbox] = {}
        self.statuses: dict[str, tuple[str, api_pb2.ContainerStatus, dict[str, str]]] = {}
        self.sandbox_info: dict[str, dict[str, str]] = {}
        self.repo_digests = {IMAGE: [f"registry.test/other@{OTHER}", f"registry.test/shop/cart@{DIGEST}"]}
        self._subscribers: list[queue.Queue[bytes | None]] = []
        self._lock = threading.Lock()
        rt: dict[str, grpc.RpcMethodHandler] = {
            "Version": self._unary(api_pb2.VersionRequest, self._version),
            "ListPodSandbox": self._unary(api_pb2.ListPodSandboxRequest, self._list_sandboxes),
            "PodSandboxStatus": self._unary(api_pb2.PodSandboxStatusRequest, self._sandbox_status),
            "ListContainers": self._unary(api_pb2.ListContainersRequest, self._list_containers),
            "ContainerStatus": self._unary(api_pb2.ContainerStatusRequest, self._container_status),
        }
        if events:
            rt["GetContainerEvents"] = grpc.unary_stream_rpc_method_handler(
                self._events,
                request_deserializer=api_pb2.GetEventsRequest.FromString,
                response_serializer=lambda raw: raw,  # the test puts serialized (or garbage) bytes
            )
        images = {"ImageStatus": self._unary(api_pb2.ImageStatusRequest, self._image_status)}
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler("runtime.v1.RuntimeService", rt),
                grpc.method_handlers_generic_handler("runtime.v1.ImageService", images),
            )
        )
        self.server.add_insecure_port(f"unix://{socket}")

    @staticmethod
    def _unary(request: type, fn: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=request.FromString, response_serializer=lambda m: m.SerializeToString()
        )

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.end_streams()
        self.server.stop(0).wait()

    # -- state the test sets ------------------------------------------------------

    def add_pod(self, name: str, namespace: str, pid: int) -> api_pb2.PodSandbox:
        sid = uuid.uuid4().hex
        meta = api_pb2.PodSandboxMetadata(name=name, namespace=namespace, uid=str(uuid.uuid4()))
        sb = api_pb2.PodSandbox(id=sid, metadata=meta, state=api_pb2.SANDBOX_READY, created_at=time.time_ns())
        sb.labels["app"] = name
        sb.annotations["stellaops.io/observe-level"] = "off"
        with self._lock:
            self.sandboxes[sid] = sb
            self.sandbox_info[sid] = {"info": json.dumps({"pid": pid})}
        return sb

    def set_container(
        self, sandbox: str, cid: str, state: int, *, info: dict[str, str] | None = None, **fields: Any
    ) -> api_pb2.ContainerStatus:
        with self._lock:
            old = self.statuses.get(cid)
            st = api_pb2.ContainerStatus()
            if old is not None:
                st.CopyFrom(old[1])
            else:
                st.id = cid
                st.metadata.name = "cart"
                st.created_at = time.time_ns()
                st.image.image = IMAGE
                st.image_ref = "sha256:" + "99" * 32  # the image id: not a manifest digest
            st.state = state
            for k, v in fields.items():
                if k == "labels":
                    st.labels.update(v)
                else:
                    setattr(st, k, v)
            self.statuses[cid] = (sandbox, st, info if info is not None else (old[2] if old else {}))
            return st

    def remove_container(self, cid: str) -> None:
        with self._lock:
            self.statuses.pop(cid, None)

    def event(self, cid: str, kind: int, sandbox: str = "") -> bytes:
        """A serialized ContainerEventResponse as a runtime sends it (the pod's statuses included)."""
        with self._lock:
            ev = api_pb2.ContainerEventResponse(
                container_id=cid, container_event_type=kind, created_at=time.time_ns()
            )
            sid = sandbox or (self.statuses[cid][0] if cid in self.statuses else "")
            sb = self.sandboxes.get(sid)
            if sb is not None:
                ev.pod_sandbox_status.id = sb.id
                ev.pod_sandbox_status.metadata.CopyFrom(sb.metadata)
                ev.pod_sandbox_status.state = sb.state
                ev.pod_sandbox_status.labels.update(sb.labels)
                ev.pod_sandbox_status.annotations.update(sb.annotations)
            for owner, st, _ in self.statuses.values():
                if owner and owner == sid:
                    ev.containers_statuses.append(st)
            return ev.SerializeToString()

    def push(self, raw: bytes) -> None:
        with self._lock:
            for q in self._subscribers:
                q.put(raw)

    def end_streams(self) -> None:
        with self._lock:
            for q in self._subscribers:
                q.put(None)

    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    # -- the service -----------------------------------------------------------------

    def _version(self, req: api_pb2.VersionRequest, ctx: grpc.ServicerContext) -> api_pb2.VersionResponse:
        # CRI-O from 1.28 sends every event to every stream, as ``push`` does (lifecycle/cri_stream.py)
        return api_pb2.VersionResponse(
            version="0.1.0", runtime_name="cri-o", runtime_version="1.30.0", runtime_api_version="v1"
        )

    def _list_sandboxes(self, req: Any, ctx: grpc.ServicerContext) -> api_pb2.ListPodSandboxResponse:
        with self._lock:
            return api_pb2.ListPodSandboxResponse(items=list(self.sandboxes.values()))

    def _sandbox_status(self, req: Any, ctx: grpc.ServicerContext) -> api_pb2.PodSandboxStatusResponse:
        with self._lock:
            sb = self.sandboxes.get(req.pod_sandbox_id)
            if sb is None:
                ctx.abort(grpc.StatusCode.NOT_FOUND, "no such sandbox")
            st = api_pb2.PodSandboxStatus(
                id=sb.id, metadata=sb.metadata, state=sb.state, created_at=sb.created_at
            )
            return api_pb2.PodSandboxStatusResponse(status=st, info=self.sandbox_info[sb.id])

    def _list_containers(self, req: Any, ctx: grpc.ServicerContext) -> api_pb2.ListContainersResponse:
        with self._lock:
            out = [
                api_pb2.Container(id=st.id or cid, pod_sandbox_id=owner, state=st.state)
                for cid, (owner, st, _) in self.statuses.items()
            ]
            return api_pb2.ListContainersResponse(containers=out)

    def _container_status(self, req: Any, ctx: grpc.ServicerContext) -> api_pb2.ContainerStatusResponse:
        with self._lock:
            got = self.statuses.get(req.container_id)
            if got is None:
                ctx.abort(grpc.StatusCode.NOT_FOUND, "no such container")
            return api_pb2.ContainerStatusResponse(status=got[1], info=got[2])

    def _image_status(self, req: Any, ctx: grpc.ServicerContext) -> api_pb2.ImageStatusResponse:
        digests = self.repo_digests.get(req.image.image)
        if digests is None:  # asked by image id: the one image we have
            digests = self.repo_digests[IMAGE]
        return api_pb2.ImageStatusResponse(
            image=api_pb2.Image(id="sha256:" + "99" * 32, repo_digests=digests)
        )

    def _events(self, req: Any, ctx: grpc.ServicerContext) -> Iterator[bytes]:
        q: queue.Queue[bytes | None] = queue.Queue()
        with self._lock:
            self._subscribers.append(q)
        try:
            while ctx.is_active():
                try:
                    item = q.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is None:
                    return
                yield item
        finally:
            with self._lock:
                self._subscribers.remove(q)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CriServer]:
    s = CriServer(str(tmp_path / "cri.sock"))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def sleeper() -> Iterator[int]:
    """A real process to stand for the container's init process (its cgroup is checked)."""
    p = subprocess.Popen(["sleep", "120"])
    yield p.pid
    p.kill()
    p.wait()


def observer(server: CriServer, **kw: float) -> CriObserver:
    kw = {
        "relist_seconds": 0.2,
        "resync_seconds": 600.0,
        "reconnect_initial": 0.1,
        "reconnect_max": 0.3,
        **kw,
    }
    return CriObserver(CriClient(server.socket, timeout=3.0), **kw)  # type: ignore[arg-type]


def _info(pid: int, env: list[str]) -> dict[str, str]:
    spec = {"process": {"env": env}, "linux": {"cgroupsPath": "/kubepods/pod1/c1"}}
    return {"info": json.dumps({"pid": pid, "runtimeSpec": spec})}


def _subscribed(server: CriServer) -> None:
    deadline = time.monotonic() + 10
    while server.subscribers() == 0:
        assert time.monotonic() < deadline, "the observer never opened GetContainerEvents"
        time.sleep(0.02)


def _kinds(w: Watcher, cid: str) -> list[T]:
    return [e.event_type for e in list(w.events) if e.container_id == cid]


def test_events_path_reports_each_transition_once(server: CriServer, sleeper: int) -> None:
    sb = server.add_pod("cart-7f9c", "shop", pid=sleeper)
    with Watcher(observer(server)) as w:
        _subscribed(server)
        cid = uuid.uuid4().hex
        forged = {"io.kubernetes.pod.name": "forged", "io.kubernetes.pod.namespace": "kube-system"}
        server.set_container(
            sb.id, cid, api_pb2.CONTAINER_CREATED, info=_info(0, [f"DB_PASSWORD={SECRET}"]), labels=forged
        )
        server.push(server.event(cid, api_pb2.CONTAINER_CREATED_EVENT))
        create = w.wait_for(lambda e: e.container_id == cid and e.event_type == T.CREATE)
        # The sandbox's metadata names the pod, whatever the container's own labels claim.
        assert (create.pod_namespace, create.pod_name, create.container_name) == ("shop", "cart-7f9c", "cart")
        assert create.runtime == "cri" and create.namespace == ""
        assert create.image_ref == IMAGE and create.image_digest == DIGEST  # the image's own repository
        assert "DB_PASSWORD=[REDACTED]" in create.env_vars and SECRET not in repr(create.to_json())

        started = time.time_ns()
        server.set_container(
            sb.id, cid, api_pb2.CONTAINER_RUNNING, info=_info(sleeper, ["MODE=x"]), started_at=started
        )
        server.push(server.event(cid, api_pb2.CONTAINER_STARTED_EVENT))
        server.push(server.event(cid, api_pb2.CONTAINER_STARTED_EVENT))  # a repeat changes nothing
        start = w.wait_for(lambda e: e.container_id == cid and e.event_type == T.START)
        path, inode = _cgroup_inode(sleeper)
        assert (start.pid, start.cgroup_path, start.cgroup_id) == (sleeper, path, inode)
        assert start.started_at == ns_time(started) and start.timestamp == start.started_at
        rec = w.query(lambda: w.observer.by_cgroup(inode))
        assert rec is not None and rec.container_id in (cid, sb.id)

        server.set_container(
            sb.id,
            cid,
            api_pb2.CONTAINER_EXITED,
            finished_at=time.time_ns(),
            exit_code=137,
            reason="OOMKilled",
        )
        server.push(server.event(cid, api_pb2.CONTAINER_STOPPED_EVENT))
        die = w.wait_for(lambda e: e.container_id == cid and e.event_type == T.DIE)
        assert die.exit_code == 137 and die.oom_killed and die.pid == sleeper
        server.remove_container(cid)
        server.push(server.event(cid, api_pb2.CONTAINER_DELETED_EVENT, sandbox=sb.id))
        w.wait_for(lambda e: e.container_id == cid and e.event_type == T.DELETE)
        assert _kinds(w, cid) == [T.CREATE, T.START, T.DIE, T.STOP, T.DELETE]
        assert w.observer.mode == "events" and w.observer.runtime_name == "cri-o" and w.observer.live
        # everything after the lists came from the stream: the two of the sync (SETTLE_SECONDS) and, when
        # the first message came later, one then (cri_stream.py)
        assert w.observer.relists in (2, 3)
        sandbox = w.query(lambda: w.observer.registry.get("", sb.id))
        assert sandbox is not None and sandbox.is_sandbox and sandbox.pid == sleeper
        assert sandbox.pod_annotations == {"stellaops.io/observe-level": "off"}


def test_hostile_replies_are_counted_never_fatal(
    server: CriServer, sleeper: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="stellaops_runtime.lifecycle.cri_observer")
    sb = server.add_pod("web", "shop", pid=sleeper)
    with Watcher(observer(server)) as w:
        _subscribed(server)
        stats = w.observer.stats
        server.push(b"\xff\xff\xff\x00 not a protobuf")
        server.push(
            api_pb2.ContainerEventResponse(container_id="x", container_event_type=42).SerializeToString()
        )
        server.push(api_pb2.ContainerEventResponse(container_id="").SerializeToString())
        deadline = time.monotonic() + 10
        while w.query(lambda: stats.envelopes) < 1:  # handled after the list the first message brings
            assert time.monotonic() < deadline, "the first message was handled"
            time.sleep(0.02)

        # Verbose info of the wrong shape, huge and NUL-carrying labels, nonsense times: still a CREATE.
        bad = uuid.uuid4().hex
        labels = {f"k{i}": "v" for i in range(MAX_MAP_ENTRIES + 100)}
        labels["big"] = "x" * (100 << 10)
        labels["nul"] = "a\x00b"
        server.set_container(
            sb.id,
            bad,
            api_pb2.CONTAINER_CREATED,
            info={"info": json.dumps({"pid": "1; rm -rf /", "runtimeSpec": [1, 2]})},
            labels=labels,
            created_at=-5,
        )
        server.push(server.event(bad, api_pb2.CONTAINER_CREATED_EVENT))
        ev = w.wait_for(lambda e: e.container_id == bad and e.event_type == T.CREATE)
        assert ev.pid == 0 and ev.env_vars == () and len(ev.labels) <= MAX_MAP_ENTRIES + 4
        assert "big" not in ev.labels and "nul" not in ev.labels and ev.pod_name == "web"
        assert ev.timestamp is not None  # the runtime's nonsense time replaced by when it was seen

        for info in ({"info": "{not json"}, {}, {"info": json.dumps({"pid": 2**40})}):
            odd = uuid.uuid4().hex
            server.set_container(sb.id, odd, api_pb2.CONTAINER_RUNNING, info=info, started_at=time.time_ns())
            server.push(server.event(odd, api_pb2.CONTAINER_STARTED_EVENT))
            start = w.wait_for(lambda e, odd=odd: e.container_id == odd and e.event_type == T.START)
            assert start.pid == 0 and start.cgroup_id == 0

        # A status that names another container is not believed.
        liar = uuid.uuid4().hex
        server.set_container(sb.id, liar, api_pb2.CONTAINER_CREATED, id="someone-else")
        server.push(server.event(liar, api_pb2.CONTAINER_CREATED_EVENT))

        good = uuid.uuid4().hex
        server.set_container(sb.id, good, api_pb2.CONTAINER_CREATED, info=_info(0, []))
        server.push(server.event(good, api_pb2.CONTAINER_CREATED_EVENT))
        w.wait_for(lambda e: e.container_id == good and e.event_type == T.CREATE)
        assert _kinds(w, liar) == [] and _kinds(w, "x") == []
        assert stats.decode_failures["envelope"] == 1
        assert stats.decode_failures["field"] >= 3  # unknown type, no id, a status of another id
        assert stats.spec_problems == 4  # the bad labels and pid, bad JSON, no info, an impossible pid
        assert stats.stream_errors == 0 and stats.connects == 1
    logged = caplog.text
    assert "skipped a CRI container event that does not decode" in logged
    assert "skipped a CRI container event without a container id or a known type" in logged
    assert f"CRI container {bad}: 102 labels over the size limits or with NUL dropped" in logged
    assert "pid is not a process id" in logged and "verbose info is not JSON" in logged
    assert "names container 'someone-else'; skipped" in logged


def test_a_stream_that_ends_is_reopened_and_what_changed_is_announced(
    server: CriServer, sleeper: int
) -> None:
    sb = server.add_pod("api", "shop", pid=sleeper)
    cid = uuid.uuid4().hex
    server.set_container(
        sb.id, cid, api_pb2.CONTAINER_RUNNING, info=_info(sleeper, []), started_at=time.time_ns()
    )
    with Watcher(observer(server, resync_seconds=0.3)) as w:
        _subscribed(server)
        assert _kinds(w, cid) == []  # listed at the first sync, not announced
        # a live stream (its first message came): one that ends OK and empty before it is CRI-O's
        # "no stream" (test_cri_stream_trust.py), relisted, not reopened
        server.push(server.event(cid, api_pb2.CONTAINER_STARTED_EVENT))
        deadline = time.monotonic() + 10
        while not w.query(lambda: w.observer.live):
            assert time.monotonic() < deadline, "the stream never went live"
            time.sleep(0.02)
        server.set_container(sb.id, cid, api_pb2.CONTAINER_EXITED, finished_at=time.time_ns(), exit_code=2)
        server.end_streams()  # the runtime closes the stream; the exit is on no stream
        die = w.wait_for(lambda e: e.container_id == cid and e.event_type == T.DIE)
        assert die.exit_code == 2 and die.pid == sleeper
        _subscribed(server)
        # Events and the backstop relist both see the next container: it is announced once.
        new = uuid.uuid4().hex
        server.set_container(
            sb.id, new, api_pb2.CONTAINER_RUNNING, info=_info(sleeper, []), started_at=time.time_ns()
        )
        server.push(server.event(new, api_pb2.CONTAINER_CREATED_EVENT))
        server.push(server.event(new, api_pb2.CONTAINER_STARTED_EVENT))
        w.wait_for(lambda e: e.container_id == new and e.event_type == T.START)
        time.sleep(1.0)  # three backstop relists
        assert _kinds(w, new) == [T.CREATE, T.START] and _kinds(w, cid) == [T.DIE, T.STOP]
        assert w.observer.stats.stream_errors == 1 and w.observer.stats.reconnects == 1
        assert w.observer.relists >= 3  # the first list, the one after the reconnect, a backstop


def test_unimplemented_events_fall_back_to_relisting(tmp_path: Path, sleeper: int) -> None:
    server = CriServer(str(tmp_path / "old.sock"), events=False)
    server.start()
    try:
        sb = server.add_pod("old", "shop", pid=sleeper)
        with Watcher(observer(server)) as w:
            cid = uuid.uuid4().hex
            server.set_container(sb.id, cid, api_pb2.CONTAINER_RUNNING, info=_info(sleeper, []), started_at=1)
            start = w.wait_for(lambda e: e.container_id == cid and e.event_type == T.START)
            assert start.pid == sleeper and w.observer.mode == "relist"
            assert w.observer.stats.stream_errors == 0
    finally:
        server.stop()


def test_an_absent_or_silent_socket_is_retried_until_a_runtime_answers(tmp_path: Path) -> None:
    """No socket, then a socket that accepts and never speaks, then a runtime: counted, retried, synced."""
    path = str(tmp_path / "late.sock")
    obs = CriObserver(CriClient(path, timeout=0.3), reconnect_initial=0.05, reconnect_max=0.2)
    w = Watcher(obs)
    w._thread.start()  # not __enter__: it waits for a sync that cannot come yet
    silent = socket.socket(socket.AF_UNIX)
    server: CriServer | None = None
    try:

        def errors() -> int:
            return int(w.query(lambda: obs.stats.stream_errors))

        deadline = time.monotonic() + 10
        while errors() < 2:  # absent
            assert time.monotonic() < deadline, obs.stats
            time.sleep(0.02)
        silent.bind(path)
        silent.listen(8)
        seen = errors()
        while errors() < seen + 2:  # accepts, never answers: each attempt times out
            assert time.monotonic() < deadline + 10, obs.stats
            time.sleep(0.02)
        assert "within 0.3s" in w.query(lambda: obs.stats.last_error)
        silent.close()
        os.unlink(path)
        server = CriServer(path)
        server.start()
        w.wait_synced()
        assert w.query(lambda: obs.stats.connected) and obs.mode == "events"
    finally:
        w.close()
        silent.close()
        if server is not None:
            server.stop()


class _LateSubscription(CriServer):
    """A runtime that registers the event stream only after the observer listed (the request was
    slow to arrive), a container started in between, and then sends an event of another one."""

    def __init__(self, socket: str, gap: Any) -> None:
        super().__init__(socket)
        self.gap = gap
        self.listed = threading.Event()
        self.done = threading.Event()

    def _list_containers(self, req: Any, ctx: grpc.ServicerContext) -> api_pb2.ListContainersResponse:
        out = super()._list_containers(req, ctx)
        self.listed.set()
        return out

    def _events(self, req: Any, ctx: grpc.ServicerContext) -> Iterator[bytes]:
        if not self.done.is_set():
            self.listed.wait(10)
            self.gap()
        stream = super()._events(req, ctx)
        self.done.set()
        return stream


def test_a_container_started_before_the_stream_is_registered_is_listed(tmp_path: Path, sleeper: int) -> None:
    inside, other = uuid.uuid4().hex, uuid.uuid4().hex
    sandbox: list[api_pb2.PodSandbox] = []

    def gap() -> None:
        server.set_container(
            sandbox[0].id,
            inside,
            api_pb2.CONTAINER_RUNNING,
            info=_info(sleeper, []),
            started_at=time.time_ns(),
        )

    server = _LateSubscription(str(tmp_path / "late.sock"), gap)
    server.start()
    try:
        sandbox.append(server.add_pod("late", "shop", pid=sleeper))
        server.set_container(sandbox[0].id, other, api_pb2.CONTAINER_CREATED, info=_info(0, []))
        with Watcher(observer(server)) as w:
            assert server.done.wait(10)
            _subscribed(server)
            server.push(server.event(other, api_pb2.CONTAINER_CREATED_EVENT))  # the stream is live
            deadline = time.monotonic() + 10
            while w.query(lambda: w.observer.stats.envelopes) < 1:
                assert time.monotonic() < deadline, "the event was handled"
                time.sleep(0.02)
            rec = w.query(lambda: w.observer.registry.get("", inside))
            assert rec is not None, "a container started before the runtime registered the stream"
            assert rec.status == "running" and rec.pid == sleeper
    finally:
        server.stop()


class _Vanishing(CriServer):
    """A runtime whose listed container is gone when its status is asked (removed in between)."""

    def __init__(self, socket: str, *, events: bool) -> None:
        super().__init__(socket, events=events)
        self.vanished: set[str] = set()

    def _container_status(self, req: Any, ctx: grpc.ServicerContext) -> api_pb2.ContainerStatusResponse:
        if req.container_id in self.vanished:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no such container")
        return super()._container_status(req, ctx)


@pytest.mark.parametrize("events", [False, True])
def test_a_container_gone_before_its_status_was_read_keeps_the_sample_out_of_sync(
    tmp_path: Path, sleeper: int, events: bool
) -> None:
    """It ran (listed running, or its start event came), but the runtime had removed it when its
    status was asked: no record, no run. The sample after is not in sync, never in_sync as if
    nothing ran (test_lifecycle_namespaces for containerd)."""
    from tests.integration.test_lifecycle_namespaces import Sampler

    server = _Vanishing(str(tmp_path / "v.sock"), events=events)
    server.start()
    try:
        sb = server.add_pod("brief", "shop", pid=sleeper)
        with Watcher(observer(server)) as w:
            s = Sampler(w)
            assert s.state() == "in_sync"
            cid = uuid.uuid4().hex
            server.vanished.add(cid)
            server.set_container(sb.id, cid, api_pb2.CONTAINER_RUNNING, started_at=time.time_ns())
            seen = w.query(lambda: (w.observer.relists, w.observer.stats.envelopes))
            if events:
                _subscribed(server)
                server.push(server.event(cid, api_pb2.CONTAINER_STARTED_EVENT))
                ready = lambda: w.query(lambda: w.observer.stats.envelopes) > seen[1]  # noqa: E731
            else:
                ready = lambda: w.query(lambda: w.observer.relists) > seen[0] + 1  # noqa: E731
            deadline = time.monotonic() + 10
            while not ready():
                assert time.monotonic() < deadline, "the observer looked at the container"
                time.sleep(0.02)
            assert w.query(lambda: w.observer.registry.get("", cid)) is None
            assert s.state() == "not_in_sync"
            server.remove_container(cid)
            if not events:  # relisting: gone from the list at the next relist
                relists = w.query(lambda: w.observer.relists)
                while w.query(lambda: w.observer.relists) <= relists + 1:
                    time.sleep(0.02)
                # a relist between the sample above and the removal counted it again: the sample
                # after that one is not in sync either
                s.state()
            assert s.state() == "in_sync"
    finally:
        server.stop()


class _BrokenFirstStream(CriServer):
    """A runtime whose first GetContainerEvents fails (UNAVAILABLE) once the observer listed."""

    def __init__(self, socket: str) -> None:
        super().__init__(socket)
        self.listed = threading.Event()
        self.failed = threading.Event()

    def _list_containers(self, req: Any, ctx: grpc.ServicerContext) -> api_pb2.ListContainersResponse:
        out = super()._list_containers(req, ctx)
        self.listed.set()
        return out

    def _events(self, req: Any, ctx: grpc.ServicerContext) -> Iterator[bytes]:
        if not self.failed.is_set():
            self.listed.wait(10)
            self.failed.set()
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "the event service is restarting")
        return super()._events(req, ctx)


def test_a_stream_that_failed_before_the_second_list_is_not_in_sync(tmp_path: Path) -> None:
    """The stream failed before it was seen live: the second list (SETTLE_SECONDS) was not read, so
    what started between the first list and now is on neither; that connection must not say it is
    in sync (a sample then would rest on one list alone), only the next one, with a stream."""
    server = _BrokenFirstStream(str(tmp_path / "broken.sock"))
    server.start()
    syncs: list[int] = []
    try:
        obs = observer(server)
        obs.on_sync = lambda _registry: syncs.append(obs.relists)
        with Watcher(obs) as w:
            _subscribed(server)
            assert server.failed.is_set()
            assert w.query(lambda: obs.stats.stream_errors) == 1
            # the failed connection's one list, then the next connection's two: only then in sync
            assert syncs[0] == 3, f"in sync on a connection whose stream had failed: {syncs}"
    finally:
        server.stop()
