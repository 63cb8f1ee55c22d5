"""The container lifecycle observer as one of the agent's tasks (docs/lifecycle.md, "In the agent").

The agent runs the observer (lifecycle/observer.py for containerd,
lifecycle/docker_observer.py for Docker, lifecycle/cri_observer.py for a CRI
runtime such as CRI-O) on its event loop when the
``lifecycle`` config asks for it, and gives the pipeline two things from its
registry:

- a :class:`~stellaops_runtime.lifecycle.lookup.ContainerLookup` set as
  ``Pipeline.container_lookup``: an immutable snapshot, replaced by a new one
  after every change, which the pipeline thread reads without a lock to name
  the container of a cgroup id and to fill what Tetragon events lack (digest, pod);
- a :class:`~stellaops_runtime.hotsymbols.run_windows.RunWindows` set as the
  aggregator's ``runs``: once a second the task samples whether the event
  source and the runtime are both connected (and stayed so since the last
  sample) and which containers run, so that every image that ran here through a
  whole watched window gets an observation window, events or not, and a
  container that ran in a window without sending it an event lowers its
  image's window to Passive (hotsymbols/container_runs.py).

Only what the config turns on is imported, and only when the task starts: the
agent of a node without a runtime socket loads none of it (issue 13). A
runtime socket that is absent, refuses or hangs is counted
(``lifecycle_stream_errors_total``), logged and retried with backoff by the
observer; the agent keeps running.

Without the part the agent cannot know the node's silent containers. With
``enabled: auto`` and no runtime socket (on a Kubernetes node a missing mount
or an odd path: there is always a runtime) the aggregator gets
:class:`UnseenContainers`, a registry never in sync, so no window reads above
ActiveTracing, and a WARNING says what to set. ``enabled: false`` is the
operator's choice: the windows rest on the containers that sent events, and
a WARNING says so. :func:`lifecycle_state` names the case for ``/readyz`` and
``lifecycle_state`` on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from stellaops_runtime.agent.runtime_target import Target, candidates, lifecycle_target
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.hotsymbols.clock_span import now_pair
from stellaops_runtime.hotsymbols.run_windows import Run, RunWindows
from stellaops_runtime.lifecycle.imageless import Imageless
from stellaops_runtime.lifecycle.lookup import ContainerLookup, EnrichStats

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from stellaops_runtime.agent.pipeline import Pipeline
    from stellaops_runtime.contracts.hotsymbols import ObservationWindow
    from stellaops_runtime.lifecycle.base import LifecycleObserver
    from stellaops_runtime.lifecycle.registry import ContainerRecord
    from stellaops_runtime.store.image_pairs import PairsToRecord

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0  # how often the watch is sampled
_RUNNING = ("running", "paused")


def _ns(value: Any) -> int:
    return int(value.timestamp() * 1e9) if value is not None else 0


def runs_of(records: list[ContainerRecord]) -> list[Run]:
    """What the registry says ran: one Run per container with an image digest."""
    return [
        Run(r.image_digest, _ns(r.started_at), _ns(r.stopped_at), r.status in _RUNNING, r.container_id)
        for r in records
        if r.image_digest and (r.status in _RUNNING or r.stopped_at is not None)
    ]


class LifecyclePart:
    """The observer task, its lookup for the pipeline and its windows for the aggregator."""

    def __init__(self, config: AgentConfig, target: Target, *, node_name: str, pipeline: Pipeline) -> None:
        self.config = config
        self.target = target
        self.pipeline = pipeline
        self.enrich_stats = EnrichStats()
        self.runs = RunWindows(
            window_seconds=config.hot_symbols.window_seconds,
            node_name=node_name,
            settle_ns=int(config.lifecycle.window_settle_seconds * 1e9),
        )
        self.observer: LifecycleObserver | None = None
        self.pairs: PairsToRecord | None = None  # the flusher's: config -> manifest digests to store
        pipeline.container_lookup = ContainerLookup(stats=self.enrich_stats)
        pipeline.aggregator.runs = self.runs
        self._sizes = (0, 0)  # the registry's containers and cgroups at the last change
        self._seen: tuple[int, int] | None = None  # (source connects, runtime connects) at the last sample
        self._unwatched_seen = 0  # the observer's unwatched_starts + missed_events at the last sample
        self._removals_seen = 0  # the registry's removals at the last sample
        self._listed: tuple[int, int] | None = None  # (runtime connects, time) at the last sample
        self._imageless = Imageless()  # containers that ran with no image digest (lifecycle/imageless.py)
        self._held_out: set[str] = set()  # containers of opted-out pods at the last sample (_tick)

    def _make_observer(self) -> LifecycleObserver:
        lc = self.config.lifecycle
        kw: dict[str, Any] = {
            "privacy": self.pipeline.privacy,
            "reconnect_initial": lc.reconnect_initial_seconds,
            "reconnect_max": lc.reconnect_max_seconds,
            "on_sync": lambda registry: self._refresh(),
        }
        if self.target.runtime == "docker":
            from stellaops_runtime.lifecycle.docker_client import DockerClient
            from stellaops_runtime.lifecycle.docker_observer import DockerObserver

            return DockerObserver(DockerClient(self.target.address, timeout=lc.timeout_seconds), **kw)
        if self.target.runtime == "cri":
            from stellaops_runtime.lifecycle.cri_client import CriClient
            from stellaops_runtime.lifecycle.cri_observer import CriObserver

            cri = CriClient(self.target.address, timeout=lc.timeout_seconds)
            return CriObserver(cri, relist_seconds=lc.cri_relist_seconds, **kw)
        from stellaops_runtime.lifecycle.containerd_client import ContainerdClient
        from stellaops_runtime.lifecycle.observer import ContainerdObserver

        client = ContainerdClient(
            self.target.address, namespace=lc.containerd_namespace, timeout=lc.timeout_seconds
        )
        return ContainerdObserver(client, **kw)

    def _refresh(self) -> None:
        if self.observer is not None:  # a new snapshot, assigned whole (lifecycle/lookup.py)
            registry = self.observer.registry
            records = registry.records()
            if self.pairs is not None:  # store/image_pairs.py: a question by either digest finds both
                for r in records:  # and the other manifests of its config kubelet may name it by
                    for manifest in (r.image_digest, *r.image_aliases) if r.image_config else ():
                        self.pairs.note(r.image_config, manifest)
            self._sizes = (len(registry), len(registry.cgroup_ids()))  # for metrics, read on another thread
            # Removed containers too (``--rm``): their last records are decoded after they are gone.
            lookup = ContainerLookup(
                records, self.target.runtime, stats=self.enrich_stats, departed=registry.departed()
            )
            if not lookup.same_as(self.pipeline.container_lookup):  # a swap invalidates the fast path
                self.pipeline.container_lookup = lookup

    async def run(
        self,
        stop: asyncio.Event,
        in_pipeline: Callable[..., Awaitable[Any]],
        source_stats: Callable[[], Any],
    ) -> None:
        """Follow the runtime until ``stop``; sample the watch every TICK_SECONDS."""
        self.observer = obs = self._make_observer()
        log.info("container lifecycle observer: %s at %s", self.target.runtime, self.target.address)
        sampler = asyncio.create_task(self._sample(stop, in_pipeline, source_stats), name="lifecycle-windows")
        try:
            async for _ in obs.events(stop):
                self._refresh()
        except Exception:  # the observer retries the runtime itself; anything else must not end the agent
            log.exception("container lifecycle observer stopped; the agent keeps running without it")
            self.runs.containers.known = False  # no container is followed: none may be taken as absent
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            self.runs.final = True  # the agent stops: whole windows are emitted at the final drain

    async def _sample(
        self,
        stop: asyncio.Event,
        in_pipeline: Callable[..., Awaitable[Any]],
        source_stats: Callable[[], Any],
    ) -> None:
        while not stop.is_set():
            try:
                await self._sample_once(in_pipeline, source_stats)
            except Exception:  # a failed sample breaks the watch (no window rests on it), never the loop
                log.exception("lifecycle window sample failed")
                self._seen = None
                await in_pipeline(self.runs.tick, time.time_ns(), False, ())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_SECONDS)

    async def _sample_once(
        self, in_pipeline: Callable[..., Awaitable[Any]], source_stats: Callable[[], Any]
    ) -> None:
        obs = self.observer
        assert obs is not None
        s = source_stats()
        seen = (int(s.connects), obs.stats.connects)
        # A container of a namespace the observer does not follow ran since the last sample, or runs;
        # or the runtime's stream may have lost events since (base.py ``_missed_events``).
        missed = obs.stats.unwatched_starts + obs.stats.missed_events
        unwatched, self._unwatched_seen = (bool(obs.unwatched) or missed != self._unwatched_seen, missed)
        # Such a run may have started before the latest sample in sync (read late): from its start.
        unread_from = obs.take_unwatched_from()
        runtime_known = obs.stats.connected and obs.synced.is_set() and not unwatched
        now, boot = now_pair()  # the boot clock measures the time between samples if the wall clock steps
        # While the source is away the registry still says what ran: those images' time is a gap.
        records = obs.registry.records() if runtime_known else []
        # Removed since the last sample: one created, run and removed in between ran all the same.
        removed, lost = obs.registry.removed_since(self._removals_seen)
        self._removals_seen = obs.registry.removals
        if runtime_known:
            records = removed + records  # a listed record of the same id is the later word
        if self._imageless.ran(records, now):  # a container of an unknown image: any image's
            runtime_known, records = False, []
        watching = bool(s.connected) and runtime_known
        listed, self._listed = self._listed, (obs.stats.connects, now)
        if listed is not None and (lost or 0 < listed[0] != obs.stats.connects):
            # cut and listed again since, or more removals than the registry keeps: runs may be missed
            await in_pipeline(self.runs.containers.hole, listed[1], now)
        if 0 < unread_from < now:
            await in_pipeline(self.runs.containers.hole, unread_from, now)
        if watching and self._seen is not None and seen != self._seen:
            # a reconnect since the last sample
            await in_pipeline(self._tick, now, False, records, True, boot)
        self._seen = seen if watching else None
        await in_pipeline(self._tick, now, watching, records, runtime_known, boot)

    def _tick(
        self,
        now: int,
        watching: bool,
        records: list[ContainerRecord],
        runtime_known: bool,
        boot: int | None = None,
    ) -> None:
        """One sample, on the pipeline thread (the opt-out and the gaps are the pipeline's).

        A container of a pod that opted out (the annotation, the label or the operator's list) is
        no run: it would get Passive rows claiming its image watched, and gaps placed at its own
        start time. Its image gets the opted-out gap of each window it runs in instead, as its
        events would give it (hotsymbols/gaps.py ``opted_out``: the whole window, nothing of the pod).
        One opted out at the last sample and not now (the operator's ``optedIn`` or ``optedOut``
        read since) changed at some time between the two, perhaps in this sample's window: that
        window is an opted-out gap too, never a whole watched one (docs/operator.md).
        """
        pipe = self.pipeline
        lookup, optout = pipe.container_lookup, pipe.optout
        kept: list[ContainerRecord] = []
        held, out = self._held_out, set[str]()
        for r in records:
            pod = lookup.pod_by_container_id(r.container_id) if lookup is not None else None
            # its record's annotation at creation, unless the operator's optedIn names it since
            opted = pod is not None and (optout.record_reason(pod) or optout.operator_reason(pod))
            if (opted or r.container_id in held) and r.image_digest and r.status in _RUNNING:
                pipe.gaps.opted_out(r.image_digest, pipe.node_name, now)
            if opted:
                out.add(r.container_id)
                continue
            kept.append(r)
        self._held_out = out if runtime_known else held | out  # records unknown: remember the last
        self.runs.tick(now, watching, runs_of(kept), runtime_known, boot)

    def metrics(self) -> Iterator[Metric]:
        """The observer's families and the agent's own (enrichment, lifecycle windows).

        Collected on the pipeline thread: reads plain counters and the sizes kept at the last
        registry change, never the registry's dicts, which the event loop mutates."""
        from stellaops_runtime.agent.metric_families import counter, gauge, labelled
        from stellaops_runtime.lifecycle.metrics import lifecycle_metrics
        from stellaops_runtime.store.image_pairs import MAX_PAIRS

        obs = self.observer
        if obs is not None:
            ls = obs.stats  # its dicts copied whole (one C call each): the loop may add keys meanwhile
            ls = replace(
                ls, ignored=dict(ls.ignored), decode_failures=dict(ls.decode_failures), events=dict(ls.events)
            )
            containers, cgroups = self._sizes
            yield from lifecycle_metrics(
                ls, containers=containers, cgroups=cgroups, oom=obs.oom_watch.counts()
            )
        yield labelled(
            "lifecycle_enriched",
            "Tetragon events given a missing image digest or pod from the lifecycle registry, by field.",
            "field",
            dict(self.enrich_stats.fields),
        )
        st = self.runs.stats
        yield counter(
            "lifecycle_window_rows",
            "Observation-window rows for images that ran through a whole watched window.",
            st.rows,
        )
        yield counter(
            "lifecycle_unwatched_gap_rows",
            "Gap rows for images that ran while the event source was away (the registry in sync).",
            st.unwatched,
        )
        yield counter(
            "lifecycle_watch_breaks",
            "Times the watch broke (event source or runtime away or reconnected): windows it cut get no row.",
            st.broken,
        )
        yield gauge(
            "lifecycle_watching",
            "1 while the event source and the runtime are both connected and the registry in sync.",
            int(self.runs.watching),
        )
        if self.pairs is not None:  # store/image_pairs.py: config -> manifest digests of one image
            yield gauge(
                "lifecycle_image_pairs", "Image pairings (config, manifest digest) kept.", self.pairs.kept()
            )
            yield counter(
                "lifecycle_image_pairs_dropped",
                f"Offers of a new image pairing not kept (past {MAX_PAIRS} kept; offered at each refresh).",
                self.pairs.dropped,
            )
            yield counter(
                "lifecycle_image_pairs_refused",
                "Image pairings the store refused as data (a constraint, a value its column does not "
                "take): never written, they hold no rows.",
                self.pairs.refused,
            )


class UnseenContainers(RunWindows):
    """The aggregator's runs when ``lifecycle.enabled: auto`` found no runtime socket: never in sync.

    No container of the node is known, so none may be taken as absent: a silent pod of an image
    may have run the function its other pods' events never showed. Its ``containers`` are never
    ``known``, so no window holding a container reads above ActiveTracing (window_units.py); with
    no sample it gives no lifecycle row and no gap."""

    def drain(self, windows: list[ObservationWindow], source: str) -> list[ObservationWindow]:
        return windows


_KEYS = {"containerd": "containerdAddress", "docker": "dockerAddress", "cri": "criAddresses"}


def make_lifecycle(config: AgentConfig, *, node_name: str, pipeline: Pipeline) -> LifecyclePart | None:
    """The lifecycle part when ``lifecycle`` turns it on (nothing of the observer is imported yet)."""
    target = lifecycle_target(config)
    if target is not None:
        return LifecyclePart(config, target, node_name=node_name, pipeline=pipeline)
    if config.lifecycle.enabled is False:
        log.warning(
            "container lifecycle observer off (lifecycle.enabled: false): the node's containers are "
            "not known, so an observation window's posture rests only on the containers that sent "
            "events; a container of the image that sent none (a pod no policy traces) is not counted, "
            "and 'not observed' may be said of a function only it ran (docs/lifecycle.md)"
        )
        return None
    tried = ", ".join(f"{_KEYS[t.runtime]} {t.address}" for t in candidates(config))
    log.warning(
        "container lifecycle observer off: no runtime socket at %s (lifecycle.enabled: auto, checked "
        "at start); the node's containers cannot be known, so no observation window reads above "
        "ActiveTracing and none backs 'not observed'. Mount the runtime's socket into the agent and "
        "set lifecycle.containerdAddress, dockerAddress or criAddresses to it (in a cluster: the "
        "RuntimeObserver's spec.containerRuntime; lifecycle.enabled: "
        "true retries an absent one), or set lifecycle.enabled: false to let windows rest only on "
        "the containers that sent events (docs/lifecycle.md)",
        tried or "none configured",
    )
    pipeline.aggregator.runs = UnseenContainers(
        window_seconds=config.hot_symbols.window_seconds, node_name=node_name
    )
    return None


def lifecycle_state(lifecycle: LifecyclePart | None, pipeline: Pipeline) -> str:
    """What the agent knows of the node's containers: ``in_sync`` (the registry is, silent
    containers count), ``not_in_sync`` (before the first sample, runtime away, a container of
    another containerd namespace or of no known image running, observer dead:
    windows at most ActiveTracing), ``no_runtime_socket`` (``auto`` found none: the same cap) or
    ``off`` (``enabled: false``: windows rest on the containers that sent events)."""
    if lifecycle is not None:
        return "in_sync" if lifecycle.runs.containers.known else "not_in_sync"
    return "no_runtime_socket" if isinstance(pipeline.aggregator.runs, UnseenContainers) else "off"


LIFECYCLE_STATES = ("in_sync", "not_in_sync", "no_runtime_socket", "off")


def state_metric(lifecycle: LifecyclePart | None, pipeline: Pipeline) -> Metric:
    """``lifecycle_state{state}``: 1 for :func:`lifecycle_state`'s answer, 0 for the others."""
    from stellaops_runtime.agent.prometheus_core import GaugeMetricFamily

    now = lifecycle_state(lifecycle, pipeline)
    m = GaugeMetricFamily(
        "stellaops_runtime_lifecycle_state",
        "What the agent knows of the node's containers (1: the current state): in_sync, not_in_sync "
        "or no_runtime_socket (no window above ActiveTracing), off (lifecycle.enabled: false).",
        labels=["state"],
    )
    for state in LIFECYCLE_STATES:
        m.add_metric([state], 1 if state == now else 0)
    return m
