"""How the agent opens its store: one attempt at a time, bounded, migrations in a child process.

Split from :mod:`stellaops_runtime.agent.flusher` (past 400 lines), which decides what a failed
open means for a flush. An attempt runs on a daemon thread (store/threads.py ``run_detached``);
a caller that gives up waiting leaves it running, and the next caller waits for that one instead
of starting another connection. A store not at the newest schema revision is migrated, when
``store.migrate`` is on, by a child process (store/migration_process.py): the agent itself never
loads SQLAlchemy nor Alembic (issue 13). :meth:`StoreOpener.stop` (the agent's stop) kills a
migration still running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.store.engine import Timeouts, open_store
from stellaops_runtime.store.migration_process import ChildMigrator
from stellaops_runtime.store.threads import run_detached
from stellaops_runtime.store.writer import HotSymbolStore

OnOpen = Callable[[HotSymbolStore], None]


class StoreOpener:
    """Opens (and migrates) the agent's store; ``on_open`` is read when an attempt's store is open."""

    def __init__(self, config: AgentConfig, timeouts: Timeouts, on_open: Callable[[], OnOpen | None]) -> None:
        self.config = config
        self.timeouts = timeouts
        self.on_open = on_open
        self.migrator = ChildMigrator()
        self._opening: asyncio.Future[HotSymbolStore] | None = None

    async def attempt(self, deadline: float | None = None) -> HotSymbolStore:
        """The store, from the running attempt or a new one; raises ``TimeoutError`` after
        ``store.connectTimeout + store.statementTimeout + 5`` s (never past ``deadline``, monotonic),
        leaving the attempt running, and the attempt's own error (store/engine.py ``open_store``)."""
        st = self.config.store
        timeout = st.connect_timeout + st.statement_timeout + 5
        if deadline is not None:
            timeout = max(0.1, min(timeout, deadline - time.monotonic()))
        fut = self._opening
        if fut is None or fut.done():
            fut = self._opening = run_detached(self.open_now, name="store-open")
            fut.add_done_callback(_retrieved)  # an attempt nobody waits for any more: no warning
        return await asyncio.wait_for(asyncio.shield(fut), timeout=timeout)

    def open_now(self) -> HotSymbolStore:
        """One attempt, on the calling thread: open, migrate in a child if need be, run ``on_open``."""
        st = self.config.store
        store = open_store(
            st.url,
            migrate=st.migrate,
            migrator=self.migrator,
            create_directories=st.create_directories,
            timeouts=self.timeouts,
            retention_days=st.retention_days,
        )
        try:
            if (hook := self.on_open()) is not None:
                hook(store)
        except BaseException:
            store.close()
            raise
        return store

    def stop(self) -> None:
        """The agent stops: a migration still running is killed, and no other is started."""
        self.migrator.close()


def _retrieved(fut: asyncio.Future[HotSymbolStore]) -> None:
    """Its waiters read the outcome; one left alone (its waiters gave up, the agent stopped) is read
    here, so that asyncio does not log its exception as never retrieved."""
    if not fut.cancelled():
        fut.exception()
