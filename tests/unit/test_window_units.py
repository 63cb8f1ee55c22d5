"""A window's evidenced posture is its weakest container's, whatever the flush timing.

hotsymbols/window_units.py: one pod of an image traced with user stacks does not make the
window able to see calls made in another pod of the image traced without them (or by no
policy: its exec events only). The value is cumulative over the window's drains, so the
last row of a window (which the store keeps) counts every container; a window whose
containers were dropped reads at most ActiveTracing when it gets events again.
"""

from __future__ import annotations

import itertools

import pytest

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
from stellaops_runtime.hotsymbols.window_units import KEEP_DRAINS
from stellaops_runtime.store.batches import unit_from_json, unit_to_json

S = 1_000_000_000
A = "sha256:" + "a" * 64


def ev(kind: EventKind, t: float, container: str | None, *, stack: bool = False) -> RuntimeCallEvent:
    frames = [StackFrame(module="/lib/libz.so.1", symbol="inflate", offset=0x10)] if stack else []
    return RuntimeCallEvent(
        user_stack=frames,
        kind=kind,
        timestamp_ns=int(t * S),
        node_name="n1",
        process=ProcessInfo(exec_id=f"e-{container}", pid=1, binary="/bin/app"),
        container=None if container is None else ContainerInfo(id=container, image_digest=A),
        function_name="crc32" if kind is EventKind.UPROBE else "__x64_sys_openat",
        module="/lib/libz.so.1",
    )


STRONG = [ev(EventKind.EXEC, 1, "c1"), ev(EventKind.KPROBE, 2, "c1", stack=True)]
WEAK = {
    "stackless kprobes": ([ev(EventKind.KPROBE, 3, "c2")], Posture.ACTIVE_TRACING),
    "uprobes only": ([ev(EventKind.UPROBE, 3, "c2")], Posture.ACTIVE_TRACING),
    "exec only (no policy)": ([ev(EventKind.EXEC, 3, "c2")], Posture.PASSIVE),
}


def rows(
    events: list[RuntimeCallEvent], drain_after: frozenset[int] | set[int] = frozenset()
) -> list[ObservationWindow]:
    """The rows of every drain, in order, draining after the events at the given indexes."""
    a = HotSymbolAggregator(window_seconds=60, min_confidence=0.0)
    out: list[ObservationWindow] = []
    for i, e in enumerate(events):
        a.observe(e)
        if i in drain_after:
            out += a.drain()[1]
    out += a.drain()[1]
    return out


def final(out: list[ObservationWindow]) -> Posture | None:
    """What the store keeps: the latest row with events (store/pg_write.py, agent_sql.py)."""
    merged = out[0]
    for o in out[1:]:
        merged = merged.merged(o)
    return merged.evidenced


def later_call(container: str) -> RuntimeCallEvent:
    """A call of ``container`` later the same UTC day, in another window: it was traced, not unwatched."""
    return ev(EventKind.KPROBE, 3600, container, stack=True)


def first_window(out: list[ObservationWindow]) -> Posture | None:
    return final([o for o in out if o.window_start_ns == 0])


@pytest.mark.parametrize("weak", list(WEAK), ids=list(WEAK))
def test_a_weaker_container_of_the_image_bounds_the_window(weak: str) -> None:
    events, floor = WEAK[weak]
    (row,) = rows([*STRONG, *events])
    # c2 showed no call all day while c1 did: the day mark (hotsymbols/day_calls.py)
    assert row.posture is Posture.EBPF_DEEP and row.evidenced is Posture.NONE
    assert first_window(rows([*STRONG, *events, later_call("c2")])) is floor  # c2 was idle: its floor
    (alone,) = rows(STRONG)
    assert alone.evidenced is Posture.EBPF_DEEP


@pytest.mark.parametrize("weak", list(WEAK), ids=list(WEAK))
def test_the_answer_does_not_depend_on_when_the_agent_drained(weak: str) -> None:
    events, floor = WEAK[weak]
    stream = [*STRONG, *events, ev(EventKind.KPROBE, 4, "c1", stack=True)]
    for k in range(len(stream)):
        for cut in itertools.combinations(range(len(stream) - 1), k):
            assert final(rows(stream, set(cut))) is Posture.NONE, cut
            assert first_window(rows([*stream, later_call("c2")], set(cut))) is floor, cut
    # and the weak container first: its later strong events are its highest
    stream = [ev(EventKind.EXEC, 1, "c2"), *STRONG, ev(EventKind.KPROBE, 5, "c2", stack=True)]
    for cut in range(len(stream) - 1):
        assert final(rows(stream, {cut})) is Posture.EBPF_DEEP


def test_host_processes_are_one_container_and_windows_are_apart() -> None:
    out = rows([ev(EventKind.KPROBE, 1, None, stack=True), ev(EventKind.EXEC, 2, None),
                ev(EventKind.KPROBE, 61, "c1", stack=True), ev(EventKind.EXEC, 62, "c2")])  # fmt: skip
    got = {(o.image_digest, o.window_start_ns // S): o.evidenced for o in out}
    assert got == {("host:n1", 0): Posture.EBPF_DEEP, (A, 60): Posture.NONE}  # c2: no call that day


def test_a_window_whose_containers_were_dropped_reads_active_tracing_at_most() -> None:
    a = HotSymbolAggregator(window_seconds=60, min_confidence=0.0)
    a.observe(ev(EventKind.KPROBE, 1, "c2"))  # the weak container, early in the window
    a.drain()
    # its calls later that day (an idle container, not an unwatched one: else its first window
    # carries the day's mark, test_day_calls_late_window.py)
    a.observe(ev(EventKind.KPROBE, 90, "c2", stack=True))
    a.drain()
    for _ in range(KEEP_DRAINS + 1):  # the window is quiet for longer than its containers are kept
        a.drain()
    a.observe(ev(EventKind.KPROBE, 30, "c1", stack=True))
    (row,) = a.drain()[1]
    assert row.posture is Posture.EBPF_DEEP and row.evidenced is Posture.ACTIVE_TRACING
    a.observe(ev(EventKind.KPROBE, 121, "c1", stack=True))  # a later window is unaffected
    (row,) = a.drain()[1]
    assert row.evidenced is Posture.EBPF_DEEP


def test_rows_without_events_leave_evidenced_to_the_rows_with_events() -> None:
    events = ObservationWindow(A, "n1", 0, 5, Posture.EBPF_DEEP, 60, "tetragon", evidenced=Posture.EBPF_DEEP)
    later = ObservationWindow(
        A, "n1", 0, 2, Posture.ACTIVE_TRACING, 60, "tetragon", evidenced=Posture.PASSIVE
    )
    lifecycle = ObservationWindow(A, "n1", 0, 0, Posture.PASSIVE, 60, "tetragon")
    gap = ObservationWindow(A, "n1", 0, 0, None, 60, "none", gap_start_ns=1, gap_end_ns=2)
    assert events.merged(lifecycle).evidenced is Posture.EBPF_DEEP
    assert gap.merged(events).evidenced is Posture.EBPF_DEEP
    assert events.merged(gap).evidenced is Posture.EBPF_DEEP
    assert events.merged(later).evidenced is Posture.PASSIVE  # the later count holds every container
    assert events.merged(later).posture is Posture.EBPF_DEEP
    plain = ObservationWindow(A, "n1", 0, 5, Posture.EBPF_DEEP, 60, "tetragon")  # none counted: as posture
    assert (
        plain.evidenced_posture is Posture.EBPF_DEEP
        and lifecycle.merged(plain).evidenced_posture is Posture.EBPF_DEEP
    )


def test_the_spool_keeps_evidenced() -> None:
    o = ObservationWindow(A, "n1", 0, 5, Posture.EBPF_DEEP, 60, "tetragon", evidenced=Posture.PASSIVE)
    assert unit_from_json(unit_to_json(o)) == o
