"""Hostile input and a vanishing socket, against a real containerd.

Anyone who can reach containerd's socket can publish on its event bus, so the
observer must survive what a hostile or broken publisher sends: bytes that are
no protobuf, a payload that names a type its bytes do not fit, fields of the
wrong wire type, invalid UTF-8, unknown payload types, events for containers
that do not exist. Each is counted and skipped, and the next real event is
still reported. When containerd dies mid-stream the observer reconnects, and
what changed while it was away (a container started, another removed) is in
its registry after the rebuild from containerd's lists.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stellaops_runtime.contracts.lifecycle import LifecycleEventType as T
from stellaops_runtime.lifecycle.containerd_client import ContainerdClient
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from stellaops_runtime.wire.containerd import events_pb2
from tests.containerd_harness import Containerd, Image, Watcher, build_image, running


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


@pytest.fixture(scope="module")
def image(ctd: Containerd) -> Image:
    img = build_image(ctd.dir)
    ctd.import_image(img)
    return img


def _name() -> str:
    return f"h-{uuid.uuid4().hex[:8]}"


def _publish(ctd: Containerd, topic: str, type_url: str, value: bytes) -> None:
    async def go() -> None:
        client = ContainerdClient(ctd.address, namespace=ctd.namespace, timeout=5.0)
        try:
            await client.publish(topic, type_url, value)
        finally:
            await client.close()

    asyncio.run(go())


HOSTILE = [
    # (topic, type URL, payload, the counter that must count it)
    ("/tasks/start", "containerd.events.TaskStart", b"\xff\xff\xff\xff", "payload"),  # not protobuf
    ("/tasks/start", "containerd.events.TaskStart", b"\x0a\x05ab", "payload"),  # truncated string
    ("/tasks/start", "containerd.events.TaskStart", b"\x0a\x02\xc3\x28", "payload"),  # invalid UTF-8 id
    ("/tasks/exit", "containerd.events.TaskExit", b"\x0a\x01x\x1a\x02hi", "field"),  # pid as bytes
    (
        "/tasks/start",
        "containerd.events.TaskStart",
        b"\x0a\x03\x00\x00\x00\x10\x01",
        "ignored",
    ),  # NULs, no such id
    ("/tasks/wobble", "containerd.events.Wobble", b"\x01\x02", "ignored"),  # unknown type
    ("/tasks/start", "types.example.com/containerd.events.TaskOOM", b"\x0a" + b"\x7f" * 1, "payload"),
    ("/containers/create", "containerd.events.ContainerCreate", b"\x0a\x7f" + b"z" * 10, "payload"),
    (
        "/tasks/start",
        "containerd.events.TaskStart",
        b"\x0a\x80\x80\x80\x80\x80\x80",
        "payload",
    ),  # huge length
]


def test_hostile_payloads_are_counted_and_skipped(ctd: Containerd, image: Image) -> None:
    obs = ContainerdObserver(ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=2.0))
    with Watcher(obs) as w:
        for topic, url, value, _ in HOSTILE:
            _publish(ctd, topic, url, value)
        # One megabyte of garbage claiming to be an exit.
        _publish(ctd, "/tasks/exit", "containerd.events.TaskExit", b"\xfe" * (1 << 20))
        # A well-formed start for a container containerd does not have: nothing to report.
        _publish(
            ctd,
            "/tasks/start",
            "containerd.events.TaskStart",
            events_pb2.TaskStart(container_id="ghost", pid=1).SerializeToString(),
        )
        name = _name()
        ctd.ctr("run", "-d", image.ref, name)
        start = w.wait_for(lambda e: e.event_type == T.START and e.container_id == name)
        assert start.pid > 0
        stats = obs.stats
        want_failures = {"payload": 0, "field": 0}
        for *_, reason in HOSTILE:
            if reason in want_failures:
                want_failures[reason] += 1
        want_failures["payload"] += 1  # the megabyte
        assert stats.decode_failures["payload"] == want_failures["payload"]
        assert stats.decode_failures["field"] == want_failures["field"]
        assert stats.ignored.get("containerd.events.Wobble") == 1
        assert not any(e.container_id in ("ghost", "x") for e in w.events)
        assert stats.stream_errors == 0 and stats.reconnects == 0  # no crash, no reconnect
        text = generate_latest(_registry(obs)).decode()
        n = want_failures["payload"]
        assert f'stellaops_runtime_lifecycle_decode_failures_total{{reason="payload"}} {n}.0' in text
        assert 'stellaops_runtime_lifecycle_events_total{type="start"}' in text
        ctd.remove_all()


def _registry(obs: ContainerdObserver) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(obs.collector())  # type: ignore[arg-type]
    return reg


def test_socket_vanishing_reconnects_and_rebuilds(ctd: Containerd, image: Image) -> None:
    kept, removed, added = _name(), _name(), _name()
    ctd.ctr("run", "-d", image.ref, kept)
    ctd.ctr("run", "-d", image.ref, removed)
    obs = ContainerdObserver(
        ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=1.0),
        reconnect_initial=0.2,
        reconnect_max=1.0,
    )
    try:
        with Watcher(obs) as w:
            assert w.query(lambda: sorted(r.container_id for r in obs.registry.records())) == sorted(
                [kept, removed]
            )
            removed_cg = w.query(lambda: obs.registry.get("k8s.io", removed)).cgroup_id
            assert removed_cg and w.query(lambda: obs.by_cgroup(removed_cg)) is not None

            # containerd dies; while the observer's socket is gone, containerd comes back on
            # another socket where a container is removed and another started (events it cannot see).
            ctd.kill()
            deadline = time.monotonic() + 10
            while w.query(lambda: obs.stats.connected):
                assert time.monotonic() < deadline, "observer did not notice containerd going away"
                time.sleep(0.05)
            ctd.start(address=str(ctd.dir / "elsewhere.sock"))
            ctd.ctr("task", "kill", "-s", "KILL", removed)
            for _ in range(100):
                if ctd.ctr_status("task", "rm", removed) == 0:
                    break
                time.sleep(0.05)
            ctd.ctr("container", "rm", removed)
            ctd.ctr("run", "-d", image.ref, added)
            added_pid = ctd.task_pid(added)
            ctd.kill()
            ctd.start()  # back on the socket the observer knows

            w.wait_synced(timeout=30)
            ids = w.query(lambda: sorted(r.container_id for r in obs.registry.records()))
            assert ids == sorted([kept, added])
            rec = w.query(lambda: obs.registry.get("k8s.io", added))
            assert rec.pid == added_pid and rec.status == "running" and rec.cgroup_id
            assert w.query(lambda: obs.by_cgroup(rec.cgroup_id)).container_id == added
            assert w.query(lambda: obs.by_cgroup(removed_cg)) is None
            assert obs.stats.reconnects >= 1 and obs.stats.stream_errors >= 1
            assert obs.stats.resyncs >= 2 and obs.stats.resync_removed == 1

            # And the new stream works: events after the reconnect are reported. (Not from
            # ``added``: its shim publishes to the socket it was started on, which is gone.)
            ctd.ctr("task", "kill", "-s", "KILL", kept)
            die = w.wait_for(lambda e: e.event_type == T.DIE and e.container_id == kept)
            assert die.exit_code == 137
    finally:
        if ctd.proc is None:
            ctd.start()
        ctd.remove_all()


def test_an_exception_of_the_consumers_callback_ends_the_stream(ctd: Containerd) -> None:
    """``on_sync`` raising is the consumer's error: ``events`` raises it, no retry as a stream error."""

    def broken(_registry: object) -> None:
        raise BrokenPipeError("reader gone")

    obs = ContainerdObserver(
        ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=2.0), on_sync=broken
    )

    async def consume() -> None:
        async for _ in obs.events():
            pass

    with pytest.raises(BrokenPipeError, match="reader gone"):
        asyncio.run(asyncio.wait_for(consume(), 20))
    assert obs.stats.stream_errors == 0 and obs.stats.connects == 1
