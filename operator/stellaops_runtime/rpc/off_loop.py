"""What connecting does that may block, off the event loop: a unix socket's path lookup, a host's resolution.

A non-blocking ``connect`` of an ``AF_UNIX`` socket still resolves the path in the calling thread:
under a file system that does not answer (a stalled FUSE or network mount holding Tetragon's or the
runtime's socket directory) it blocks there, and asyncio's ``create_unix_connection`` calls it on the
event loop, which froze the whole agent (event stream, flushes, health endpoints). A host name is
resolved by ``getaddrinfo``, which asyncio runs on the loop's default executor: the agent's pool of a
few threads for its own side calls (agent/runner.py), which a resolver that does not answer filled
within seconds, one more stuck lookup per retry, so every ``asyncio.to_thread`` of the agent waited.
grpcio did both on threads of its own, and the agent's calls timed out as unreachable.

So both run on a daemon thread of their own (the process's exit does not wait for a hung one), the
caller waits for it as for any I/O (and may time out or be cancelled), and one such step per path or
host is under way at a time: the next waits for it first, within its own deadline (a hung look
leaves one thread stuck, not one more per retry; steps at one moment on a healthy path all succeed).
An abstract name (a leading NUL) and a numeric address involve neither and stay on the loop
(tests/integration/test_tetragon_hung_socket_dir.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_under_way: dict[str, concurrent.futures.Future[None]] = {}  # a key's step not returned yet
_lock = threading.Lock()


async def _alone(key: str, step: Callable[[], T]) -> T:
    """``step()`` on a daemon thread, after any earlier step of ``key`` returned."""
    loop = asyncio.get_running_loop()
    while True:
        with _lock:
            earlier = _under_way.get(key)
            if earlier is None:
                mine: concurrent.futures.Future[None] = concurrent.futures.Future()
                _under_way[key] = mine
                break
        await asyncio.shield(asyncio.wrap_future(earlier))  # shielded: a waiter giving up cancels nothing
    done: asyncio.Future[T] = loop.create_future()

    def deliver(result: Any, error: BaseException | None) -> None:
        if done.cancelled():  # the caller gave up: nobody takes a socket made meanwhile
            if isinstance(result, socket.socket):
                result.close()
        elif error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def run() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = step()
        except BaseException as exc:  # handed to the caller
            error = exc
        finally:
            with _lock:
                del _under_way[key]
            mine.set_result(None)
        try:
            loop.call_soon_threadsafe(deliver, result, error)
        except RuntimeError:  # the loop closed meanwhile
            if isinstance(result, socket.socket):
                result.close()

    threading.Thread(target=run, name="rpc-connect-step", daemon=True).start()
    try:
        return await done
    except asyncio.CancelledError:
        with contextlib.suppress(asyncio.InvalidStateError):
            done.cancel()
        raise


async def connect_unix(path: str) -> socket.socket:
    """A socket connected to the unix socket at ``path`` (non-blocking); OSError when it cannot be."""
    if path.startswith("\0"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, path)
        except BaseException:
            sock.close()
            raise
        return sock

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)  # no wait for a full backlog: EAGAIN, the caller retries
        try:
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        return sock

    return await _alone("unix:" + path, connect)


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host``, in the resolver's order; OSError (or ValueError) when it has none."""
    with contextlib.suppress(ValueError):
        return [str(ipaddress.ip_address(host))]  # numeric: nothing to look up

    def lookup() -> list[str]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    return await _alone(f"host:{host}:{port}", lookup)
