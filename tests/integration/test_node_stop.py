"""An agent's graceful stop record (migration 0017, store/node_stop.py) ends the open time it may.

Without it, a node whose agent stopped reads open from its watched end to every later question for
every image it ran on its last day (store/coverage_open.py): a scaled-away node would leave its
images unknown until retention removed its rows. With it: every image ends there when the node is
gone; a plain stop ends nothing, whether it named the running images or not (lifecycle off:
uncertain): an image not running at the stop may start again on the node, unwatched. A stop of another
agent than the row's proof, or one the next agent's proof overtook, counts for nothing. The agent's
write itself (plain DB-API, the store's clock). SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.coverage_live import store_now
from stellaops_runtime.store.coverage_open import open_days
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.node_liveness import Liveness, write_liveness
from stellaops_runtime.store.node_stop import Stop, write_stop
from stellaops_runtime.store.schema import datetime_to_ns, node_liveness

RUNS = "sha256:" + "1" * 64  # still running at the stop
ENDED = "sha256:" + "2" * 64  # its containers stopped before the agent
NODE = "node-a"
AGENT = f"{NODE}/x"
D = dt.timedelta(days=1)
M = dt.timedelta(minutes=1)
S = 1_000_000_000


def now_of(url: str) -> dt.datetime:
    with open_store(url) as s, s.engine.connect() as c:
        return store_now(c)


def stopped(url: str, *, running: tuple[str, ...] | None, gone: bool = False, agent: str = AGENT) -> bool:
    """The node watched both images up to now, its agent's final proof of life, then its stop."""
    now = now_of(url)
    with open_store(url) as s:
        s.write([], [ObservationWindow(i, NODE, datetime_to_ns(now - M), 5, Posture.EBPF_DEEP, 60, "tetragon")
                     for i in (RUNS, ENDED)])  # fmt: skip
        wall = datetime_to_ns(now)
        write_liveness(s.db, Liveness(NODE, AGENT, 600, wall - 600 * S, 0.0, wall, 10.0, 60))
        return write_stop(s.db, Stop(NODE, agent, "sigterm", running, gone, wall - 120 * S))


def days(url: str, image: str, later: int) -> set[dt.date]:
    with open_store(url) as s, s.engine.connect() as c:
        return open_days(c, image, store_now(c) + later * D)


def test_a_plain_stop_keeps_every_image_open_and_records_the_running_ones(url: str) -> None:
    # an image not running at the stop (a CronJob's, a pod rescheduled) may start again on the node
    # while no agent watches it: its later days are not watched either (review of ff9e82af..873ff0eb)
    assert stopped(url, running=(RUNS,))
    today = now_of(url).date()
    for later in (1, 3):  # asked one and three days on
        assert days(url, RUNS, later) == {today + i * D for i in range(later + 1)}
        assert days(url, ENDED, later) == {today + i * D for i in range(later + 1)}
    with open_store(url) as s, s.engine.connect() as c:
        row = c.execute(sa.select(node_liveness)).one()
    assert (row.stop_agent, row.stop_reason, json.loads(row.running_images)) == (AGENT, "sigterm", [RUNS])
    assert not row.images_uncertain and not row.gone
    assert row.stopped_at is not None and row.stopped_at >= row.written_at


def test_a_node_gone_ends_every_image_at_the_stop(url: str) -> None:
    assert stopped(url, running=(RUNS,), gone=True)
    today = now_of(url).date()
    assert days(url, RUNS, 3) <= {today} and days(url, ENDED, 3) <= {today}


def test_a_stop_that_could_not_name_the_running_images_ends_nothing(url: str) -> None:
    assert stopped(url, running=None)  # lifecycle off: the images of its last two windows, uncertain
    today = now_of(url).date()
    for image in (RUNS, ENDED):
        assert days(url, image, 2) == {today, today + D, today + 2 * D}
    with open_store(url) as s, s.engine.connect() as c:
        row = c.execute(sa.select(node_liveness)).one()
    assert row.images_uncertain and sorted(json.loads(row.running_images)) == [RUNS, ENDED]


def test_a_stop_not_of_the_row_s_agent_or_overtaken_counts_for_nothing(url: str) -> None:
    assert not stopped(url, running=(), gone=True, agent="node-a/other")  # the row is not its own
    today = now_of(url).date()
    assert days(url, ENDED, 2) == {today, today + D, today + 2 * D}
    with open_store(url) as s:  # its own stop, then a next agent's proof of life on the node
        assert write_stop(s.db, Stop(NODE, AGENT, "sigterm", (), True))
        wall = datetime_to_ns(now_of(url))
        write_liveness(s.db, Liveness(NODE, "node-a/next", 5, wall - 5 * S, 0.0, wall, 10.0, 60))
    assert days(url, ENDED, 2) == {today, today + D, today + 2 * D}  # the next agent died: open


def test_a_next_agent_s_start_row_takes_an_earlier_agent_s_stop_back(url: str) -> None:
    """The merge of PL's start row (store/node_liveness.py ``write_start``: a row already there keeps
    its claim and takes the new agent's id) with the stop record: the earlier agent's stop no longer
    counts once the next agent is about to store (it may die before its first proof: the node then
    reads open from the earlier claim, for every image), and the next agent's stop counts only once
    it wrote its own proof."""
    from stellaops_runtime.store.node_liveness import write_start

    assert stopped(url, running=(), gone=True)
    today = now_of(url).date()
    assert days(url, ENDED, 2) <= {today}  # the stop counts
    with open_store(url) as s:
        wall = datetime_to_ns(now_of(url))
        write_start(s.db, Liveness(NODE, "node-a/next", 1, wall - S, 0.0, wall, 10.0, 60))
        assert not write_stop(s.db, Stop(NODE, AGENT, "sigterm", (), True))  # the row is not A's now
    assert days(url, ENDED, 2) == {today, today + D, today + 2 * D}


def test_a_node_clock_ahead_keeps_its_agent_s_stop(url: str) -> None:
    """The node's clock 5 minutes ahead of the store's: its last window starts after the stop on the
    store's clock, yet before it on the node's, as the agent's proof measured it; the stop holds
    (coverage_open ``_stop_before`` sets a stop aside only for a record after it on the node's clock)."""
    now, ahead = now_of(url), 5 * M
    with open_store(url) as s:
        s.write([], [ObservationWindow(ENDED, NODE, datetime_to_ns(now + ahead - M), 5, Posture.EBPF_DEEP, 60,
                                       "tetragon")])  # fmt: skip
        wall = datetime_to_ns(now + ahead)
        write_liveness(s.db, Liveness(NODE, AGENT, 600, wall - 600 * S, 0.0, wall, 10.0, 60))
        assert write_stop(s.db, Stop(NODE, AGENT, "deleting", (RUNS,), True))
    assert days(url, ENDED, 2) <= {now.date()}
