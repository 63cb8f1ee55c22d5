"""A restarted agent judges the day it started without the calls the agent before it saw (day_calls.py).

The agent before it may have seen another container of the image calling that day (and marked
a silent container's first window); the new agent never saw that caller. So on the UTC day the
agent started, and any day before it (an export file read from where the old agent stopped),
the first window of a container not seen with calls by this agent is marked even though no
other container showed calls to it; a day wholly after its start is judged as before.
"""

from __future__ import annotations

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.day_calls import DAY_NS, UNWATCHED, DayCalls
from stellaops_runtime.hotsymbols.window_counts import WindowCounts
from stellaops_runtime.hotsymbols.window_units import WindowUnits

S = 1_000_000_000
A = "sha256:" + "a" * 64
DEEP, ACTIVE, PASSIVE = Posture.EBPF_DEEP.rank, Posture.ACTIVE_TRACING.rank, Posture.PASSIVE.rank
T1, T2 = "1f" * 32, "2e" * 32
DAY = 20_000  # a UTC day number
START = DAY * DAY_NS + 12 * 3600 * S  # the agent started at noon of that day


def test_on_the_start_day_a_container_without_calls_is_marked_with_no_caller_seen() -> None:
    d = DayCalls(started_ns=START)
    win = START + 60 * S
    assert d.judge(A, "n1", win, PASSIVE, [T2]) == UNWATCHED  # the caller may have called before noon
    assert d.judge(A, "n1", win + 60 * S, PASSIVE, [T2]) == PASSIVE  # one window is enough
    d.note(A, "n1", win + 600 * S, T2, DEEP)  # its calls later that day: it was idle
    assert list(d.restated(set())) == [(A, "n1", win, PASSIVE)]


def test_a_day_before_the_start_is_judged_the_same_way() -> None:
    d = DayCalls(started_ns=START)
    assert d.judge(A, "n1", START - DAY_NS, ACTIVE, [T1]) == UNWATCHED  # a late window of yesterday


def test_a_day_after_the_start_is_judged_on_the_agent_s_own_calls() -> None:
    d = DayCalls(started_ns=START)
    win = (DAY + 1) * DAY_NS + 60 * S
    assert d.judge(A, "n1", win, PASSIVE, [T2]) == PASSIVE  # it saw that day whole: no caller yet
    d.note(A, "n1", win + 60 * S, T1, DEEP)
    assert list(d.restated(set())) == [(A, "n1", win, UNWATCHED)]


def test_a_container_seen_with_calls_by_the_new_agent_is_not_marked() -> None:
    d = DayCalls(started_ns=START)
    win = START + 60 * S
    d.note(A, "n1", win, T1, DEEP)
    assert d.judge(A, "n1", win, DEEP, [T1]) == DEEP


def test_without_a_start_time_every_day_is_judged_as_seen_whole() -> None:
    d = DayCalls()
    assert d.judge(A, "n1", START + 60 * S, PASSIVE, [T2]) == PASSIVE


def test_window_units_hands_the_start_to_its_days() -> None:
    u = WindowUnits(started_ns=START)
    u.note(A, "n1", START + 60 * S, T2, ACTIVE)  # traced without stacks, nobody seen calling
    assert u.value(A, "n1", START + 60 * S, ACTIVE) == UNWATCHED


def test_host_processes_and_imageless_containers_are_one_unit_and_not_marked_for_the_start() -> None:
    d = DayCalls(started_ns=START)
    for image in ("host:n1", "container:" + T2[:24]):
        assert d.judge(image, "n1", START + 60 * S, ACTIVE, [""]) == ACTIVE  # nobody beside them


def _rows(counts: WindowCounts) -> list[tuple[int, Posture | None, Posture | None]]:
    return [(r.event_count, r.posture, r.evidenced) for r in counts.drain("tetragon")]


def test_a_mark_written_away_in_a_window_written_again_goes_on_a_restate_row() -> None:
    """The store keeps a mark against a row with events (another agent's value, store/marks.py): the
    agent that marked the window says its calls came on a restate row, even when the same drain
    writes the window again with events."""
    counts = WindowCounts(60)
    win = START + 600 * S
    counts.note(A, "n1", win, DEEP, "tetragon-grpc", str, T1)  # a container's calls
    counts.note(A, "n1", win, ACTIVE, "tetragon-grpc", str, T2)  # another's events without a stack
    assert _rows(counts) == [(2, Posture.EBPF_DEEP, Posture.NONE)]  # its first window: marked
    counts.note(A, "n1", win, DEEP, "tetragon-grpc", str, T2)  # its calls, in the same window
    assert _rows(counts) == [(1, Posture.EBPF_DEEP, Posture.EBPF_DEEP), (0, None, Posture.EBPF_DEEP)]
    counts.note(A, "n1", win, DEEP, "tetragon-grpc", str, T1)
    assert _rows(counts) == [(1, Posture.EBPF_DEEP, Posture.EBPF_DEEP)]  # said once
