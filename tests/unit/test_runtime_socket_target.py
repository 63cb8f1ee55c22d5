"""A runtime socket path is dialled as written, whatever characters it holds.

gRPC reads a target as a URI: in ``unix:///d/t%41/c.sock`` it dials
``/d/tA/c.sock``, and a ``?`` or ``#`` ends the path. The agent built the
containerd and CRI targets from ``lifecycle.containerdAddress`` /
``criAddresses`` (the RuntimeObserver's ``spec.containerRuntime.socketPath``)
as ``unix://`` + path, so a socket in a directory named with ``%41`` was
never reached, and one named with ``%2F`` could have been another socket
(W1 found it, on the Tetragon address). ``target_of`` now percent-encodes a
path; an address already written as a ``unix:`` URI is left as the caller's.
Real sockets, a real gRPC channel.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import grpc
import pytest

from stellaops_runtime.lifecycle.containerd_client import target_of


@pytest.mark.parametrize("name", ["t%41", "a?b", "c#d", "e f", "plain"])
def test_the_socket_at_the_path_as_written_is_dialled(name: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="stellaops-rt-", dir="/tmp"))  # short: a socket address
    try:
        (root / name).mkdir()
        (root / "tA").mkdir()
        decoy = socket.socket(socket.AF_UNIX)  # where a decoded %41 would lead
        decoy.bind(str(root / "tA" / "c.sock"))
        decoy.listen(1)
        with socket.socket(socket.AF_UNIX) as s, decoy:
            s.bind(str(root / name / "c.sock"))
            s.listen(1)
            s.settimeout(60)
            with grpc.insecure_channel(target_of(str(root / name / "c.sock"))) as ch:
                # one call makes the channel connect (subscribe's polling thread raised "Channel
                # closed!" in grpc's own thread when the channel closed under it)
                call = ch.unary_unary("/stellaops.test/Dial").future(b"", timeout=60)
                conn, _ = s.accept()  # the client connected to the path as written
                conn.close()
                call.cancel()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_uri_is_the_callers_and_a_plain_path_reads_the_same() -> None:
    assert target_of("unix:///run/containerd/containerd.sock") == "unix:///run/containerd/containerd.sock"
    assert target_of("/run/containerd/containerd.sock") == "unix:///run/containerd/containerd.sock"
    assert target_of("/run/k3s/containerd/containerd.sock") == "unix:///run/k3s/containerd/containerd.sock"
