"""The OOM watch's counts as the agent's /metrics read them (lifecycle/oom_watch.py ``counts``).

The new-cgroup watcher (cgroup_births.py) is closed and made again when the
observer reconnects; its overflows must still count after that, or the
metric would go back down (a Prometheus counter that falls reads as a reset).
"""

from __future__ import annotations

from stellaops_runtime.lifecycle.metrics import LifecycleCollector, LifecycleStats
from stellaops_runtime.lifecycle.oom_watch import OomCounts, OomWatch


class _Births:
    def __init__(self, overflows: int) -> None:
        self.overflows, self.refused, self.fd = overflows, 0, -1

    def close(self) -> None:
        pass


def test_births_overflows_outlive_a_closed_watcher() -> None:
    w = OomWatch()
    w.notifications, w.full = 5, 2
    w._births = _Births(3)  # type: ignore[assignment]
    assert w.counts()[:3] == (5, 2, 3)
    w.close()
    assert w.counts()[:3] == (5, 2, 3)
    w._births = _Births(1)  # type: ignore[assignment]
    assert w.counts()[:3] == (5, 2, 4)


def test_the_collector_yields_the_oom_families() -> None:
    c = LifecycleCollector(LifecycleStats(), lambda: (0, 0), lambda: OomCounts(7, 1, 2))
    samples = {s.name: s.value for m in c.collect() for s in m.samples}
    assert samples["stellaops_runtime_lifecycle_oom_notifications_total"] == 7
    assert samples["stellaops_runtime_lifecycle_oom_unwatched_total"] == 1
    assert samples["stellaops_runtime_lifecycle_oom_births_overflows_total"] == 2
