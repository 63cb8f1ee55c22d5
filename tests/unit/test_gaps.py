"""Tetragon's drop signals -> observation gaps (hotsymbols/gaps.py): which windows, which images."""

from __future__ import annotations

from stellaops_runtime.contracts.drops import DropKind, DropSignal
from stellaops_runtime.contracts.events import (
    ContainerInfo,
    EventKind,
    PodInfo,
    ProcessInfo,
    RuntimeCallEvent,
)
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE, ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.gaps import GapTracker, container_id_of_cgroup

S = 1_000_000_000
T0 = 1_795_510_800 * S  # a window boundary (60 s windows)
CID = "ab12" * 16
IMG = "sha256:" + "1" * 64


def event(ts: int, *, cid: str = CID, image: str = IMG) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=ts,
        node_name="n1",
        process=ProcessInfo(binary="/bin/x"),
        container=ContainerInfo(id=cid, runtime="containerd", image_digest=image),
        pod=PodInfo(namespace="shop", name="web-1"),
    )


def throttle(kind: DropKind, ts: int, cgroup: str = f"cri-containerd-{CID}.scope") -> DropSignal:
    return DropSignal(kind, ts, "n1", cgroup=cgroup)


def gaps_of(rows: list[ObservationWindow]) -> dict[tuple[str, int], tuple[int, int, int, int]]:
    return {
        (r.image_digest, (r.window_start_ns - T0) // (60 * S)): (
            (r.gap_start_ns - T0) // S,
            (r.gap_end_ns - T0) // S,
            r.throttles,
            r.dropped_events,
        )
        for r in rows
        if r.has_gap
    }


def test_container_ids_in_cgroup_names() -> None:
    assert container_id_of_cgroup(f"cri-containerd-{CID}.scope") == CID[:31]
    assert container_id_of_cgroup(f"/kubepods/burstable/pod1/docker-{CID}.scope") == CID[:31]
    assert container_id_of_cgroup(CID[:31]) == CID[:31]  # Tetragon's truncated form
    assert container_id_of_cgroup("session-429.scope") == ""
    assert container_id_of_cgroup("system.slice") == ""


def test_throttle_start_to_stop_marks_every_window_it_spans_for_the_pods_image() -> None:
    g = GapTracker(window_seconds=60)
    g.note(event(T0))
    g.signal(throttle(DropKind.THROTTLE_START, T0 + 30 * S))
    g.signal(throttle(DropKind.THROTTLE_STOP, T0 + 150 * S))
    own = ObservationWindow(IMG, "n1", T0, 5, Posture.EBPF_DEEP, 60, "tetragon")
    rows = g.drain([own])
    assert gaps_of(rows) == {
        (IMG, 0): (30, 60, 1, 0),
        (IMG, 1): (60, 120, 0, 0),
        (IMG, 2): (120, 150, 0, 0),
    }
    first = next(r for r in rows if r.window_start_ns == T0)
    assert (first.event_count, first.posture) == (5, Posture.EBPF_DEEP)  # merged with the aggregator's row
    assert g.stats.throttles == {("n1", "shop", "web-1", "start"): 1, ("n1", "shop", "web-1", "stop"): 1}
    assert g.stats.gap_windows == {"image": 3}
    assert g.drain([]) == []  # nothing new


def test_an_open_throttle_extends_to_the_latest_window_drain_after_drain() -> None:
    g = GapTracker(window_seconds=60)
    g.note(event(T0))
    g.signal(throttle(DropKind.THROTTLE_START, T0 + 10 * S))
    other = ObservationWindow("sha256:" + "2" * 64, "n1", T0 + 60 * S, 3, Posture.ACTIVE_TRACING, 60)
    assert gaps_of(g.drain([other])) == {(IMG, 0): (10, 60, 1, 0), (IMG, 1): (60, 120, 0, 0)}
    assert g.open_throttles == {"n1": 1}
    later = ObservationWindow("sha256:" + "2" * 64, "n1", T0 + 180 * S, 3, Posture.ACTIVE_TRACING, 60)
    assert gaps_of(g.drain([later])) == {(IMG, 2): (120, 180, 0, 0), (IMG, 3): (180, 240, 0, 0)}
    g.signal(throttle(DropKind.THROTTLE_STOP, T0 + 200 * S))  # already covered to the window's end
    assert g.drain([]) == [] and not g.open_throttles


def test_rate_limit_is_a_node_wide_gap_over_the_minute_before_the_report() -> None:
    g = GapTracker(window_seconds=60)
    g.signal(DropSignal(DropKind.RATE_LIMIT, T0 + 90 * S, "n1", dropped=17))
    assert gaps_of(g.drain([])) == {(NODE_WIDE, 0): (30, 60, 0, 0), (NODE_WIDE, 1): (60, 90, 0, 17)}
    assert (g.stats.rate_limit_reports, g.stats.rate_limit_dropped) == ({"n1": 1}, {"n1": 17})


def test_host_unknown_and_stop_only_throttles() -> None:
    g = GapTracker(window_seconds=60)
    g.signal(throttle(DropKind.THROTTLE_START, T0 + 5 * S, cgroup="session-429.scope"))
    g.signal(throttle(DropKind.THROTTLE_START, T0 + 6 * S, cgroup="cri-containerd-" + "f" * 64 + ".scope"))
    g.signal(throttle(DropKind.THROTTLE_STOP, T0 + 7 * S, cgroup="session-429.scope"))
    g.signal(throttle(DropKind.THROTTLE_STOP, T0 + 8 * S, cgroup="cri-containerd-" + "f" * 64 + ".scope"))
    g.note(event(T0))
    g.signal(throttle(DropKind.THROTTLE_STOP, T0 + 70 * S))  # never saw it start
    assert gaps_of(g.drain([])) == {
        ("host:n1", 0): (5, 7, 1, 0),
        (NODE_WIDE, 0): (6, 8, 1, 0),  # a container never seen: any image on the node
        # on since before the agent's first event (test_gaps_stop_without_start.py)
        (IMG, 0): (0, 60, 0, 0),
        (IMG, 1): (60, 70, 0, 0),
    }
    assert g.stats.throttles[("n1", "", "", "start")] == 2


def test_merged_gaps_are_the_union_and_counts_add() -> None:
    a = ObservationWindow(IMG, "n", T0, 2, None, 60, "", T0 + 5 * S, T0 + 9 * S, 1, 0)
    b = ObservationWindow(IMG, "n", T0, 3, None, 60, "", T0 + 2 * S, T0 + 7 * S, 0, 4)
    none = ObservationWindow(IMG, "n", T0, 1)
    m = a.merged(b).merged(none)
    assert (m.event_count, m.gap_start_ns, m.gap_end_ns, m.throttles, m.dropped_events) == (
        6, T0 + 2 * S, T0 + 9 * S, 1, 4,
    )  # fmt: skip
    assert not none.merged(none).has_gap


def test_the_agents_own_drops_are_a_node_wide_gap_in_wall_and_event_time() -> None:
    g = GapTracker(window_seconds=60)
    g.note(event(T0 + 50 * S))  # the latest event before the drops
    wall = T0 + 600 * S  # a replayed stream: the wall clock is far from the events' times
    g.own_drop("n1", wall, wall + 2 * S, 9)
    g.note(event(T0 + 70 * S))  # the next batch
    g.after_batch()
    gaps = gaps_of(g.drain([]))
    assert gaps[(NODE_WIDE, 0)] == (50, 60, 0, 0) and gaps[(NODE_WIDE, 1)] == (60, 70, 0, 9)
    assert gaps[(NODE_WIDE, 10)] == (600, 602, 0, 0)  # and where a live stream's events would be
    assert g.stats.own_dropped == {"n1": 9}


def test_own_drops_with_no_batch_after_them_close_at_drain() -> None:
    g = GapTracker(window_seconds=60)
    g.note(event(T0 + 50 * S))
    g.own_drop("n1", T0 + 50 * S, T0 + 51 * S, 3)
    g.own_drop("n1", T0 + 52 * S, T0 + 53 * S, 4)  # a second report before any batch
    assert gaps_of(g.drain([]))[(NODE_WIDE, 0)] == (50, 53, 0, 7)
