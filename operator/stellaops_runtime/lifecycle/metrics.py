"""The lifecycle observer's counters and their Prometheus families.

Flat ints on ``LifecycleStats`` (the observer bumps them on its event loop,
no locks), turned into families by ``lifecycle_metrics`` with the agent's own
constructors (:mod:`stellaops_runtime.agent.metric_families`: the
``stellaops_runtime_`` prefix, ``_total`` on counters). The seed's metric list
names no lifecycle metrics, so these follow the agent's naming: one
``lifecycle_`` prefix, a ``reason``/``type`` label where a counter has kinds.
``LifecycleCollector`` registers them on a prometheus-client registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import Metric

from stellaops_runtime.agent.metric_families import counter, gauge, labelled
from stellaops_runtime.lifecycle.oom_watch import OomCounts

DECODE_REASONS = ("envelope", "no_payload", "payload", "field")
_NO_OOM = OomCounts()


@dataclass
class LifecycleStats:
    envelopes: int = 0  # Subscribe messages received
    ignored: dict[str, int] = field(default_factory=dict)  # payload type name -> count (not acted on)
    decode_failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DECODE_REASONS, 0))
    events: dict[str, int] = field(default_factory=dict)  # ContainerLifecycleEvent type -> emitted
    connects: int = 0
    reconnects: int = 0  # connections after the first
    stream_errors: int = 0  # connections or streams that failed
    resyncs: int = 0  # registry rebuilds from the runtime's list
    resync_removed: int = 0  # containers dropped by a rebuild (gone while we were away)
    spec_problems: int = 0  # container specs that could not be read (fully)
    cgroup_unresolved: int = 0  # running tasks whose cgroup v2 id could not be found
    # Containers older than their image reference's last move: the digest they run is not known.
    digest_unverified: int = 0
    # Exits found OOM-killed from the cgroup's memory.events (the runtime's OOM event had not come).
    oom_from_cgroup: int = 0
    # Tasks seen starting in a containerd namespace the observer does not follow, or whose container
    # was gone before the observer could read it (observer.py, docker_observer.py).
    unwatched_starts: int = 0
    # Times the runtime's event stream may have lost events the lists cannot make up for (Docker's
    # replay past its 256-event buffer, docker_replay.py; a backstop list finding what it never said).
    missed_events: int = 0
    connected: bool = False
    last_error: str = ""

    def count_event(self, kind: str) -> None:
        self.events[kind] = self.events.get(kind, 0) + 1

    def count_failure(self, reason: str) -> None:
        self.decode_failures[reason] = self.decode_failures.get(reason, 0) + 1

    def count_ignored(self, type_name: str) -> None:
        # Bounded: a hostile publisher could invent any number of type names.
        key = type_name if type_name in self.ignored or len(self.ignored) < 64 else "other"
        self.ignored[key] = self.ignored.get(key, 0) + 1


def lifecycle_metrics(
    stats: LifecycleStats, *, containers: int, cgroups: int, oom: OomCounts = _NO_OOM
) -> Iterator[Metric]:
    """The observer's families (``containers``/``cgroups``: the registry's current sizes; ``oom``:
    the OOM watch's ``counts()``)."""
    yield counter("lifecycle_envelopes", "Container runtime event envelopes received.", stats.envelopes)
    yield labelled("lifecycle_events", "Container lifecycle events emitted, by type.", "type", stats.events)
    yield labelled(
        "lifecycle_decode_failures",
        "Runtime events that could not be decoded (skipped), by reason.",
        "reason",
        stats.decode_failures,
    )
    yield labelled(
        "lifecycle_events_ignored",
        "Runtime events of payload types the observer does not use.",
        "payload",
        stats.ignored,
    )
    yield counter(
        "lifecycle_reconnects", "Connections to the container runtime after the first.", stats.reconnects
    )
    yield counter(
        "lifecycle_stream_errors", "Runtime connections or event streams that failed.", stats.stream_errors
    )
    yield counter("lifecycle_resyncs", "Registry rebuilds from the runtime's container list.", stats.resyncs)
    yield counter(
        "lifecycle_resync_removed",
        "Containers dropped by a rebuild (removed while disconnected).",
        stats.resync_removed,
    )
    yield counter(
        "lifecycle_spec_problems", "Container specs that could not be read fully.", stats.spec_problems
    )
    yield counter(
        "lifecycle_cgroup_unresolved",
        "Running containers whose cgroup v2 id was not found.",
        stats.cgroup_unresolved,
    )
    yield counter(
        "lifecycle_oom_from_cgroup",
        "Container exits found OOM-killed from the kernel's count in their cgroup, the runtime silent.",
        stats.oom_from_cgroup,
    )
    notifications, unwatched, overflows, early_evicted, parents_unwatched, unread = oom
    yield counter(
        "lifecycle_oom_notifications",
        "Changes of watched containers' OOM counters the kernel announced.",
        notifications,
    )
    yield counter(
        "lifecycle_oom_unwatched",
        "Running containers whose OOM counter was not watched (the watch limit reached): an OOM kill "
        "their runtime misses is not seen.",
        unwatched,
    )
    yield counter(
        "lifecycle_oom_births_overflows",
        "Times the kernel dropped new-cgroup notifications (its inotify queue full): a container "
        "OOM-killed at its start may be counted only if its runtime reports it.",
        overflows,
    )
    yield counter(
        "lifecycle_oom_early_evicted",
        "New cgroups opened at their creation and dropped for newer ones before any runtime event named "
        "them (256 held): such a container OOM-killed at its start is counted only if its runtime says so.",
        early_evicted,
    )
    yield counter(
        "lifecycle_oom_parents_unwatched",
        "Watched containers whose parent cgroup directory was not watched for new siblings (1024 watched, "
        "or inotify refused): a sibling OOM-killed at its start is counted only if its runtime says so.",
        parents_unwatched,
    )
    yield counter(
        "lifecycle_oom_unread",
        "Container exits whose OOM kill is not known (a new cgroup removed before its OOM counter "
        "could be opened; on cgroup v1, an ancestor's OOM whose victim was not counted before the cgroup "
        "went): the exit says oom_killed null unless its runtime said true.",
        unread,
    )
    yield counter(
        "lifecycle_unwatched_starts",
        "Container tasks started in a containerd namespace the observer does not follow, or whose "
        "container was removed before the observer could read it: while one runs, and at the sample "
        "after it started, the registry is not in sync (no window above ActiveTracing).",
        stats.unwatched_starts,
    )
    yield counter(
        "lifecycle_missed_events",
        "Times the runtime's event stream may have lost events (Docker's replay past its last 256 "
        "events; a backstop list finding a change the stream never reported): the sample after is not "
        "in sync and the time since the events may have been lost is a hole.",
        stats.missed_events,
    )
    yield gauge(
        "lifecycle_connected",
        "1 while the event stream of the container runtime is open.",
        int(stats.connected),
    )
    yield gauge("lifecycle_containers", "Containers in the lifecycle registry.", containers)
    yield gauge("lifecycle_cgroups", "Running containers indexed by cgroup id.", cgroups)


class LifecycleCollector:
    """A prometheus-client collector over an observer's stats and registry sizes."""

    def __init__(
        self,
        stats: LifecycleStats,
        sizes: Callable[[], tuple[int, int]],
        oom: Callable[[], OomCounts] = OomCounts,
    ) -> None:
        self._stats = stats
        self._sizes = sizes
        self._oom = oom

    def collect(self) -> Iterator[Metric]:
        containers, cgroups = self._sizes()
        yield from lifecycle_metrics(self._stats, containers=containers, cgroups=cgroups, oom=self._oom())
