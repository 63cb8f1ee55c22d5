"""Posture per observation window: the highest level the window's events evidence, never declared."""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.events import ContainerInfo, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.contracts.hotsymbols import ObservationWindow, higher_posture
from stellaops_runtime.contracts.posture import EVENT_POSTURE, FUNCTION_VISIBLE, ORDER, Posture
from stellaops_runtime.controller.posture import Posture as ControllerPosture
from stellaops_runtime.hotsymbols.aggregate import HotSymbolAggregator

S = 1_000_000_000
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def ev(kind: EventKind, t: float, *, image: str = A, node: str = "node-1") -> RuntimeCallEvent:
    return RuntimeCallEvent(
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
        (EventKind.UPROBE, Posture.EBPF_DEEP),
        (EventKind.USDT, Posture.FULL_INSTRUMENTATION),
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
        ev(EventKind.SYSCALL, 2),
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
    a.observe(ev(EventKind.USDT, 1))
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
        Posture.NONE < Posture.PASSIVE < FUNCTION_VISIBLE < Posture.EBPF_DEEP < Posture.FULL_INSTRUMENTATION
    )
    assert [p.rank for p in ORDER] == [0, 1, 2, 3, 4]
