"""A running container of the image that sent no event lowers the window.

hotsymbols/container_runs.py and window_units.py: the runtime's registry (the agent's
lifecycle part, hotsymbols/run_windows.py ``tick``) says which containers of an image ran
when; one that ran in a window without sending it an event may have run a function nobody
saw, so the window's ``evidenced`` is at most Passive; here it is None, the day mark
(hotsymbols/day_calls.py, tests/unit/test_day_calls.py): the silent container showed no call
that UTC day while the traced one did. The container sending the events,
named by 31 characters of its id as Tetragon does, is the registry's 64-character one, not
a second, silent container. A container learnt of after the window's rows were written
lowers the window in a later drain (a row with no events restates ``evidenced``); while the
registry is not in sync no window reads above ActiveTracing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from stellaops_runtime.agent.lifecycle_part import LifecyclePart, Target
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.events import (
    ContainerInfo,
    EventKind,
    ProcessInfo,
    RuntimeCallEvent,
    StackFrame,
)
from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.aggregate import HotSymbolAggregator
from stellaops_runtime.hotsymbols.container_runs import MAX_CONTAINERS, RETAIN_NS, ContainerRuns
from stellaops_runtime.hotsymbols.run_windows import Run, RunWindows
from stellaops_runtime.hotsymbols.window_units import KEEP_DRAINS
from stellaops_runtime.lifecycle.registry import ContainerRecord
from stellaops_runtime.store.rows import obs_tuple

S = 1_000_000_000
W = 60 * S
T0 = 1_800_000_000 * S - (1_800_000_000 * S) % W  # a window start
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
TRACED, SILENT, OTHER = "1f" * 32, "2e" * 32, "3d" * 32  # the runtime's 64-character ids


def stacked(t: float, container: str | None = TRACED[:31], image: str = A) -> RuntimeCallEvent:
    """A kprobe with a counted user stack (EbpfDeep) of ``container`` (Tetragon's 31 characters)."""
    return RuntimeCallEvent(
        user_stack=[StackFrame(module="/lib/libz.so.1", symbol="inflate", offset=0x10)],
        kind=EventKind.KPROBE,
        timestamp_ns=T0 + int(t * S),
        node_name="n1",
        process=ProcessInfo(exec_id="e1", pid=1, binary="/bin/app"),
        container=None if container is None else ContainerInfo(id=container, image_digest=image),
        function_name="__x64_sys_openat",
    )


def run(cid: str, image: str = A, start: float = -100, stop: float | None = None) -> Run:
    """The registry's run of ``cid``: started ``start`` s after T0, running or stopped at ``stop``."""
    return Run(image, T0 + int(start * S), 0 if stop is None else T0 + int(stop * S), stop is None, cid)


def agent() -> HotSymbolAggregator:
    a = HotSymbolAggregator(window_seconds=60, min_confidence=0.0)
    a.runs = RunWindows(window_seconds=60, node_name="n1")
    return a


def tick(a: HotSymbolAggregator, t: float, runs: list[Run], known: bool = True) -> None:
    assert a.runs is not None
    a.runs.tick(T0 + int(t * S), known, runs, known)


def final(rows: list[ObservationWindow], image: str = A, win: int = T0) -> ObservationWindow:
    """The window as the store holds it after every row (rows merged in order, as the writer does)."""
    mine = [o for o in rows if (o.image_digest, o.window_start_ns) == (image, win)]
    out = mine[0]
    for o in mine[1:]:
        out = out.merged(o)
    return out


def test_a_silent_running_container_lowers_the_window_to_passive() -> None:
    a = agent()
    tick(a, 1, [run(TRACED), run(SILENT)])
    a.observe(stacked(2))
    (row,) = a.drain()[1]
    assert (row.posture, row.evidenced, row.event_count) == (Posture.EBPF_DEEP, Posture.NONE, 1)


def test_the_container_sending_the_events_is_not_counted_silent() -> None:
    a = agent()
    tick(a, 1, [run(TRACED), run(OTHER, image=B)])  # another image's container says nothing of A
    a.observe(stacked(2))
    (row,) = a.drain()[1]
    assert row.evidenced is Posture.EBPF_DEEP


def test_the_registry_names_the_image_when_the_events_name_it_otherwise() -> None:
    """Tetragon named the image by another digest than the runtime: the silent container of the
    registry's image of the traced container still counts."""
    a = agent()
    tick(a, 1, [run(TRACED, image=B), run(SILENT, image=B)])
    a.observe(stacked(2))  # its events name image A
    (row,) = a.drain()[1]
    assert row.image_digest == A and row.evidenced is Posture.NONE


def test_only_containers_that_ran_in_the_window_count() -> None:
    a = agent()
    before, after = run(SILENT, start=-200, stop=-1), run(OTHER, start=61)  # stopped before, started after
    tick(a, 1, [run(TRACED), before, after])
    a.observe(stacked(2))
    assert a.drain()[1][0].evidenced is Posture.EBPF_DEEP
    for inside in (run(SILENT, start=-200, stop=30), run(SILENT, start=30)):  # stopped in it, started in it
        b = agent()
        tick(b, 1, [run(TRACED), inside])
        b.observe(stacked(2))
        assert b.drain()[1][0].evidenced is Posture.NONE, inside


def test_a_container_learnt_of_later_restates_the_window() -> None:
    """The events were written before the silent container was known (it started after them, its
    image digest was learnt later): a later drain writes the window's value again, no events."""
    a = agent()
    tick(a, 1, [run(TRACED)])
    a.observe(stacked(2))
    first = a.drain()[1]
    assert final(first).evidenced is Posture.EBPF_DEEP
    tick(a, 40, [run(TRACED), run(SILENT, start=39)])
    later = a.drain()[1]
    (restated,) = [o for o in later if o.window_start_ns == T0]
    assert (restated.event_count, restated.posture, restated.source) == (0, None, "")
    assert obs_tuple(restated)[-1] == Posture.NONE.rank  # the store is given the new value
    kept = final(first + later)
    assert (kept.evidenced, kept.posture, kept.event_count) == (Posture.NONE, Posture.EBPF_DEEP, 1)
    assert not [o for o in a.drain()[1] if o.window_start_ns == T0]  # said once
    a.observe(stacked(50))  # more events of the window: the silent container still counts
    assert final(first + later + a.drain()[1]).evidenced is Posture.NONE


def test_the_restatement_survives_the_lifecycle_row_of_its_window() -> None:
    """The window ends and its lifecycle row is drained with the restatement: merged, the row still
    carries the lowered value (a lifecycle row alone carries none)."""
    a = agent()
    a.runs.final = True  # type: ignore[union-attr]  # no settle time
    tick(a, -1, [run(TRACED)])  # watched from before the window: it gets its lifecycle row
    a.observe(stacked(2))
    first = a.drain()[1]
    tick(a, 30, [run(TRACED)])
    tick(a, 61, [run(TRACED), run(SILENT, start=50)])
    later = [o for o in a.drain()[1] if o.window_start_ns == T0]
    assert len(later) == 1 and later[0].posture is Posture.PASSIVE and later[0].event_count == 0
    assert final(first + later).evidenced is Posture.NONE
    lifecycle_alone = ObservationWindow(A, "n1", T0, 0, Posture.PASSIVE, 60, "tetragon")
    assert obs_tuple(lifecycle_alone)[-1] is None  # leaves the stored value alone


def test_no_window_reads_above_active_tracing_until_the_registry_is_in_sync() -> None:
    a = agent()
    a.observe(stacked(2))  # before the first sample
    assert final(a.drain()[1]).evidenced is Posture.ACTIVE_TRACING
    tick(a, 3, [run(TRACED)])  # in sync: the window is written again at its value
    assert final(a.drain()[1]).evidenced is Posture.EBPF_DEEP
    tick(a, 4, [], known=False)  # the runtime is away
    a.observe(stacked(5))
    assert final(a.drain()[1]).evidenced is Posture.ACTIVE_TRACING
    host = agent()
    host.observe(stacked(2, container=None))  # host processes have no container to miss
    assert final(host.drain()[1], image="host:n1").evidenced is Posture.EBPF_DEEP


def test_a_removed_container_counts_up_to_its_removal() -> None:
    a = agent()
    tick(a, 1, [run(TRACED), run(SILENT)])
    tick(a, 70, [run(TRACED)])  # SILENT removed while running: stopped by 70 s at the latest
    a.observe(stacked(2))
    a.observe(stacked(125))
    rows = a.drain()[1]
    assert final(rows).evidenced is Posture.NONE
    assert final(rows, win=T0 + 2 * W).evidenced is Posture.EBPF_DEEP


def test_a_container_restarted_under_its_id_keeps_its_earlier_run() -> None:
    """The registry names only a container's latest start (Docker's --restart, a task started
    again): a window of its earlier run whose events are drained after the restart still meets it."""
    a = agent()
    tick(a, 1, [run(TRACED), run(SILENT, start=-100)])
    tick(a, 200, [run(TRACED), run(SILENT, start=190)])  # SILENT exited and started again at 190 s
    a.observe(stacked(2))  # a window of its first run, drained after the restart
    assert final(a.drain()[1]).evidenced is Posture.NONE
    runs = ContainerRuns(60)
    runs.update(T0, True, [run(SILENT, start=-100)])
    runs.update(T0 + 200 * S, True, [run(SILENT, image=B, start=190)])  # another image under the id
    assert not runs.silent(A, T0, ())  # only a run of the same image is kept


def test_an_agent_restarted_meets_the_silent_container_in_replayed_windows() -> None:
    """A new agent replays the export from its record: the registry's start times reach back."""
    a = agent()
    tick(a, 600, [run(TRACED, start=-300), run(SILENT, start=-300)])
    a.observe(stacked(2))  # ten minutes ago
    assert final(a.drain()[1]).evidenced is Posture.NONE


def test_the_restated_windows_are_those_kept() -> None:
    a = agent()
    tick(a, 1, [run(TRACED)])
    a.observe(stacked(2))
    a.drain()
    for _ in range(KEEP_DRAINS + 1):
        a.drain()
    tick(a, 5, [run(TRACED), run(SILENT)])
    assert a.drain()[1] == []  # forgotten: a new event of it would read at most ActiveTracing


def test_runs_are_bounded() -> None:
    r = ContainerRuns(60)
    r.update(T0, True, [run(f"{i:031x}" + "0" * 33, start=-10, stop=-5) for i in range(MAX_CONTAINERS + 5)])
    assert len(r) == MAX_CONTAINERS
    r.update(T0, True, [run(TRACED)])
    assert r.silent(A, T0 - W, ["x"])  # gone from the registry, kept for a while
    r.update(T0 + RETAIN_NS + W, True, [run(TRACED)])
    assert len(r) == 1


def _lifecycle_part() -> LifecyclePart:
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False},
                        "lifecycle": {"windowSettleSeconds": 0}})  # fmt: skip
    return LifecyclePart(
        cfg, Target("containerd", "/nonexistent"), node_name="n1", pipeline=Pipeline(cfg, node_name="n1")
    )


def _record(cid: str) -> ContainerRecord:
    started = dt.datetime.fromtimestamp((T0 - 100 * S) / S, dt.UTC)
    return ContainerRecord(
        container_id=cid, namespace="k8s.io", image_digest=A, status="running", started_at=started
    )


def test_the_agents_lifecycle_sample_gives_the_registrys_containers() -> None:
    """Through the agent's lifecycle part: the registry's records (64-character ids) become runs."""
    lp = _lifecycle_part()
    lp._tick(T0 + S, True, [_record(TRACED), _record(SILENT)], True)
    lp.pipeline.aggregator.observe(stacked(2))
    (row,) = [o for o in lp.pipeline.drain()[1] if o.event_count]
    assert row.evidenced is Posture.NONE


def test_an_observer_that_stopped_follows_no_container() -> None:
    """The observer task ended on an error (the agent keeps running): its registry is not followed any
    more, so no window may rest on a container being absent from it."""

    class Broken:
        def events(self, stop: asyncio.Event) -> AsyncIterator[None]:
            async def gen() -> AsyncIterator[None]:
                raise RuntimeError("the observer broke")
                yield

            return gen()

    async def in_pipeline(fn: Any, *args: Any) -> Any:
        return fn(*args)

    lp = _lifecycle_part()
    lp._tick(T0 + S, True, [_record(TRACED)], True)
    assert lp.runs.containers.known
    lp._make_observer = Broken  # type: ignore[assignment,method-assign]
    asyncio.run(lp.run(asyncio.Event(), in_pipeline, lambda: None))
    assert not lp.runs.containers.known
    lp.pipeline.aggregator.observe(stacked(2))
    (row,) = [o for o in lp.pipeline.drain()[1] if o.event_count]
    assert row.evidenced is Posture.ACTIVE_TRACING


def test_a_window_that_met_a_time_out_of_sync_reads_at_most_active_tracing_once_in_sync_again() -> None:
    """A container that started and ended while the registry was not in sync is in no later list:
    a window written after the sync came back, over that time, cannot rest on its absence."""
    a = agent()
    tick(a, 1, [run(TRACED)])
    tick(a, 10, [], known=False)  # the runtime away from 10 s (its last sample in sync at 1 s)
    tick(a, 40, [run(TRACED)])  # back: what runs is listed again
    a.observe(stacked(2))
    a.observe(stacked(62))  # the next window, after the sync came back
    rows = a.drain()[1]
    assert final(rows).evidenced is Posture.ACTIVE_TRACING
    assert final(rows, win=T0 + W).evidenced is Posture.EBPF_DEEP


def test_a_runtime_stream_cut_and_listed_again_between_two_samples_is_a_hole() -> None:
    """The observer reconnected between two samples of the agent's lifecycle part (never out of sync at
    a sample): what ran in between is in no list, so its window reads at most ActiveTracing."""

    class Stats:
        connects, connected, unwatched_starts, missed_events = 1, True, 0, 0

    class Synced:
        def is_set(self) -> bool:
            return True

    class Observer:
        stats, unwatched, synced = Stats(), (), Synced()
        take_unwatched_from = staticmethod(lambda: 0)  # no run the registry missed

        class registry:
            removals = 0

            @staticmethod
            def records() -> list[ContainerRecord]:
                return [_record(TRACED)]

            @staticmethod
            def removed_since(_: int) -> tuple[list[ContainerRecord], bool]:
                return [], False

    class Source:
        connected, connects = True, 1

    async def in_pipeline(fn: Any, *args: Any) -> Any:
        return fn(*args)

    lp = _lifecycle_part()
    lp.observer = Observer()  # type: ignore[assignment]
    clock = iter([T0 + S, T0 + 3 * S, T0 + 70 * S])
    import stellaops_runtime.agent.lifecycle_part as part

    real = part.now_pair
    part.now_pair = lambda: (next(clock), None)  # type: ignore[assignment]
    try:
        asyncio.run(lp._sample_once(in_pipeline, Source))
        Observer.stats.connects = 2  # cut and listed again before the next sample
        asyncio.run(lp._sample_once(in_pipeline, Source))
        asyncio.run(lp._sample_once(in_pipeline, Source))  # no cut since: no hole
    finally:
        part.now_pair = real  # type: ignore[assignment]
    lp.pipeline.aggregator.observe(stacked(2))
    lp.pipeline.aggregator.observe(stacked(125))
    rows = [o for o in lp.pipeline.drain()[1] if o.event_count]
    assert final(rows).evidenced is Posture.ACTIVE_TRACING
    assert final(rows, win=T0 + 2 * W).evidenced is Posture.EBPF_DEEP


def test_the_holes_are_bounded() -> None:
    from stellaops_runtime.hotsymbols.container_runs import MAX_HOLES

    r = ContainerRuns(60)
    for i in range(MAX_HOLES * 3):
        r.hole(T0 + i * 10 * W, T0 + i * 10 * W + S)
    assert len(r._holes) == MAX_HOLES
    assert r.unsure(T0) and r.unsure(T0 + 5 * W)  # the oldest merged: wider, never dropped


def test_a_container_created_and_removed_between_two_samples_is_a_run() -> None:
    """``docker run --rm`` / ``ctr run --rm`` of a second: the registry held the container between two
    samples of the agent's lifecycle part and removed it before the next; it ran the image unwatched,
    so the window it met must count it (as it would had a sample seen it), not read EbpfDeep."""
    from stellaops_runtime.lifecycle.registry import ContainerRegistry

    registry = ContainerRegistry()
    registry.put(_record(TRACED))

    class Stats:
        connects, connected, unwatched_starts, missed_events = 1, True, 0, 0

    class Synced:
        def is_set(self) -> bool:
            return True

    class Observer:
        stats, unwatched, synced = Stats(), (), Synced()
        take_unwatched_from = staticmethod(lambda: 0)  # no run the registry missed

    Observer.registry = registry  # type: ignore[attr-defined]

    class Source:
        connected, connects = True, 1

    async def in_pipeline(fn: Any, *args: Any) -> Any:
        return fn(*args)

    lp = _lifecycle_part()
    lp.observer = Observer()  # type: ignore[assignment]
    clock = iter([T0 + S, T0 + 3 * S])
    import stellaops_runtime.agent.lifecycle_part as part

    real = part.now_pair
    part.now_pair = lambda: (next(clock), None)  # type: ignore[assignment]
    try:
        asyncio.run(lp._sample_once(in_pipeline, Source))
        brief = _record(SILENT)  # started and stopped between the samples, then removed (--rm)
        brief.started_at = dt.datetime.fromtimestamp((T0 + 1.5 * S) / S, dt.UTC)
        brief.stopped_at = dt.datetime.fromtimestamp((T0 + 1.8 * S) / S, dt.UTC)
        brief.status, brief.exit_code = "stopped", 0
        registry.put(brief)
        registry.remove("k8s.io", SILENT)
        asyncio.run(lp._sample_once(in_pipeline, Source))
    finally:
        part.now_pair = real  # type: ignore[assignment]
    lp.pipeline.aggregator.observe(stacked(2))
    (row,) = [o for o in lp.pipeline.drain()[1] if o.event_count]
    assert row.evidenced is Posture.NONE  # as test_the_agents_lifecycle_sample_gives_the_registrys_containers


def test_the_registrys_removals_are_kept_for_the_next_sample_bounded() -> None:
    """More removals between two samples than the registry keeps: the sample knows some were lost
    (the agent then takes the time since its last sample as a hole: test above, hole())."""
    from stellaops_runtime.lifecycle.registry import REMOVED_MAX, ContainerRegistry

    reg = ContainerRegistry()
    for i in range(REMOVED_MAX + 5):
        reg.put(ContainerRecord(container_id=f"c{i}", namespace="k8s.io"))
        reg.remove("k8s.io", f"c{i}")
    kept, lost = reg.removed_since(0)
    assert lost and len(kept) == REMOVED_MAX and kept[-1].container_id == f"c{REMOVED_MAX + 4}"
    assert reg.removed_since(reg.removals) == ([], False)
    reg.put(ContainerRecord(container_id="late", namespace="k8s.io"))
    reg.remove("k8s.io", "late")
    assert [r.container_id for r in reg.removed_since(reg.removals - 1)[0]] == ["late"]


def test_more_removals_between_two_samples_than_kept_is_a_hole() -> None:
    """The registry kept only its latest REMOVED_MAX removals: one dropped may have been a run, so
    the window over the time since the last sample reads at most ActiveTracing."""
    lost = iter([False, True, False])

    class Stats:
        connects, connected, unwatched_starts, missed_events = 1, True, 0, 0

    class Synced:
        def is_set(self) -> bool:
            return True

    class Observer:
        stats, unwatched, synced = Stats(), (), Synced()
        take_unwatched_from = staticmethod(lambda: 0)  # no run the registry missed

        class registry:
            removals = 0

            @staticmethod
            def records() -> list[ContainerRecord]:
                return [_record(TRACED)]

            @staticmethod
            def removed_since(_: int) -> tuple[list[ContainerRecord], bool]:
                return [], next(lost)

    class Source:
        connected, connects = True, 1

    async def in_pipeline(fn: Any, *args: Any) -> Any:
        return fn(*args)

    lp = _lifecycle_part()
    lp.observer = Observer()  # type: ignore[assignment]
    clock = iter([T0 + S, T0 + 3 * S, T0 + 70 * S])
    import stellaops_runtime.agent.lifecycle_part as part

    real = part.now_pair
    part.now_pair = lambda: (next(clock), None)  # type: ignore[assignment]
    try:
        for _ in range(3):
            asyncio.run(lp._sample_once(in_pipeline, Source))
    finally:
        part.now_pair = real  # type: ignore[assignment]
    lp.pipeline.aggregator.observe(stacked(2))
    lp.pipeline.aggregator.observe(stacked(125))
    rows = [o for o in lp.pipeline.drain()[1] if o.event_count]
    assert final(rows).evidenced is Posture.ACTIVE_TRACING
    assert final(rows, win=T0 + 2 * W).evidenced is Posture.EBPF_DEEP


def test_a_run_read_late_and_gone_makes_a_hole_from_its_start() -> None:
    """A container started, ran and was removed before the observer read it (its start handled after
    a sample that was in sync: events read late, or the events received before a connection's mark
    applied after its list). It counts in lifecycle_unwatched_starts, and the time it ran, not only
    the time since the latest sample in sync, is a hole: here it ran in the window before that
    sample, where the traced sibling's events must not read EbpfDeep."""

    class Stats:
        connects, connected, unwatched_starts, missed_events = 1, True, 0, 0

    class Synced:
        def is_set(self) -> bool:
            return True

    class Observer:
        stats, unwatched, synced = Stats(), (), Synced()
        unread_from = 0  # the earliest start of such a run since the last sample (0: none)

        def take_unwatched_from(self) -> int:
            took, self.unread_from = self.unread_from, 0
            return took

        class registry:
            removals = 0

            @staticmethod
            def records() -> list[ContainerRecord]:
                return [_record(TRACED)]

            @staticmethod
            def removed_since(_: int) -> tuple[list[ContainerRecord], bool]:
                return [], False

    class Source:
        connected, connects = True, 1

    async def in_pipeline(fn: Any, *args: Any) -> Any:
        return fn(*args)

    lp = _lifecycle_part()
    obs = Observer()
    lp.observer = obs  # type: ignore[assignment]
    clock = iter([T0 + 59 * S, T0 + 61 * S, T0 + 62 * S, T0 + 63 * S])
    import stellaops_runtime.agent.lifecycle_part as part

    real = part.now_pair
    part.now_pair = lambda: (next(clock), None)  # type: ignore[assignment]
    try:
        asyncio.run(lp._sample_once(in_pipeline, Source))  # 59 s: in sync
        asyncio.run(lp._sample_once(in_pipeline, Source))  # 61 s: in sync, the start not read yet
        Stats.unwatched_starts += 1  # read at 61.5 s: it started at 59.5 s, and was gone
        obs.unread_from = T0 + 59 * S + S // 2
        asyncio.run(lp._sample_once(in_pipeline, Source))  # 62 s: not in sync
        asyncio.run(lp._sample_once(in_pipeline, Source))  # 63 s: in sync again
    finally:
        part.now_pair = real  # type: ignore[assignment]
    lp.pipeline.aggregator.observe(stacked(2))
    rows = [o for o in lp.pipeline.drain()[1] if o.event_count]
    assert final(rows).evidenced is Posture.ACTIVE_TRACING


def test_a_hole_reaching_back_before_the_latest_widens_it() -> None:
    """hole() with a start before the latest hole's (a run learnt of late): the earlier time is in."""
    c = ContainerRuns(60)
    c.hole(100 * S, 200 * S)
    c.hole(50 * S, 210 * S)
    assert c.unsure(0) and c.unsure(150 * S) and not c.unsure(300 * S)
    o = ContainerRuns(60)
    o.update(100 * S, True, [])
    o.update(200 * S, False, [])  # an open hole from 100 s
    o.hole(30 * S, 250 * S)
    assert o.unsure(0)


def test_a_container_id_removed_and_created_again_between_two_samples_keeps_both_runs() -> None:
    """``ctr run --rm IMAGE job`` twice in a row (one id, one image): the first run, removed between
    two samples, comes with the removals; the second, listed under the same id, must not replace it
    (the first ran in the window before, where the traced sibling's events must not read EbpfDeep)."""
    from stellaops_runtime.lifecycle.registry import ContainerRegistry

    registry = ContainerRegistry()
    registry.put(_record(TRACED))

    class Stats:
        connects, connected, unwatched_starts, missed_events = 1, True, 0, 0

    class Synced:
        def is_set(self) -> bool:
            return True

    class Observer:
        stats, unwatched, synced = Stats(), (), Synced()
        take_unwatched_from = staticmethod(lambda: 0)

    Observer.registry = registry  # type: ignore[attr-defined]

    class Source:
        connected, connects = True, 1

    async def in_pipeline(fn: Any, *args: Any) -> Any:
        return fn(*args)

    def at(ns: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(ns / S, dt.UTC)

    lp = _lifecycle_part()
    lp.observer = Observer()  # type: ignore[assignment]
    clock = iter([T0 + 59 * S, T0 + 61 * S])
    import stellaops_runtime.agent.lifecycle_part as part

    real = part.now_pair
    part.now_pair = lambda: (next(clock), None)  # type: ignore[assignment]
    try:
        asyncio.run(lp._sample_once(in_pipeline, Source))
        first = _record(SILENT)  # ran 59.2 s to 59.4 s, removed
        first.started_at, first.stopped_at = at(T0 + 59.2 * S), at(T0 + 59.4 * S)
        first.status, first.exit_code = "stopped", 0
        registry.put(first)
        registry.remove("k8s.io", SILENT)
        again = _record(SILENT)  # the same id again, from 60.5 s, running at the next sample
        again.started_at = at(T0 + 60.5 * S)
        registry.put(again)
        asyncio.run(lp._sample_once(in_pipeline, Source))
    finally:
        part.now_pair = real  # type: ignore[assignment]
    lp.pipeline.aggregator.observe(stacked(2))
    (row,) = [o for o in lp.pipeline.drain()[1] if o.event_count]
    assert (
        row.evidenced is Posture.NONE
    )  # as test_a_container_created_and_removed_between_two_samples_is_a_run


def test_an_id_created_again_with_another_image_keeps_the_earlier_images_run() -> None:
    c = ContainerRuns(60)
    c.update(T0 + 61 * S, True, [run(SILENT, A, 59.2, 59.4), run(SILENT, B, 60.5)])
    assert c.silent(A, T0, ()) and c.silent(B, T0 + W, ())
    c.update(T0 + 62 * S, True, [run(SILENT, B, 60.5)])  # the earlier run stays (stopped) after
    assert c.silent(A, T0, ()) and not c.silent(A, T0 + W, ())
