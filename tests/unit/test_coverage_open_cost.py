"""The open gaps of an image cost a few statements, not three per node of the image.

``open_days`` / ``open_gaps`` (store/coverage_open.py) read each node's latest record one statement
at a time, then, for each node past its grace, whether the image had a row there that day, with a
catalog read (``is_coverage`` inspects the table's columns) per node: 3 statements per node. The
evidence runs both for each function asked about (evidence/store_facts.py ``observe``), and ``vex``
for each function of each vulnerability: with 1,000 nodes that was 6,006 statements and about 2.5 s
of local SQLite per function, each a round trip on PostgreSQL. Seen failing before the fix (903
statements for 300 nodes). SQLite, a store at head.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.coverage_open import open_days, open_gaps
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns

IMG = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
T = dt.datetime(2026, 3, 10, 10, tzinfo=dt.UTC)
NODES = 300


def test_open_gaps_of_many_nodes_take_a_few_statements(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    url = sqlite_at_head(tmp_path / "hot.db")
    rows = []
    for n in range(NODES):
        node = f"node-{n:03}"
        at = T + dt.timedelta(minutes=n % 7)
        rows.append(ObservationWindow(IMG, node, datetime_to_ns(at), 5, Posture.EBPF_DEEP, 60, "tetragon"))
        if n % 3 == 0:  # a third of the nodes ran on: a later record (another image) closes theirs
            later = at + dt.timedelta(hours=30)
            rows.append(ObservationWindow(OTHER, node, datetime_to_ns(later), 1, Posture.EBPF_DEEP, 60, "x"))
        if n % 3 == 1:  # a third's latest record is on a day the image had no row there: not open for it
            later = at + dt.timedelta(hours=20)
            rows.append(ObservationWindow(OTHER, node, datetime_to_ns(later), 1, Posture.EBPF_DEEP, 60, "x"))
    asked = T + dt.timedelta(days=2)
    with open_store(url) as s:
        s.write([], rows)
        statements: list[str] = []
        sa.event.listen(s.engine, "before_cursor_execute", lambda *a, **k: statements.append(a[2]))
        with s.engine.connect() as conn:
            gaps = open_gaps(conn, image=IMG, asked=asked)
            days = open_days(conn, IMG, asked)
    want = {f"node-{n:03}" for n in range(NODES) if n % 3 == 2}
    assert {g.node_name for g in gaps} == want and len(gaps) == len(want)
    for g in gaps:
        n = int(g.node_name[5:])
        assert (g.start, g.end) == (T + dt.timedelta(minutes=n % 7), asked)  # on to the question
    assert days == {T.date() + dt.timedelta(days=i) for i in range(3)}
    # a fixed ~19 (the proofs, the pairings, the latest records, the catalog) plus, in each of the two
    # calls, one statement per 200 (node, day) pairs (coverage_open._CHUNK): 19 for 30 nodes, 21 for 300
    assert len(statements) <= 19 + 2 * -(-NODES // 200), f"{len(statements)} statements for {NODES} nodes"


def test_one_vex_run_computes_its_open_gaps_once_not_per_function(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stellaops_runtime.evidence import store_facts
    from stellaops_runtime.store import coverage_open
    from stellaops_runtime.store.function_refs import function_query
    from stellaops_runtime.store.refs import PurlQuery

    url = sqlite_at_head(tmp_path / "hot.db")
    rows = [
        ObservationWindow(IMG, f"n{n}", datetime_to_ns(T), 5, Posture.EBPF_DEEP, 60, "t") for n in range(3)
    ]
    calls: list[str] = []
    real = coverage_open._open
    monkeypatch.setattr(coverage_open, "_open", lambda *a: calls.append(a[1]) or real(*a))
    walks: list[int] = []  # the days of the spans, walked (1-7 ms a function at 1,000 nodes down)
    real_days = coverage_open.span_days
    monkeypatch.setattr(coverage_open, "span_days", lambda spans: walks.append(1) or real_days(spans))
    pq = PurlQuery.parse("pkg:deb/debian/zlib1g")
    with open_store(url) as s:
        s.write([], rows)
        with s.engine.connect() as conn:
            answers = []
            for memo in (None, {}):  # each function on its own; then one memo, as vex passes (cli/vex.py)
                calls.clear()
                walks.clear()
                for fn in ("inflate", "deflate", "crc32"):
                    obs = store_facts.observe(
                        conn, image=IMG, purl=pq, function=function_query(fn), open_memo=memo
                    )
                    answers.append((fn, obs.facts.watched_days, [(g.node_name, g.start) for g in obs.gaps]))
                assert len(calls) == (3 if memo is None else 1), calls  # was 2 per function: days, then gaps
                assert len(walks) == (3 if memo is None else 1)  # the days too: once a run (review RNG)
            mine = coverage_open.open_days(conn, IMG, memo=memo)
            kept = set(mine)
            mine.clear()  # the caller's own set: emptying it leaves the run's memo whole
            assert T.date() in kept and coverage_open.open_days(conn, IMG, memo=memo) == kept
    assert answers[:3] == answers[3:]  # the same answers
    assert all(gaps for _, _, gaps in answers)  # T's day is past: each node's is open
