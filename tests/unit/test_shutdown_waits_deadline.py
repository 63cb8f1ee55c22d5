"""Nothing at shutdown waits past the grace's deadline for a store call that does not return (s44/SG).

Defect: with ``shutdown.graceSeconds: 3`` an agent stopped against a black-holed store logged
"agent stopped" 3.85-4.07 s after SIGTERM (tests/e2e/test_export_spooled_position.py): the last
flush's write was abandoned at the deadline, but the abort then waited up to 2 s more for the hung
write's thread to return (store/pending_write.py), and the store's close another 2 s
(agent/flusher.py). The pod's terminationGracePeriodSeconds kills it there, maybe in its spool
write. Past the deadline the write and the close are now left on their daemon threads.
"""

from __future__ import annotations

import asyncio
import threading
import time

from stellaops_runtime.agent.flusher import CLOSE_WAIT_SECONDS, Flusher
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.store.batches import Batch, BatchResult
from stellaops_runtime.store.engine import StoreUnavailable
from stellaops_runtime.store.pending import PendingWrites
from stellaops_runtime.store.pending_write import ABORT_GRACE_SECONDS, abort_grace
from tests.unit.test_pending import Recorder, delta

# A hung call's own end: shorter than the old waits (2 s), far past the deadlines below.
HANG_SECONDS = 1.5


def test_the_abort_grace_ends_at_the_deadline() -> None:
    assert abort_grace(None, 100.0) == ABORT_GRACE_SECONDS  # the flush loop: no deadline
    assert abort_grace(100.0 + ABORT_GRACE_SECONDS + 5, 100.0) == ABORT_GRACE_SECONDS
    assert abort_grace(100.5, 100.0) == 0.5
    assert abort_grace(99.0, 100.0) == 0.0  # past it: not waited for at all


class _DeafToAbort(Recorder):
    """A write in a black hole that the abort does not end (a connection still being opened)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.returned = threading.Event()

    def write_batch(self, batch: Batch) -> BatchResult:
        try:
            self.release.wait(HANG_SECONDS)
            raise StoreUnavailable("connection timed out")
        finally:
            self.returned.set()


async def test_an_aborted_write_is_not_waited_for_past_the_deadline() -> None:
    p = PendingWrites(max_pending_rows=100)
    store = _DeafToAbort()
    p.add([delta(count=7)], [])
    try:
        assert await p.flush(store, write_timeout=2.0, deadline=time.monotonic() + 0.1) is False
        # Left on its thread, not waited for (before: waited until it returned, abandoned 0).
        assert not store.returned.is_set()
        assert store.aborted == 1 and p.timeouts == 1 and p.abandoned == 1
    finally:
        store.release.set()
    assert p.pending_rows == 1  # the batch stays frozen, for the spool and an exact retry


class _HungClose:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.returned = threading.Event()

    def close(self) -> None:
        self.release.wait(HANG_SECONDS)
        self.returned.set()


async def test_the_stores_close_is_not_waited_for_past_the_deadline() -> None:
    async def drain() -> None:
        return None

    f = Flusher(AgentConfig(), agent_id="n/a", drain=drain, stop=lambda _why: None)
    hung = _HungClose()
    f.store = hung  # type: ignore[assignment]
    try:
        await f.close(time.monotonic() + 0.1)
        assert not hung.returned.is_set()  # before: waited up to CLOSE_WAIT_SECONDS for it
    finally:
        hung.release.set()
    assert HANG_SECONDS < CLOSE_WAIT_SECONDS


async def test_without_a_deadline_an_aborted_write_that_returns_is_waited_for() -> None:
    p = PendingWrites(max_pending_rows=100)
    store = _DeafToAbort()
    p.add([delta(count=3)], [])
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, store.release.set)  # returns soon after the abort, within its grace
    assert await p.flush(store, write_timeout=0.1) is False
    assert store.returned.is_set() and p.abandoned == 0
