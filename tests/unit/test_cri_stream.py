"""Which CRI runtimes' event streams are shared between readers (lifecycle/cri_stream.py)."""

from __future__ import annotations

import pytest

from stellaops_runtime.lifecycle.cri_stream import shared_stream, stream_absent


@pytest.mark.parametrize(
    ("name", "version", "shared"),
    [
        ("containerd", "v1.7.20", True),  # one channel read by every stream (pkg/cri/server)
        ("containerd", "1.7.24~ds1", True),
        ("containerd", "v2.0.0", False),  # internal/eventq: every subscriber gets every event
        ("containerd", "v2.1.3", False),
        ("cri-o", "1.27.1", True),  # range over ContainerEventsChan per stream
        ("cri-o", "1.28.0", False),  # broadcastEvents (8b230dec7e)
        ("cri-o", "1.30.4", False),
        ("cri-o", "", True),  # a version not read: not trusted
        ("some-runtime", "9.9.9", True),  # a runtime not known here: not trusted
        ("containerd", "\x00v2.0", True),
    ],
)
def test_shared_streams(name: str, version: str, shared: bool) -> None:
    assert shared_stream(name, version) is shared


def test_an_empty_end_is_no_stream_an_error_is_not() -> None:
    assert stream_absent(StopAsyncIteration())
    assert not stream_absent(None) and not stream_absent(ConnectionError("reset"))
