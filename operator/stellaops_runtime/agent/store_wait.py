"""One small store write of the agent on its own thread, waited for at most ``store.flushTimeout``.

The writes a flush makes besides its rows (the agent's start row and proofs of life,
agent/proof_of_life.py; the image digest pairings, agent/flusher.py) share how they wait: never
past a shutdown deadline, a write not done in time cut with the store's connections as a hung rows'
write is (store/pending_write.py; left on its thread it held its connection, one more each flush,
or for good behind a middlebox that keeps acknowledging), and an error that says the store is out of
reach told apart from one that says the write was refused: the caller then stops instead of
waiting for the next write's own connect (a black-holed store made a flush wait two or three).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, NamedTuple

from stellaops_runtime.contracts.redact import redact
from stellaops_runtime.store.errors import StoreError, StoreUnavailable, first_line, is_unavailable
from stellaops_runtime.store.pending_write import abort_grace
from stellaops_runtime.store.writer import HotSymbolStore

log = logging.getLogger(__name__)


class Written(NamedTuple):
    """How one write ended: ``why`` is empty when it was written; ``unreachable`` when the store is out
    of reach (not done in time, its connections then cut; or failed as unavailable, store/errors.py);
    ``timed_out``: abandoned after ``store.flushTimeout`` (the caller counts it in
    ``store_flush_timeouts_total``, as a rows' write abandoned so is counted)."""

    why: str = ""
    unreachable: bool = False
    timed_out: bool = False


def wait_seconds(flush_timeout: float, deadline: float | None) -> float:
    """``store.flushTimeout``, but never past ``deadline`` (monotonic)."""
    if deadline is None:
        return flush_timeout
    return max(0.0, min(flush_timeout, deadline - time.monotonic()))


async def wait_written(
    store: HotSymbolStore, fut: asyncio.Future[Any], *, seconds: float, deadline: float | None, label: str
) -> Written:
    """Wait ``seconds`` for a write started on its own thread (store/threads.py
    ``run_detached``) on ``store``; ``label``: the store's URL, safe to log. Not done by then: the
    store is aborted and the thread given at most the abort grace (never past ``deadline``) to
    return. Never raises but a cancellation (the write then left to finish on its thread)."""
    try:
        await asyncio.wait_for(asyncio.shield(fut), timeout=seconds)
    except TimeoutError:
        fut.add_done_callback(_retrieved)
        store.abort()  # its call returns; the next write opens a new connection
        await asyncio.wait({fut}, timeout=abort_grace(deadline, time.monotonic()))
        return Written(f"store {label} did not answer within {seconds:g}s", True, True)
    except asyncio.CancelledError:
        fut.add_done_callback(_retrieved)
        raise
    except Exception as e:
        fut.add_done_callback(_retrieved)
        if not out_of_reach(e):  # e.g. a refused statement
            return Written(redact(repr(e)))
        if isinstance(e, StoreError):  # its message names the store
            return Written(redact(str(e)), True)
        return Written(f"store {label} unreachable: {first_line(e)}", True)  # a connect timed out
    return Written()


SQLITE_WAITED = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED: the busy timeout (store.statementTimeout) spent


def out_of_reach(e: BaseException) -> bool:
    """Whether a failed write says the next one would wait as long again: the store unreachable (a
    connect timed out in a black hole or was refused, a connection lost: no state reported by the
    server) or a SQLite file locked past the busy timeout. Not a statement the server or SQLite
    refused (a missing table: SQLite reports it as an OperationalError, which store/errors.py
    ``is_unavailable`` reads as "down"; the rows' write may still succeed). A StoreError is judged
    by the driver's error it wraps."""
    if isinstance(e, StoreError) and e.__cause__ is not None:
        e = e.__cause__
    if getattr(e, "connection_broken", False):  # store/dbconn.py: the connection had to be dropped
        return True
    if not (isinstance(e, StoreUnavailable) or is_unavailable(e)):
        return False
    if getattr(e, "connect_failed", False):  # store/dbconn.py: a PostgreSQL connect refused or not
        return True  # reached, whichever driver (pgwire's keeps the server's SQLSTATE, psycopg's none)
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF in SQLITE_WAITED
    return getattr(e, "sqlstate", None) is None  # psycopg's or pgwire's (a server's reply carries one)


def _retrieved(fut: asyncio.Future[Any]) -> None:
    """A write given up on: its outcome is retrieved, never raised."""
    if not fut.cancelled() and (e := fut.exception()) is not None:
        log.debug("a store write given up on ended: %r", e)
