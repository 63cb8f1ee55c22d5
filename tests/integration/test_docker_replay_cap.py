"""Docker replays at most its last 256 events: a subscription registered after more is a hole, not silence.

The Docker observer asks the Engine to replay its events from the instant
before the stream was requested (``since``). The Engine keeps only its last
256 events of every type for that (moby ``daemon/events/events.go``). Here a
real private dockerd gets the observer's stream request only after a
container ran and was removed and 300 image tag events and 300 volume
events followed: the replay holds the last of them alone (a stream filtered
to containers and images would get only the tags among them, too few to
show the loss). Neither the list nor the stream names that container,
so the agent must not call the time in sync (docs/lifecycle.md "Subscribe,
then list").
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import AsyncGenerator, Iterator

import pytest

from stellaops_runtime.lifecycle.docker_client import DockerClient
from stellaops_runtime.lifecycle.docker_observer import DockerObserver
from tests.containerd_harness import Watcher
from tests.docker_harness import Dockerd, Registry, running_engine

TAGS = 300  # more than the Engine's 256 buffered events


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[Dockerd, Registry]]:
    yield from running_engine()


def _post(sock_path: str, path: str, method: str = "POST", body: bytes = b"") -> int:
    """One Engine API request (``body``: JSON); its HTTP status."""
    head = f"{method} /v1.41{path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(sock_path)
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return int(data.split(b" ", 2)[1])


class HeldDocker(DockerClient):
    """The real Engine; the event stream is requested only once ``released`` (after the lists)."""

    def __init__(self, address: str) -> None:
        super().__init__(address, timeout=10.0)
        self.listed = threading.Event()
        self.released = threading.Event()

    async def get_json(self, path: str) -> object:
        out = await super().get_json(path)
        if path.startswith("/containers/json"):
            self.listed.set()
        return out

    async def events(
        self, filters: dict[str, list[str]], *, since_ns: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        await asyncio.to_thread(self.released.wait, 60)
        async for line in super().events(filters, since_ns=since_ns):
            yield line


def test_a_run_lost_past_the_replay_buffer_is_a_hole(engine: tuple[Dockerd, Registry]) -> None:
    from tests.integration.test_lifecycle_namespaces import Sampler

    d, reg = engine
    d.docker("pull", reg.ref)
    repo = reg.ref.rsplit(":", 1)[0]
    client = HeldDocker(d.socket)
    try:
        with Watcher(DockerObserver(client)) as w:
            assert client.listed.wait(30)
            s = Sampler(w)
            before_run = time.time_ns()
            d.docker("run", "--rm", "--network", "none", reg.ref, "exit", "0")
            for i in range(TAGS):
                q = urllib.parse.urlencode({"repo": f"{repo}-replay", "tag": f"t{i}"})
                assert _post(d.socket, f"/images/{urllib.parse.quote(reg.ref, safe='')}/tag?{q}") == 201
                # and a volume's event, which a stream filtered to containers and images never gets: the
                # Engine replays from its ring of every type, so the check needs the stream unfiltered
                assert _post(d.socket, "/volumes/create", body=f'{{"Name": "replay-v{i}"}}'.encode()) == 201
            client.released.set()
            deadline = time.monotonic() + 30
            while w.query(lambda: w.observer.stats.envelopes) < 256:
                assert time.monotonic() < deadline, "no replay of 256 events (a stream filtered by type?)"
                time.sleep(0.05)
            assert not w.query(lambda: w.observer.registry.records())  # the run: named by nothing
            # The run may be among the events the Engine no longer had: the sample is not in sync and
            # the time since the stream was asked for (before the run) is a hole.
            assert s.state() == "not_in_sync", "a run lost past Docker's 256-event replay was called watched"
            holes = s.part.runs.containers._holes
            assert holes and holes[0][0] < before_run
            assert w.query(lambda: w.observer.stats.missed_events) == 1
    finally:
        client.released.set()
        for i in range(TAGS):
            _post(d.socket, f"/images/{urllib.parse.quote(f'{repo}-replay:t{i}', safe='')}", "DELETE")
            _post(d.socket, f"/volumes/replay-v{i}", "DELETE")


class DroppingDocker(DockerClient):
    """The real Engine, but the events of containers named in ``drop`` never reach the observer: what the
    Engine does to a subscriber that has not taken an event within 100 ms (moby pkg/pubsub sendTopic)."""

    def __init__(self, address: str) -> None:
        super().__init__(address, timeout=10.0)
        self.drop: set[str] = set()

    async def events(
        self, filters: dict[str, list[str]], *, since_ns: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        async for line in super().events(filters, since_ns=since_ns):
            if not any(f'"name":"{name}"'.encode() in line for name in self.drop):
                yield line


def test_a_run_whose_events_the_engine_skipped_is_listed_and_a_hole(engine: tuple[Dockerd, Registry]) -> None:
    """The Engine skipped a slow subscriber's events of a container's start: the backstop list finds it
    running, no event follows, so it enters the registry and the time since the list before is a hole;
    before, it ran unknown while the agent said in_sync."""
    from tests.integration.test_lifecycle_namespaces import Sampler

    d, reg = engine
    client = DroppingDocker(d.socket)
    name = f"skip-{uuid.uuid4().hex[:8]}"
    client.drop.add(name)
    rebuilt: list[int] = []
    obs = DockerObserver(client, resync_seconds=0.3, in_flight_seconds=0.3)
    obs.on_sync = lambda registry: rebuilt.append(len(registry))  # the agent's lookup refresh
    with Watcher(obs) as w:
        s = Sampler(w)
        assert s.state() == "in_sync"
        before = time.time_ns()
        cid = d.docker("run", "-d", "--network", "none", "--name", name, reg.ref).strip()
        try:
            deadline = time.monotonic() + 10
            while w.query(lambda: obs.registry.get("", cid)) is None:
                assert time.monotonic() < deadline, (
                    "a running container the stream never reported stayed unknown"
                )
                time.sleep(0.05)
            while w.query(lambda: obs.stats.missed_events) < 1:
                assert time.monotonic() < deadline, "the skipped events were taken as watched"
                time.sleep(0.05)
            assert s.state() == "not_in_sync"
            holes = s.part.runs.containers._holes
            assert holes and holes[0][0] < before
            assert w.query(lambda: obs.registry.get("", cid)).status == "running"
            # the registry rebuilt on the connection: the consumer is told (its lookup, opt-out view)
            assert w.query(lambda: len(rebuilt)) == 2, rebuilt
        finally:
            d.docker("rm", "-f", cid)


def test_a_container_in_its_restart_backoff_is_no_lost_event(engine: tuple[Dockerd, Registry]) -> None:
    """A container with a restart policy that exits says ``die`` (the registry: stopped) and then waits,
    State ``restarting``, up to a minute (moby restartmanager) before its ``start``. A backstop list in that
    wait is no change the stream failed to report: taken as one, every Docker node with a crash-looping
    container lost a minute of watch to a hole every minute (lifecycle_missed_events_total)."""
    d, reg = engine
    obs = DockerObserver(DockerClient(d.socket, timeout=10.0), resync_seconds=0.1, in_flight_seconds=0.1)
    with Watcher(obs) as w:
        cid = d.docker("run", "-d", "--restart", "always", "--network", "none", reg.ref, "exit", "1").strip()
        try:
            # restarts after 0.1, 0.2, 0.4, 0.8 s: lists every 0.1 s fall in the waits
            deadline = time.monotonic() + 20
            while int(d.docker("inspect", "-f", "{{.RestartCount}}", cid).strip() or 0) < 4:
                assert time.monotonic() < deadline, "the container did not restart"
                time.sleep(0.1)
            assert w.query(lambda: obs.stats.missed_events) == 0, "a restart backoff was taken as lost events"
            assert w.query(lambda: obs.stats.resyncs) == 1
        finally:
            d.docker("rm", "-f", cid)


class SlowListDocker(DockerClient):
    """The real Engine; the connection's first container list waits until ``released`` (a node whose many
    containers take long to list and inspect), while the stream is already open."""

    def __init__(self, address: str) -> None:
        super().__init__(address, timeout=10.0)
        self.listing = threading.Event()
        self.released = threading.Event()

    async def get_json(self, path: str) -> object:
        if path.startswith("/containers/json") and not self.released.is_set():
            self.listing.set()
            await asyncio.to_thread(self.released.wait, 60)
        return await super().get_json(path)


def test_live_events_during_a_slow_rebuild_are_no_lost_replay(engine: tuple[Dockerd, Registry]) -> None:
    """300 events happen while the rebuild lists (the stream open, its replay empty): they are live, stamped
    after the first one arrived, not a replay of the Engine's whole buffer. Stamping the arrival only when
    the line was handled (after the rebuild) took them for one: a hole and lifecycle_missed_events_total
    at each connection of a busy node, a loss that never happened."""
    d, reg = engine
    repo = reg.ref.rsplit(":", 1)[0]
    d.docker("pull", reg.ref)
    client = SlowListDocker(d.socket)
    w = Watcher(DockerObserver(client))
    w._thread.start()  # not entered: that waits for the sync, which waits for the list
    try:
        assert client.listing.wait(30)
        time.sleep(0.2)  # the stream's request reaches the Engine (it was sent before the list)
        for i in range(TAGS):
            q = urllib.parse.urlencode({"repo": f"{repo}-live", "tag": f"t{i}"})
            assert _post(d.socket, f"/images/{urllib.parse.quote(reg.ref, safe='')}/tag?{q}") == 201
        client.released.set()
        deadline = time.monotonic() + 30
        while w.query(lambda: w.observer.stats.envelopes) < TAGS:
            assert time.monotonic() < deadline, "the live events were handled"
            time.sleep(0.05)
        assert w.query(lambda: w.observer.stats.missed_events) == 0, "live events taken for a lost replay"
    finally:
        client.released.set()
        w.close()
        for i in range(TAGS):
            _post(d.socket, f"/images/{urllib.parse.quote(f'{repo}-live:t{i}', safe='')}", "DELETE")
