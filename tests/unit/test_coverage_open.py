"""The time after a node's latest record is open (store/coverage_open.py, wired into the answers).

While a node's agent is down (SIGKILL, an OOM kill, a node lost) nothing in the store says so: the
next agent records the hole when it starts. Before, a day with one EbpfDeep window before the crash
was a watched, gap-free day, and ``query observed`` / ``vex`` / a witness asked during the outage
said "not observed" over calls made after the agent died. The rule (store/coverage_open.py): from a
node's latest record to the question's moment, over every UTC day between, the node is unwatched,
until a newer record of the node closes it. These tests hold the rule's pieces and the evidence's
watched days that rest on it (evidence/store_facts.py; seen failing before the wiring: {D} instead of
an empty set). SQLite, a store at head.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import NODE_WIDE, ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.evidence import store_facts
from stellaops_runtime.store.coverage_open import grace, midnight_after, open_days, open_gaps, open_span
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns

IMG = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
D = dt.date(2026, 3, 10)
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
US = dt.timedelta(microseconds=1)
DAY = dt.timedelta(days=1)


def at(day: dt.date, hours: float) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC) + hours * H


def win(image: str, node: str, t: dt.datetime, events: int = 5) -> ObservationWindow:
    return ObservationWindow(image, node, datetime_to_ns(t), events, Posture.EBPF_DEEP, 60, "tetragon")


def test_the_open_span_runs_from_the_latest_record_to_the_question() -> None:
    last = at(D, 10)
    assert open_span(last, at(D, 14), 60) == (last, at(D, 14))  # asked the same day: up to now
    assert open_span(last, at(D, 50), 60) == (last, at(D, 50))  # asked days later: up to it, past midnight
    assert open_span(last, last, 60) is None and open_span(last, at(D, 9), 60) is None  # not after it
    # within three windows of the record: a live agent's newest row is the window it is counting, or
    # on an idle node a lifecycle row written a settle and a flush after its window's end
    # (test_coverage_open_live_agent.py)
    assert grace(60) == dt.timedelta(minutes=3) and grace(0) == grace(60) and grace(300) == 15 * M
    assert open_span(last, last + 3 * M, 60) is None
    assert open_span(last, last + 3 * M + dt.timedelta(microseconds=1), 60) == (last, last + 3 * M + US)
    assert open_span(last, last + 15 * M, 300) is None and open_span(last, last + 16 * M, 300) is not None
    assert midnight_after(at(D, 23.99)) == at(D, 24)
    assert midnight_after(dt.datetime.max.replace(tzinfo=dt.UTC)) == dt.datetime.max.replace(tzinfo=dt.UTC)


def test_a_node_s_last_day_is_no_watched_day_until_a_newer_record_of_it(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    url = sqlite_at_head(tmp_path / "hot.db")
    with open_store(url) as s:  # watched at EbpfDeep on day D on node a; then a's agent is killed
        s.write([], [win(IMG, "a", at(D, 9)), win(IMG, "a", at(D, 10))])
    with open_store(url) as s, s.engine.connect() as conn:
        assert open_days(conn, IMG, at(D, 14)) == {D}
        assert store_facts._watched_days(conn, IMG, D + 5 * DAY) == set()  # the evidence's days: not D
        # query observed over the open time: a node-wide gap of kind "open" from the latest record
        gaps = open_gaps(conn, image=IMG, asked=at(D, 14))
        assert [(g.node_name, g.node_wide, g.start, g.end, g.not_watched) for g in gaps] == [
            ("a", True, at(D, 10), at(D, 14), ("open",))
        ]
        assert "no record of the node since" in gaps[0].describe()
        assert not gaps[0].dropped and gaps[0].to_json()["not_watched"] == ["open"]
        # a period ending before the latest record, or starting after the open time, is not touched
        assert open_gaps(conn, image=IMG, asked=at(D, 14), until=at(D, 9.5)) == []
        assert open_gaps(conn, image=IMG, asked=at(D, 50), since=at(D, 50.5)) == []
        # a later day's period: the span runs on to the question (was: to D's midnight)
        assert len(open_gaps(conn, image=IMG, asked=at(D, 50), since=at(D, 30))) == 1
        assert open_days(conn, IMG, at(D, 50)) == {D, D + DAY, D + 2 * DAY}
    with open_store(url) as s:  # another node's record closes nothing of node a
        s.write([], [win(OTHER, "b", at(D, 30))])
    with open_store(url) as s, s.engine.connect() as conn:
        assert open_days(conn, IMG, at(D, 120)) == {D + i * DAY for i in range(5)}  # D + 5 at 00:00
    with open_store(url) as s:  # node a's next record, of any image (its next agent wrote it)
        s.write([], [win(OTHER, "a", at(D, 26))])
    with open_store(url) as s, s.engine.connect() as conn:
        assert open_days(conn, IMG, at(D, 120)) == set()
        assert store_facts._watched_days(conn, IMG, D + 5 * DAY) == {D}
        assert open_gaps(conn, image=IMG, asked=at(D, 50)) == []  # IMG was not watched on a that day


def test_a_node_wide_gap_row_is_a_record_and_a_row_ahead_of_the_question_is_not(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    url = sqlite_at_head(tmp_path / "hot.db")
    gap = ObservationWindow(
        NODE_WIDE, "a", datetime_to_ns(at(D, 24)), 0, None, 60, "none",
        gap_start_ns=datetime_to_ns(at(D, 24)), gap_end_ns=datetime_to_ns(at(D, 24) + H),
    )  # fmt: skip
    with open_store(url) as s:
        s.write([], [win(IMG, "a", at(D, 10)), win(IMG, "a", at(D, 24 * 40))])  # a clock 40 days ahead
    with open_store(url) as s, s.engine.connect() as conn:
        # asked on D + 2 at 00:00: the row stamped 40 days ahead has not happened; the latest record
        # is D 10:00, open to the question (its end is exclusive: D + 2 is not touched)
        assert open_days(conn, IMG, at(D, 48)) == {D, D + DAY}
    with open_store(url) as s:
        s.write([], [gap])
    with open_store(url) as s, s.engine.connect() as conn:
        assert open_days(conn, IMG, at(D, 48)) == set()  # the next agent's restart gap


def test_the_days_of_many_spans_are_one_pass_and_a_span_past_the_longest_retention_is_cut() -> None:
    from stellaops_runtime.store.coverage_open import span_days
    from stellaops_runtime.store.partitions import MAX_RETENTION_DAYS

    # overlapping and touching spans of many nodes: their union's days, an end exclusive
    spans = [(at(D, 10), at(D, 30)), (at(D, 20), at(D, 48)), (at(D, 72), at(D, 73))]
    assert span_days(spans) == {D, D + DAY, D + 3 * DAY}
    # a node whose last record is from year 1 (a clock far behind): its first day and the longest
    # retention's days before the question, not 740,000 days
    old = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
    days = span_days([(old, at(D, 12))])
    assert len(days) == MAX_RETENTION_DAYS + 2 and old.date() in days and D in days
