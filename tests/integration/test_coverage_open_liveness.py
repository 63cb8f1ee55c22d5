"""A node's watched time ends at its proof of life, on the store's clock (store/coverage_open.py).

Before, it ended at the start of the node's latest window, stamped by the node's clock, with three
windows' grace: a question one window after a SIGKILL said "not observed" about calls after it, a
node clock ahead delayed the open gap by its skew, a live idle node (no event, lifecycle off) read
as down after three windows, and the question's now was the CLI host's clock. Now a node with a
``node_liveness`` row (written here by the agent's own statement, store/node_liveness.py) is judged
by it; a node whose latest record is older than its agent's start (a replayed file) keeps the old
rule. Seen failing before the reader's fix (the tree of 9f5e8cd7 with migration 0015 and the
agent's write added): no gap one window after the kill, an open gap over the live idle node, and
"unknown" under a CLI clock an hour ahead. SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from stellaops_runtime.cli import main as cli_main
from stellaops_runtime.cli import query as cli_query
from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.coverage_live import store_now
from stellaops_runtime.store.coverage_open import open_days, open_gaps
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.node_liveness import Liveness, write_liveness
from stellaops_runtime.store.schema import datetime_to_ns

IMG = "sha256:" + "d" * 64
NODE = "node-a"
M = dt.timedelta(minutes=1)
S = 1_000_000_000


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        put: Callable[[Path], str] = request.getfixturevalue("sqlite_at_head")
        return put(tmp_path / "hot.db")
    return str(request.getfixturevalue("pg_url"))


def win(t: dt.datetime) -> ObservationWindow:
    return ObservationWindow(IMG, NODE, datetime_to_ns(t), 5, Posture.EBPF_DEEP, 60, "tetragon")


def now_of(url: str) -> dt.datetime:
    with open_store(url) as s, s.engine.connect() as c:
        return store_now(c)


def prove(url: str, *, started: float, alive: float, node_ahead: dt.timedelta = dt.timedelta()) -> None:
    """The agent's write (store/node_liveness.py): started and watched ``started``/``alive`` seconds
    ago, its node's wall clock ``node_ahead`` of the store's; default flush interval and window."""
    wall = datetime_to_ns(now_of(url) + node_ahead)
    live = Liveness(
        NODE, f"{NODE}/x", started, wall - int(started * S), alive, wall - int(alive * S), 10.0, 60
    )
    with open_store(url) as s:
        write_liveness(s.db, live)


def gaps(url: str, asked: dt.datetime | None = None) -> list[tuple[dt.datetime, dt.datetime]]:
    with open_store(url) as s, s.engine.connect() as c:
        return [(g.start, g.end) for g in open_gaps(c, image=IMG, asked=asked)]


def test_a_node_clock_ahead_does_not_hold_the_gap_past_one_window_after_the_kill(url: str) -> None:
    ahead = dt.timedelta(minutes=10)
    kill = now_of(url)
    with open_store(url) as s:  # its windows are stamped ten minutes ahead
        s.write([], [win(kill + ahead - 2 * M), win(kill + ahead - M)])
    prove(url, started=600, alive=0, node_ahead=ahead)  # its last proof: now, then SIGKILL
    assert gaps(url, kill + 20 * dt.timedelta(seconds=1)) == []  # within three flushes and 2 s
    (span,) = gaps(url, kill + M)  # one window on: open (was: none until ten minutes and three windows)
    assert abs(span[0] - kill) < dt.timedelta(seconds=1) and span[1] == kill + M
    with open_store(url) as s, s.engine.connect() as c:
        assert open_days(c, IMG, kill + M) == {kill.date()}  # the day is no watched day


def test_a_live_idle_node_never_reads_as_down_and_a_dead_one_does_within_its_grace(url: str) -> None:
    now = now_of(url)
    with open_store(url) as s:  # its agent started ten minutes ago; its last event nine minutes ago
        s.write([], [win(now - 9 * M)])
    prove(url, started=600, alive=1)  # no event since, lifecycle off: only its proofs of life
    assert gaps(url, now_of(url)) == []  # asked now (was: open, nine minutes > three windows)
    assert gaps(url, now + 30 * dt.timedelta(seconds=1)) == []
    (span,) = gaps(url, now + M)  # no proof for a minute: its agent is taken as down since the last
    assert abs(span[0] - (now - dt.timedelta(seconds=1))) < dt.timedelta(seconds=1)


def test_a_replayed_file_s_days_keep_the_rule_of_the_latest_record(url: str) -> None:
    now = now_of(url)
    old = now - dt.timedelta(days=2)
    with open_store(url) as s:  # events of two days ago, read by an agent started a minute ago
        s.write([], [win(old)])
    prove(url, started=60, alive=0)
    # its proof of life says nothing of event time two days back: open from it to the question
    assert gaps(url, now) == [(old, now)]


def test_the_question_s_now_is_the_store_s_not_the_cli_host_s(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = now_of(url)
    with open_store(url) as s:
        s.write([], [win(now - 2 * M)])
    prove(url, started=600, alive=0)

    def ask() -> tuple[int, str]:
        code = cli_main.main(
            ["query", "observed", "--store", url, "--image", IMG, "--function", "f", "--json"]
        )
        return code, json.loads(capsys.readouterr().out)["answer"]

    assert ask() == (1, "not_observed")  # live, watched: the function was not called

    class Ahead(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Ahead:  # type: ignore[override]
            return super().now(tz) + dt.timedelta(hours=1)

    skewed = types.ModuleType("datetime")
    skewed.__dict__.update(dt.__dict__)
    skewed.datetime = Ahead  # type: ignore[attr-defined]
    monkeypatch.setattr(cli_query, "dt", skewed)
    assert ask() == (1, "not_observed")  # the CLI's clock an hour ahead moves nothing (was: 3, unknown)


def test_an_agent_whose_claimed_moment_trails_its_writes_too_far_is_down_from_that_moment(url: str) -> None:
    now = now_of(url)
    with open_store(url) as s:
        s.write([], [win(now - 14 * M)])
    prove(url, started=900, alive=12 * 60)  # written now, but nothing stored past twelve minutes ago
    (span,) = gaps(url, now_of(url))  # beyond Tetragon's hold and largest backlog: its flushes fail
    assert abs(span[0] - (now - 12 * M)) < dt.timedelta(seconds=1)
    prove(url, started=900, alive=40)  # Tetragon's hold (32 s) and a little: alive
    assert gaps(url, now_of(url)) == []


def test_a_proof_older_than_the_node_s_records_does_not_hide_their_day_s_open_gap(url: str) -> None:
    """A proof of life of yesterday (its writes failing since, or the node's agent rolled back to a
    version that writes none) while the node's windows run on today: once they stop (the agent
    killed), today's rest is open, as by the rule of the latest record. Seen failing before: the
    stale proof vouched for today's record, its span ended at yesterday's midnight, and today read
    as watched ("not observed" over the kill)."""
    now = now_of(url)
    # today's records stay on one UTC day (the guard was "before 00:30": at 00:32 the first was on
    # the day before, and the test failed)
    if (now - 40 * M).date() != now.date():
        now += dt.timedelta(hours=1)
    with open_store(url) as s:  # today's windows, the last 10 minutes ago; the proof a day older
        s.write([], [win(now - 40 * M), win(now - 10 * M)])
    prove(url, started=3 * 86400, alive=86400)
    assert gaps(url, now) == [(now - 10 * M, now)]
    with open_store(url) as s, s.engine.connect() as c:
        assert now.date() in open_days(c, IMG, now)


def _midnight(url: str) -> dt.datetime:
    """Yesterday's UTC midnight on the store's clock: a past midnight whatever the time of the run."""
    return dt.datetime.combine(now_of(url).date(), dt.time(), dt.UTC) - dt.timedelta(days=1)


def _ago(url: str, moment: dt.datetime) -> float:
    return (now_of(url) - moment).total_seconds()


def test_an_idle_image_s_node_killed_just_after_midnight_is_open_for_that_image(url: str) -> None:
    """The image's last row is at 23:57 (idle since: no event, lifecycle off), its node's agent dies
    at 00:05. Seen failing before (no gap: the image had no row on the new day nor within three
    windows before the kill; the same kill at 23:59 touched it): this test failed at 00:05 only."""
    midnight = _midnight(url)
    with open_store(url) as s:
        s.write([], [win(midnight - 3 * M)])
    prove(url, started=_ago(url, midnight - 10 * M), alive=_ago(url, midnight + 5 * M))
    (span,) = gaps(url, midnight + 10 * M)
    assert abs(span[0] - (midnight + 5 * M)) < dt.timedelta(seconds=1) and span[1] == midnight + 10 * M
    with open_store(url) as s, s.engine.connect() as c:
        assert open_days(c, IMG, midnight + 10 * M) == {midnight.date()}
    # an image last watched on that node more than a day before the kill is not touched
    gone = "sha256:" + "e" * 64
    with open_store(url) as s:
        s.write([], [ObservationWindow(gone, NODE, datetime_to_ns(midnight - 30 * 60 * M), 5,
                                       Posture.EBPF_DEEP, 60, "tetragon")])  # fmt: skip
    with open_store(url) as s, s.engine.connect() as c:
        assert open_gaps(c, image=gone, asked=midnight + 10 * M) == []


def test_a_dead_agent_s_rows_stamped_past_the_question_s_day_touch_their_image(url: str) -> None:
    """The node's event clock is ten minutes ahead of its agent's proof (and the store's): its last
    window starts at 00:05, its proof says 23:55, the question is at 23:59. Seen failing before (no
    gap: no row of the image on the proof's day, the row past the question's day never read; the
    clean-clone run at 23:50 answered "not observed" in tests/e2e/test_agent_killed_open_day.py)."""
    midnight = _midnight(url)
    with open_store(url) as s:
        s.write([], [win(midnight + 5 * M)])
    prove(url, started=_ago(url, midnight - 15 * M), alive=_ago(url, midnight - 5 * M))
    (span,) = gaps(url, midnight - M)
    assert abs(span[0] - (midnight - 5 * M)) < dt.timedelta(seconds=1) and span[1] == midnight - M
