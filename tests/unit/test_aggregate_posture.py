"""Posture per observation window: the highest level the window's events evidence, never declared.

Only kernel-probe events whose user stack was counted show the image's functions (EbpfDeep,
the first posture that backs a "not observed"); the same events without a stack, uprobes
and USDT probes evidence ActiveTracing (contracts/posture.py).
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.events import (
    ContainerInfo,
    EventKind,
    ProcessInfo,
    RuntimeCallEvent,
    StackFrame,
)
from stellaops_runtime.contracts.hotsymbols import ObservationWindow, higher_posture
from stellaops_runtime.contracts.posture import EVENT_POSTURE, FUNCTION_VISIBLE, ORDER, Posture, event_rank
from stellaops_runtime.controller.posture import Posture as ControllerPosture
from stellaops_runtime.hotsymbols.aggregate import HotSymbolAggregator

S = 1_000_000_000
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def ev(
    kind: EventKind, t: float, *, image: str = A, node: str = "node-1", stack: bool = False
) -> RuntimeCallEvent:
    frames = [StackFrame(module="/lib/libz.so.1", symbol="inflate", offset=0x10)] if stack else []
    return RuntimeCallEvent(
        user_stack=frames,
        kind=kind,
        timestamp_ns=int(t * S),
        node_name=node,
        process=ProcessInfo(exec_id="e1", pid=1, binary="/bin/app"),
        container=ContainerInfo(id="c1", image_digest=image),
        function_name="crc32" if kind in (EventKind.UPROBE, EventKind.USDT) else "__x64_sys_openat",
        module="/lib/libz.so.1",
    )


def windows(
    *events: RuntimeCallEvent, source: str = "tetragon"
) -> dict[tuple[str, str, int], ObservationWindow]:
    a = HotSymbolAggregator(window_seconds=60, min_confidence=0.0, source=source)
    for e in events:
        a.observe(e)
    _, obs = a.drain()
    return {(o.image_digest, o.node_name, o.window_start_ns // S): o for o in obs}


@pytest.mark.parametrize(
    ("kind", "posture"),
    [
        (EventKind.EXEC, Posture.PASSIVE),
        (EventKind.EXIT, Posture.PASSIVE),
        (EventKind.LOADER, Posture.PASSIVE),
        (EventKind.SYSCALL, Posture.ACTIVE_TRACING),
        (EventKind.KPROBE, Posture.ACTIVE_TRACING),
        (EventKind.TRACEPOINT, Posture.ACTIVE_TRACING),
        (EventKind.LSM, Posture.ACTIVE_TRACING),
        (EventKind.NETWORK, Posture.ACTIVE_TRACING),
        (EventKind.UPROBE, Posture.ACTIVE_TRACING),  # only the probed function's calls show
        (EventKind.USDT, Posture.ACTIVE_TRACING),
    ],
)
def test_each_event_kind_evidences_its_posture(kind: EventKind, posture: Posture) -> None:
    assert EVENT_POSTURE[kind] is posture
    [w] = windows(ev(kind, 10)).values()
    assert (w.posture, w.event_count, w.window_seconds, w.source) == (posture, 1, 60, "tetragon")


def test_every_event_kind_has_a_posture() -> None:
    assert set(EVENT_POSTURE) == set(EventKind)


def test_window_posture_is_the_highest_of_its_events_per_image_node_and_window() -> None:
    got = windows(
        ev(EventKind.EXEC, 1),
        ev(EventKind.SYSCALL, 2, stack=True),
        ev(EventKind.UPROBE, 3),
        ev(EventKind.EXIT, 4),  # a later lower-level event does not lower it
        ev(EventKind.EXEC, 5, image=B),  # another image in the same window: lifecycle only
        ev(EventKind.SYSCALL, 6, node="node-2"),  # another node
        ev(EventKind.EXEC, 70),  # the next window of A
        source="bcc",
    )
    assert {k: (o.posture, o.event_count, o.source) for k, o in got.items()} == {
        (A, "node-1", 0): (Posture.EBPF_DEEP, 4, "bcc"),
        (B, "node-1", 0): (Posture.PASSIVE, 1, "bcc"),
        (A, "node-2", 0): (Posture.ACTIVE_TRACING, 1, "bcc"),
        (A, "node-1", 60): (Posture.PASSIVE, 1, "bcc"),
    }


def test_drain_resets_the_window_posture() -> None:
    a = HotSymbolAggregator(window_seconds=60, min_confidence=0.0)
    a.observe(ev(EventKind.SYSCALL, 1, stack=True))
    a.drain()
    a.observe(ev(EventKind.EXEC, 2))
    _, [w] = a.drain()
    assert (w.posture, w.event_count, w.source) == (Posture.PASSIVE, 1, "tetragon")


def test_posture_events_below_the_confidence_threshold_still_count_for_the_window() -> None:
    # Filtering hot-symbol keys by confidence does not change what the window was watched with.
    a = HotSymbolAggregator(window_seconds=60, min_confidence=0.9)
    a.observe(ev(EventKind.EXEC, 1))
    a.observe(ev(EventKind.SYSCALL, 2))
    _, [w] = a.drain()
    assert w.posture is Posture.ACTIVE_TRACING and w.event_count == 2


def test_observation_window_merge_adds_counts_and_keeps_the_higher_posture() -> None:
    x = ObservationWindow(A, "n", 0, 2, Posture.PASSIVE, 60, "tetragon")
    y = ObservationWindow(A, "n", 0, 3, Posture.EBPF_DEEP, 60, "tetragon")
    unknown = ObservationWindow(A, "n", 0, 1)
    assert x.merged(y) == ObservationWindow(A, "n", 0, 5, Posture.EBPF_DEEP, 60, "tetragon")
    assert y.merged(x).posture is Posture.EBPF_DEEP
    assert unknown.merged(x) == ObservationWindow(A, "n", 0, 3, Posture.PASSIVE, 60, "tetragon")
    assert x.merged(unknown).posture is Posture.PASSIVE
    assert unknown.merged(unknown).posture is None
    assert higher_posture(None, None) is None


def test_posture_order_and_the_controller_import() -> None:
    assert ControllerPosture is Posture
    assert list(ORDER) == sorted(Posture, key=lambda p: p.rank)
    assert (
        Posture.NONE
        < Posture.PASSIVE
        < Posture.ACTIVE_TRACING
        < FUNCTION_VISIBLE
        < Posture.FULL_INSTRUMENTATION
    )
    assert FUNCTION_VISIBLE is Posture.EBPF_DEEP
    assert [p.rank for p in ORDER] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("kind", [EventKind.SYSCALL, EventKind.KPROBE, EventKind.TRACEPOINT, EventKind.LSM])
def test_a_kernel_probe_with_a_user_stack_shows_functions_one_without_shows_none(kind: EventKind) -> None:
    [w] = windows(ev(kind, 1)).values()
    assert w.posture is Posture.ACTIVE_TRACING and w.posture < FUNCTION_VISIBLE
    [w] = windows(ev(kind, 1, stack=True)).values()
    assert w.posture is Posture.EBPF_DEEP and w.posture >= FUNCTION_VISIBLE
    assert event_rank(kind, stack_counted=True) == Posture.EBPF_DEEP.rank
    assert event_rank(kind, stack_counted=True, cap=Posture.PASSIVE) == Posture.PASSIVE.rank


@pytest.mark.parametrize("kind", [EventKind.UPROBE, EventKind.USDT, EventKind.NETWORK, EventKind.EXEC])
def test_a_stack_on_an_event_whose_stack_is_not_counted_shows_no_function(kind: EventKind) -> None:
    """The bridge counts stacks of kernel probes only: a stack elsewhere is not seen as functions."""
    [w] = windows(ev(kind, 1, stack=True)).values()
    assert w.posture is EVENT_POSTURE[kind] and w.posture < FUNCTION_VISIBLE
    assert event_rank(kind, stack_counted=True) == EVENT_POSTURE[kind].rank


def test_a_stack_below_the_confidence_threshold_shows_no_function() -> None:
    """With on-stack observations below ``minConfidenceThreshold`` none of the stack's functions is
    stored, so its window must not back a "not observed" (it read EbpfDeep, every absence a "no")."""
    a = HotSymbolAggregator(window_seconds=60, min_confidence=0.9)
    a.observe(ev(EventKind.SYSCALL, 1, stack=True))
    deltas, [w] = a.drain()
    assert w.posture is Posture.ACTIVE_TRACING
    assert {d.key.evidence.value for d in deltas} == {"kernel_call"}
    a = HotSymbolAggregator(window_seconds=60, min_confidence=0.8)
    a.observe(ev(EventKind.SYSCALL, 1, stack=True))
    deltas, [w] = a.drain()
    assert w.posture is Posture.EBPF_DEEP
    assert {d.key.evidence.value for d in deltas} == {"kernel_call", "on_stack"}
