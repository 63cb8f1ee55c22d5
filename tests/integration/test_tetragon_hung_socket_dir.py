"""A unix socket under a file system that does not answer: unreachable in time, and the agent keeps running.

connect(2) of a unix socket looks its path up in the calling thread, and a hung file system (a stalled
FUSE or network mount holding Tetragon's socket directory) blocks that look. grpcio connected on its own
threads, so the agent's calls timed out as unreachable; the agent's own client (stellaops_runtime.rpc)
called connect on the event loop, which froze the whole agent (stream, flushes, health endpoints) for as
long as the file system hung. rpc/off_loop.py connects on a daemon thread, one at a time per path
(the next waits for it within its own deadline; connects at one moment to a healthy socket all succeed).

The hang is real where this process may mount a FUSE file system (root and /dev/fuse): one that never
answers, not even its INIT, so every lookup under it waits; elsewhere the socket module's connect is
made to wait for such paths, as the kernel's lookup does. A watchdog ends the hang after HANG_S: a
client that connects on the loop then shows a loop stalled that long (the failure seen before).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stellaops_runtime.agent.capabilities import probe_tetragon
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource
from tests.e2e import harness as h

HANG_S = 4.0  # the watchdog ends the hang after this long
MAX_GAP_S = 0.5  # what the event loop may stall at most meanwhile (on a loaded machine)


def _fuse_hang(directory: Path) -> Iterator[None]:
    fd = os.open("/dev/fuse", os.O_RDWR)
    options = f"fd={fd},rootmode=40000,user_id=0,group_id=0"
    mounted = subprocess.run(
        ["mount", "-t", "fuse", "-o", options, "stellaops-hung", str(directory)],
        pass_fds=(fd,),
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        os.close(fd)
        pytest.skip(f"no FUSE mount here: {mounted.stderr.decode(errors='replace').strip()}")
    lock, open_ = threading.Lock(), [True]

    def end_hang() -> None:  # closing the device aborts the connection: waiting lookups fail
        with lock:
            if open_[0]:  # once: the number may be another file's afterwards
                open_[0] = False
                os.close(fd)

    watchdog = threading.Timer(HANG_S, end_hang)
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()
        end_hang()
        subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def _patched_hang(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    released = threading.Event()
    threading.Timer(HANG_S, released.set).start()
    real = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        if isinstance(address, str) and address.startswith(str(directory)):
            released.wait()  # the kernel's path lookup under a file system that does not answer
            raise OSError(107, "Transport endpoint is not connected")
        real(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    try:
        yield
    finally:
        released.set()


@pytest.fixture(params=["fuse", "patched"])
def hung_dir(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="stellaops-hung-", dir="/tmp"))
    directory = root / "tetragon"
    directory.mkdir()
    try:
        if request.param == "fuse":
            if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
                pytest.skip("FUSE needs root and /dev/fuse")
            hang = _fuse_hang(directory)
        else:
            hang = _patched_hang(directory, monkeypatch)
        with contextlib.contextmanager(lambda: hang)():
            yield directory
    finally:
        with contextlib.suppress(OSError):
            directory.rmdir()
            root.rmdir()


class LoopGaps:
    """The longest the event loop went without running a 20 ms ticker."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            self.longest = max(self.longest, now - last - 0.02)
            last = now

    async def stop(self) -> float:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.longest


def _connect_threads() -> int:
    return sum(t.name == "rpc-connect-step" for t in threading.enumerate())


async def test_the_probe_says_unreachable_in_time_and_the_loop_runs_on(hung_dir: Path) -> None:
    address = f"unix://{hung_dir}/tetragon.sock"
    gaps = LoopGaps()
    started = time.monotonic()
    info = await probe_tetragon(address, timeout_s=0.5)
    took = time.monotonic() - started
    assert not info.reachable and info.error.startswith("DEADLINE_EXCEEDED"), info
    # the first connect still hangs: the next probe waits for it within its own deadline, no second one
    again = await probe_tetragon(address, timeout_s=0.5)
    assert not again.reachable and again.error.startswith("DEADLINE_EXCEEDED"), again
    assert _connect_threads() == 1
    longest = await gaps.stop()
    assert took < 2.0 and longest < MAX_GAP_S, (took, longest)
    assert time.monotonic() - started < HANG_S  # both ended by their deadlines, not by the hang's end


async def test_the_stream_counts_failed_connections_while_the_loop_runs_on(hung_dir: Path) -> None:
    cfg = parse_config(
        {
            "tetragon": {
                "address": f"unix://{hung_dir}/tetragon.sock",
                "connectionTimeout": 0.3,
                "reconnectInitialSeconds": 0.05,
                "reconnectMaxSeconds": 0.1,
            }
        }
    ).tetragon
    source = TetragonGrpcSource(cfg, queue=EventQueue(10))
    gaps = LoopGaps()
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        await h.wait_for(lambda: source.stats.connect_failures >= 3, timeout=HANG_S - 1, what="3 failures")
        assert not source.stats.connected and _connect_threads() <= 1
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    longest = await gaps.stop()
    assert longest < MAX_GAP_S, longest


async def test_connects_at_once_to_one_healthy_socket_all_succeed(tmp_path: Path) -> None:
    """The stream, the capability probe and the policy poll may dial Tetragon's socket at the same
    moment: a connect still under way (not hung) must not fail the others as hanging."""
    from stellaops_runtime.rpc.off_loop import connect_unix

    path = tempfile.mkdtemp(prefix="stellaops-uc-", dir="/tmp") + "/s.sock"  # short: a socket address
    server = await asyncio.start_unix_server(lambda r, w: w.close(), path, backlog=128)
    try:
        results = await asyncio.gather(*(connect_unix(path) for _ in range(40)), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for r in results:
            if isinstance(r, socket.socket):
                r.close()
        assert failed == []
    finally:
        server.close()
        await server.wait_closed()
        os.unlink(path)
        os.rmdir(os.path.dirname(path))


async def test_a_resolver_that_does_not_answer_leaves_the_agents_thread_pool_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Tetragon address by host name, and a resolver that does not answer: the lookups ran on the
    loop's default executor, the agent's few threads for its side calls (agent/runner.py's
    DaemonPool), one more stuck per retry, until every ``asyncio.to_thread`` of the agent waited."""
    from stellaops_runtime.daemon_pool import DaemonPool

    released = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host == "tetragon.hung-resolver.example":
            released.wait(HANG_S)  # glibc's timeouts x attempts x search names: tens of seconds
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    asyncio.get_running_loop().set_default_executor(DaemonPool(2, name="agent-calls"))
    cfg = parse_config(
        {
            "tetragon": {
                "address": "tetragon.hung-resolver.example:54321",
                "connectionTimeout": 0.2,
                "reconnectInitialSeconds": 0.05,
                "reconnectMaxSeconds": 0.1,
            }
        }
    ).tetragon
    source = TetragonGrpcSource(cfg, queue=EventQueue(10))
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(stop))
    try:
        while source.stats.connect_failures < 5:  # noqa: ASYNC110 (h.wait_for takes a pool thread)
            await asyncio.sleep(0.05)
        started = time.monotonic()
        await asyncio.wait_for(asyncio.to_thread(lambda: None), HANG_S / 2)  # the pool still takes calls
        assert time.monotonic() - started < 0.5 and _connect_threads() <= 1
    finally:
        released.set()
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
