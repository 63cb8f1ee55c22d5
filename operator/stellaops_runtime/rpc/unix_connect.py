"""Connecting a unix socket off the event loop: connect(2) looks its path up, which a hung file system blocks.

A non-blocking ``connect`` of an ``AF_UNIX`` socket still resolves the path in the calling thread:
under a file system that does not answer (a stalled FUSE or network mount holding Tetragon's or the
runtime's socket directory) it blocks there. asyncio's ``create_unix_connection`` calls it on the
event loop, so one such look froze the whole agent (event stream, flushes, health endpoints), where
grpcio connected on threads of its own and the agent's calls timed out as unreachable. So the connect
runs on a daemon thread of its own (the process's exit does not wait for a hung one), the caller
waits for it as for any I/O (and may time out or be cancelled), and one connect to a path is under
way at a time: the next waits for it first, within its own deadline (so a hung look leaves one
thread stuck, not one more per retry, and connects at one moment to a healthy socket all succeed).
An abstract name (a leading NUL) involves no file system and connects on the loop
(tests/integration/test_tetragon_hung_socket_dir.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading

_under_way: dict[str, concurrent.futures.Future[None]] = {}  # a path's connect not returned yet
_lock = threading.Lock()


async def connect_unix(path: str) -> socket.socket:
    """A socket connected to the unix socket at ``path`` (non-blocking); OSError when it cannot be."""
    loop = asyncio.get_running_loop()
    if path.startswith("\0"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, path)
        except BaseException:
            sock.close()
            raise
        return sock
    while True:  # one connect to a path at a time: the next waits for it (within its own deadline)
        with _lock:
            earlier = _under_way.get(path)
            if earlier is None:
                mine: concurrent.futures.Future[None] = concurrent.futures.Future()
                _under_way[path] = mine
                break
        await asyncio.shield(asyncio.wrap_future(earlier))  # shielded: a waiter giving up cancels nothing
    done: asyncio.Future[socket.socket] = loop.create_future()

    def deliver(result: socket.socket | BaseException) -> None:
        if done.cancelled():  # the caller gave up: nobody takes the socket
            if isinstance(result, socket.socket):
                result.close()
        elif isinstance(result, BaseException):
            done.set_exception(result)
        else:
            done.set_result(result)

    def attempt() -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)  # no wait for a full backlog: EAGAIN, the caller retries
        result: socket.socket | BaseException = sock
        try:
            sock.connect(path)
        except BaseException as exc:  # handed to the caller
            sock.close()
            result = exc
        finally:
            with _lock:
                del _under_way[path]
            mine.set_result(None)
        try:
            loop.call_soon_threadsafe(deliver, result)
        except RuntimeError:  # the loop closed meanwhile
            if isinstance(result, socket.socket):
                result.close()

    threading.Thread(target=attempt, name="rpc-unix-connect", daemon=True).start()
    try:
        return await done
    except asyncio.CancelledError:
        with contextlib.suppress(asyncio.InvalidStateError):
            done.cancel()
        raise
