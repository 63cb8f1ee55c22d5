"""A containerd that stops answering (SIGSTOP: its socket still accepts) is noticed.

An idle event stream cannot tell a quiet containerd from a hung one. After
``liveness_seconds`` without an event the observer makes a call; one that is
not answered within the client's timeout ends the connection, so the registry
is not in sync (docs/lifecycle.md "When the socket goes away") until containerd
answers again and the registry is rebuilt.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from stellaops_runtime.lifecycle.containerd_client import ContainerdClient
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from tests.containerd_harness import Containerd, Watcher, running


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


def wait(check: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_hung_containerd_ends_the_sync(ctd: Containerd) -> None:
    client = ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=1.0)
    obs = ContainerdObserver(client, reconnect_initial=0.1, reconnect_max=0.5)
    obs.liveness_seconds = 0.3  # checked after this long without an event (10 s by default)
    assert ctd.proc is not None
    pid = ctd.proc.pid
    with Watcher(obs) as w:
        resyncs = w.query(lambda: obs.stats.resyncs)
        os.kill(pid, signal.SIGSTOP)
        try:
            wait(lambda: not w.query(obs.synced.is_set), "the hung containerd noticed")
            assert w.query(lambda: obs.stats.stream_errors) >= 1
            assert "liveness" in w.query(lambda: obs.stats.last_error)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait(lambda: w.query(obs.synced.is_set), "the registry rebuilt once containerd answers")
        assert w.query(lambda: obs.stats.resyncs) > resyncs
