"""SQLite's retention runs on the local clock: bounded by the time since boot this process counted.

PostgreSQL's retention (store/partitions.py) takes the database's clock, one for every agent. A
SQLite store is one machine's file, with no clock but the agents': a wall clock stepped ahead
while an agent ran (a bad NTP source, a hand-set date) made its next hourly retention delete that
many days of history and observation windows early, evidence no later correction brings back.

So a store reads the local clock for its retention through :class:`LocalClock`: its first reading
(when the store is opened) is the anchor, and a later one is at most the anchor plus the time since
boot counted since (CLOCK_BOOTTIME, which no step of the wall clock moves) plus :data:`SLACK`; a
clock stepped back is taken as it is (it removes less). The limit: the anchor is the wall clock
when this process opened the store, so an agent started with its clock already ahead still
removes that many days early. The flush ledger's prune on SQLite reads the same clock
(store/ledger.py ``prune_ledger``): the wall clock stepped a month ahead pruned every fresh ledger
row, and a retry after a lost acknowledgement was stored twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from stellaops_runtime.store.batches import boot_clock

log = logging.getLogger("stellaops_runtime.store.partitions")

# How far ahead of the counted time the wall clock may read before it is bounded (NTP slews by
# far less; a step by more).
SLACK = dt.timedelta(hours=1)


class LocalClock:
    """The local clock for a SQLite store's retention, never ahead of the time counted since its
    opening by more than :data:`SLACK`."""

    def __init__(self) -> None:
        self._wall, self._boot = time.time(), boot_clock()

    def now(self) -> dt.datetime:
        wall = time.time()
        bound = self._wall + (boot_clock() - self._boot) + SLACK.total_seconds()
        if wall > bound:
            log.warning(
                "the local clock reads %s, %.0f s ahead of the time counted since the store was opened "
                "(stepped ahead?): the retention and the flush ledger's prune run on %s instead, so they "
                "remove nothing early",
                dt.datetime.fromtimestamp(wall, dt.UTC).isoformat(), wall - bound,
                dt.datetime.fromtimestamp(bound, dt.UTC).isoformat(),
            )  # fmt: skip
            wall = bound
        return dt.datetime.fromtimestamp(wall, dt.UTC)
