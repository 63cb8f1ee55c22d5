"""A batch older than the flush ledger's memory is stored as gaps, never counted twice.

The flush ledger (store/ledger.py) answers "already stored" for a batch whose COMMIT went
through but whose acknowledgement was lost. The rows of an agent that stopped with batches
pending stay :data:`~stellaops_runtime.store.ledger.LEDGER_RETENTION` (30 days), for its spool
file, and are then pruned: a spool file replayed later (a node down a month) stored such a batch's
counts a second time. A batch carries when its flush froze it (``Batch.frozen_unix``, kept in the
spool file and through its merges, agent/spool_keeper.py); one frozen longer ago than the ledger
keeps its rows, less :data:`CLOCK_MARGIN` for the node's clock then and the ledger's now (the
server's on PostgreSQL, :func:`~stellaops_runtime.store.ledger.ledger_now`), and not found in the
ledger, cannot be told stored or not: it is stored as gaps over its windows, as a batch whose
export lines cannot be checked is (store/export_spans.py), its counts lost, said and counted
(``unverified``). A batch of a spool file from before the stamp (None) is replayed as before.
Since s46 the spool file also says when an attempt at the batch first reached the database, by
the ledger's clock (``Batch.claimed_unix``, null when none did): that moment, not the freeze, is
its age (no node clock in it), and a batch no attempt of which reached the database (the store
out of reach until the agent stopped) has no ledger row to be forgotten: it is stored whole,
however old (before, a node down a month lost such counts as gaps).

So is a live agent's batch held in memory that long: its COMMIT went through, the
acknowledgement was lost, and its store stayed out of reach while other agents pruned the ledger;
retried, it was counted twice. Its age is counted from its first attempt that reached the database
(``Batch.claimed_boot``, set before its ledger row is claimed), by the clock since boot
(:func:`~stellaops_runtime.store.batches.boot_clock`), not its node's wall clock: a node a month
behind would otherwise have every fresh batch of its taken for one the ledger forgot (its counts
lost), one a month ahead none. A batch no attempt of which reached the database (a store down
since its freeze) has no ledger row to be forgotten: it is stored whole, however long it waited
(counted from the freeze, a month's outage lost its first batch's counts).
"""

from __future__ import annotations

import datetime as dt
import logging

from stellaops_runtime.store.batches import Batch, boot_clock

log = logging.getLogger("stellaops_runtime.store.ledger")

# A node's clock at the freeze and the ledger's clock now may be this far apart before a batch
# whose ledger row is pruned escapes the rule (then counted twice, as before).
CLOCK_MARGIN = dt.timedelta(days=1)


def outlived_ledger(batch: Batch, now: dt.datetime | None, kept: dt.timedelta) -> bool:
    """Whether ``batch`` first reached the database so long ago that its ledger rows, kept ``kept``,
    may be pruned already: a spooled one by that moment on the ledger's clock (a file of before
    s46: its freeze's wall-clock stamp) to ``now`` (the ledger's clock; None: not asked), a live one
    by the time since boot since then. One no attempt of which reached it has no ledger row."""
    if not batch.from_spool:
        if batch.claimed_boot is None:  # no attempt reached the database: no ledger row of it exists
            return False
        held = dt.timedelta(seconds=boot_clock() - batch.claimed_boot)
        if held <= kept - CLOCK_MARGIN:
            return False
        what = f"batch {batch.agent_id}/{batch.seq} was held unacknowledged for {held.days} days"
    else:
        # Known (spool files of s46 on): its first attempt that reached the database, by the ledger's
        # clock; else its freeze, by its node's.
        stamp = batch.claimed_unix if batch.claim_known else batch.frozen_unix
        if stamp is None or now is None:
            return False
        frozen = dt.datetime.fromtimestamp(stamp, dt.UTC)
        if now - frozen <= kept - CLOCK_MARGIN:
            return False
        how = "first reached the store" if batch.claim_known else "was frozen"
        what = f"spooled batch {batch.agent_id}/{batch.seq} {how} at {frozen.isoformat()}"
    log.warning(
        "%s, longer than the flush ledger keeps its rows (%s days): whether its acknowledgement was lost "
        "after it was stored cannot be told, so its rows are not stored, their windows are a gap (never "
        "counted twice)", what, kept.days,
    )  # fmt: skip
    return True
