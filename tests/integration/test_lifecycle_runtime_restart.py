"""containerd killed and started again while the agent watches: the time it was away is a hole.

A real private containerd is SIGKILLed between two samples of the agent's
lifecycle part and started again before the next one. A container started
and removed while it was away is in no list and in no event, so the sample
after the reconnect may be in sync but the time since the sample before the
kill is a hole (hotsymbols/container_runs.py ``hole``; agent/lifecycle_part.py:
a reconnect between two samples). Checked here against the real daemon.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from stellaops_runtime.lifecycle.containerd_client import ContainerdClient
from stellaops_runtime.lifecycle.observer import ContainerdObserver
from tests.containerd_harness import Containerd, Watcher, running


@pytest.fixture(scope="module")
def ctd() -> Iterator[Containerd]:
    yield from running()


def test_a_runtime_killed_and_restarted_between_two_samples_is_a_hole(ctd: Containerd) -> None:
    from tests.integration.test_lifecycle_namespaces import Sampler

    obs = ContainerdObserver(
        ContainerdClient(ctd.socket, namespace=ctd.namespace, timeout=5.0),
        reconnect_initial=0.05,
        reconnect_max=0.2,
    )
    with Watcher(obs) as w:
        s = Sampler(w)
        assert s.state() == "in_sync"
        assert s.state() == "in_sync"
        last_watched = time.time_ns()
        ctd.kill()
        deadline = time.monotonic() + 20
        while w.query(lambda: obs.stats.stream_errors) < 1:
            assert time.monotonic() < deadline, "the observer saw containerd go"
            time.sleep(0.02)
        ctd.start()
        w.wait_synced()
        assert w.query(lambda: obs.stats.reconnects) == 1
        assert s.state() == "in_sync"  # a sample in sync again...
        holes = s.part.runs.containers._holes
        # ...but what ran while containerd was away is in no list: from the sample before the kill
        assert holes and holes[0][0] <= last_watched and holes[0][1] >= last_watched, holes
