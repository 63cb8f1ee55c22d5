"""One frozen batch's write, abandoned once it hangs: split from store/pending.py.

:class:`~stellaops_runtime.store.pending.PendingWrites` writes its batches one at a time on a
thread (:func:`write_timed`). A write that makes no progress for ``write_timeout`` (a hung
connection, a lock held elsewhere) is abandoned: the store's connections are closed so the call
returns, the batch's attempt moves on (the abandoned call writes no further range,
store/ledger.py), and the batch is retried later on a new connection, exactly once through the
ledger. A batch written in parts makes progress part by part: the timeout starts again at each
committed part, never past the shutdown ``deadline``; nor does the wait for an aborted write to
return (:func:`abort_grace`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from stellaops_runtime.store.batches import Batch, BatchResult
from stellaops_runtime.store.engine import StoreError, StoreUnavailable
from stellaops_runtime.store.threads import run_detached

log = logging.getLogger("stellaops_runtime.store.pending")

ABORT_GRACE_SECONDS = 2.0  # after an abort, how long a hung write gets to return before it is abandoned


async def write_timed(
    pending: Any, store: Any, batch: Batch, write_timeout: float | None, deadline: float | None
) -> BatchResult:
    """Write ``batch`` with ``store.write_batch`` on a thread; ``pending`` (a PendingWrites) keeps
    ``inflight_since``, ``timeouts`` and ``abandoned``. Raises StoreUnavailable when abandoned."""
    fut = run_detached(store.write_batch, batch, name="store-write")
    pending.inflight_since = time.monotonic()
    try:
        while True:
            parts, timeout = batch.parts_done, write_timeout
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                timeout = left if timeout is None else min(timeout, left)
            done, _ = await asyncio.wait({fut}, timeout=timeout)
            if done:
                result: BatchResult = fut.result()
                return result
            if batch.parts_done == parts or (deadline is not None and time.monotonic() >= deadline):
                break
            pending.inflight_since = time.monotonic()  # a part was stored: not hung
        # Hung: close the store's connections so the call returns, and retry later.
        pending.timeouts += 1
        batch.attempt += 1  # the abandoned call writes no further range (store/ledger.py)
        if batch.too_slow():  # slow, not hung (or both): the retry writes that range in halves
            log.warning(
                "flush %s/%d: rows %d-%d were still being written after %gs; the retry writes "
                "them in halves, each stored once through the ledger",
                batch.agent_id, batch.seq, *(batch.writing or (0, 0)), timeout or 0,
            )  # fmt: skip
        store.abort()
        done, _ = await asyncio.wait({fut}, timeout=abort_grace(deadline, time.monotonic()))
        if not done:
            pending.abandoned += 1
            fut.add_done_callback(_swallow)
        else:
            _swallow(fut)
        raise _timed_out(timeout)
    except asyncio.CancelledError:
        fut.add_done_callback(_swallow)
        raise
    finally:
        pending.inflight_since = None


def abort_grace(deadline: float | None, now: float) -> float:
    """How long an aborted write gets to return: :data:`ABORT_GRACE_SECONDS`, but never past the
    shutdown ``deadline`` (the spool is written next, and the pod is killed at its grace): a write
    that has not returned by then is abandoned on its daemon thread (store/threads.py); its batch
    stays frozen, is spooled, and its replay is exact through the ledger (store/ledger.py)."""
    if deadline is None:
        return ABORT_GRACE_SECONDS
    return min(ABORT_GRACE_SECONDS, max(0.0, deadline - now))


def _timed_out(timeout: float | None) -> StoreError:
    return StoreUnavailable(
        f"store write timed out after {timeout or 0:g}s; its connections were closed and the batch "
        "will be retried on a new connection"
    )


def _swallow(fut: asyncio.Future[BatchResult]) -> None:
    """Retrieve an abandoned write's outcome so asyncio does not report it as never retrieved."""
    if not fut.cancelled():
        fut.exception()
