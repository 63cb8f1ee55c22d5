"""A runtime socket path is dialled as written, whatever characters it holds.

gRPC reads a target as a URI: in ``unix:///d/t%41/c.sock`` it dials
``/d/tA/c.sock``, and a ``?`` or ``#`` ends the path. The agent built the
containerd and CRI targets from ``lifecycle.containerdAddress`` /
``criAddresses`` (the RuntimeObserver's ``spec.containerRuntime.socketPath``)
as ``unix://`` + path, so a socket in a directory named with ``%41`` was
never reached, and one named with ``%2F`` could have been another socket
(W1 found it, on the Tetragon address). ``target_of`` now percent-encodes a
path; an address already written as a ``unix:`` URI is left as the caller's.
Real sockets, the agent's own gRPC channel (stellaops_runtime.rpc).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from stellaops_runtime import rpc
from stellaops_runtime.lifecycle.containerd_client import target_of


async def dialled(target: str, *listeners: socket.socket) -> int:
    """Which of ``listeners`` a channel to ``target`` connects to (its index): the first to accept."""
    loop = asyncio.get_running_loop()
    for listener in listeners:
        listener.setblocking(False)
    async with rpc.insecure_channel(target) as ch:
        ready = asyncio.ensure_future(ch.channel_ready())  # connects, retrying, until cancelled
        accepts = [asyncio.ensure_future(loop.sock_accept(listener)) for listener in listeners]
        try:
            done, _ = await asyncio.wait(accepts, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            assert done, f"nobody was dialled for {target}"
            first = next(i for i, a in enumerate(accepts) if a in done)
            accepts[first].result()[0].close()
            return first
        finally:
            for fut in (ready, *accepts):
                fut.cancel()
                with contextlib.suppress(BaseException):
                    await fut


@pytest.mark.parametrize("name", ["t%41", "a?b", "c#d", "e f", "plain"])
async def test_the_socket_at_the_path_as_written_is_dialled(name: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="stellaops-rt-", dir="/tmp"))  # short: a socket address
    try:
        (root / name).mkdir()
        (root / "tA").mkdir()
        with socket.socket(socket.AF_UNIX) as s, socket.socket(socket.AF_UNIX) as decoy:
            decoy.bind(str(root / "tA" / "c.sock"))  # where a decoded %41 would lead
            decoy.listen(1)
            s.bind(str(root / name / "c.sock"))
            s.listen(1)
            assert await dialled(target_of(str(root / name / "c.sock")), s, decoy) == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_uri_is_the_callers_and_a_plain_path_reads_the_same() -> None:
    assert target_of("unix:///run/containerd/containerd.sock") == "unix:///run/containerd/containerd.sock"
    assert target_of("/run/containerd/containerd.sock") == "unix:///run/containerd/containerd.sock"
    assert target_of("/run/k3s/containerd/containerd.sock") == "unix:///run/k3s/containerd/containerd.sock"
