"""A window is marked while it is the first window of a container not seen with calls, whoever sent it events.

day_calls.py marks the first window that UTC day of a container that showed no call while another
container of the image did. The judge looked only at the containers the window holds in the drain
that writes it (window_units.py keeps them :data:`KEEP_DRAINS` drains after the window's last
event). A late event in that window after its containers were dropped, the day's first call
among them, wrote the window again with the caller alone: the row carried no mark, and the
"calls came, the mark comes" restate row was skipped because the window was written in that
drain. The silent container's only mark was never written and the node's day read watched
(seen failing before the fix: the row said ActiveTracing, no restate row). Pure: no store.
"""

from __future__ import annotations

from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.hotsymbols.day_calls import DAY_NS, UNWATCHED, DayCalls
from stellaops_runtime.hotsymbols.window_counts import WindowCounts
from stellaops_runtime.hotsymbols.window_units import KEEP_DRAINS

S = 1_000_000_000
A = "sha256:" + "a" * 64
DEEP, ACTIVE = Posture.EBPF_DEEP.rank, Posture.ACTIVE_TRACING.rank
CALLER, QUIET = "1f" * 32, "2e" * 32
W = 20_000 * DAY_NS + 12 * 3600 * S  # noon of a UTC day


def last_value(rows: list) -> Posture | None:
    """The window's ``evidenced`` after the drain's rows reach the store (the last row that says it)."""
    said = [r.evidenced for r in rows if r.window_start_ns == W and r.evidenced is not None]
    return said[-1] if said else None


def test_the_day_s_first_call_arriving_late_in_a_quiet_container_s_first_window_marks_it() -> None:
    counts = WindowCounts(60)
    counts.note(A, "n1", W, ACTIVE, "tetragon-grpc", str, QUIET)  # events without a stack: no call
    assert last_value(counts.drain("tetragon")) is Posture.ACTIVE_TRACING  # nobody called yet
    for _ in range(KEEP_DRAINS + 1):  # the window's containers are dropped
        assert counts.drain("tetragon") == []
    counts.note(A, "n1", W, DEEP, "tetragon-grpc", str, CALLER)  # a late event: the day's first call
    assert last_value(counts.drain("tetragon")) is Posture.NONE


def test_the_judge_marks_a_first_window_whose_container_is_not_among_the_units_it_is_given() -> None:
    d = DayCalls()
    assert d.judge(A, "n1", W, ACTIVE, [QUIET]) == ACTIVE  # the quiet container's first window
    d.note(A, "n1", W + 600 * S, CALLER, DEEP)
    assert list(d.restated(set())) == [(A, "n1", W, UNWATCHED)]  # the mark comes
    # written again later holding the caller alone: still the quiet container's first window
    assert d.judge(A, "n1", W, DEEP, [CALLER]) == UNWATCHED
    assert d.judge(A, "n1", W + 60 * S, DEEP, [CALLER]) == DEEP  # another window: its own value
    d.note(A, "n1", W + 900 * S, QUIET, DEEP)  # its calls after all: the mark goes, once
    assert list(d.restated(set())) == [(A, "n1", W, DEEP)]
    assert d.judge(A, "n1", W, DEEP, [CALLER]) == DEEP
