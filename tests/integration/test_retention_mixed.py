"""Agents of different ``store.retentionDays`` sharing one store: the shortest wins, and its limit.

Each agent's hourly maintenance (store/partitions.py) deletes the history and observation windows
before its own cutoff, so the store keeps what the shortest setting keeps; a longer setting's run
removes nothing more and brings nothing back. A question over the removed days is unknown for
every agent's CLI, whatever its setting (the store's first record moved up to the shortest cut).

A late row (a spool replayed after weeks down, a clock behind) was kept out of the history by its
writer's own setting only (store/late_rows.py): written by an agent of the longer setting (or one
whose setting was raised since the shorter cut), a row between the two cutoffs was stored, became
the store's first record, and the days between it and the shorter cut, whose windows and gaps are
gone, read as recorded: "not observed" (seen failing before store/retention_cut.py). Each
retention now keeps the highest cut in the store, and the row is checked against it. SQLite and
PostgreSQL (``url``), the CLI's entry point (tests/cli_run.py).
"""

from __future__ import annotations

from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.queries import rfc3339
from tests.integration.test_retention_late_rows import IMG, midnight, observed_json, window
from tests.node_alive import alive_now


def _cut_by_the_shorter(url: str) -> None:
    """node-1 watched for 40 days; the 90-day agent's retention, then the 31-day one's, then the
    90-day one's again."""
    with open_store(url, retention_days=90) as s:
        s.write([], [window("node-1", d) for d in range(1, 41)])
        assert s.maintain().deleted_rows == 0
    with open_store(url, retention_days=31) as s:
        done = s.maintain()
        assert done.cutoff == midnight(32) and done.deleted_rows >= 8
    with open_store(url, retention_days=90) as s:
        assert s.maintain().deleted_rows == 0  # nothing brought back, nothing more removed
        s.write([], alive_now("node-1"))
        assert min(o["window_start"] for o in s.read_observation_windows()) == midnight(32).replace(hour=9)


def test_the_shortest_retention_wins_and_the_days_it_removed_are_unknown(url: str) -> None:
    _cut_by_the_shorter(url)
    code, doc = observed_json(url, IMG, "crc32", "--since", rfc3339(midnight(35)))
    assert (code, doc["answer"]) == (3, "unknown"), doc


def test_a_late_row_of_the_longer_setting_leaves_the_shorter_cut_s_days_unknown(url: str) -> None:
    _cut_by_the_shorter(url)  # the 90-day run after the 31-day one did not lower the cut kept
    with open_store(url, retention_days=90) as s:  # node-2's agent (90 days) replays a spool of 50 days ago
        result = s.write_batch(Batch("node-2/old", 1, [window("node-2", 50)], from_spool=True))
    assert result.expired == 1
    code, doc = observed_json(url, IMG, "crc32", "--since", rfc3339(midnight(35)))
    assert (code, doc["answer"]) == (3, "unknown"), doc  # was (1, "not_observed")
