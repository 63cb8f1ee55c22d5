"""The agent's proof-of-life writes (store/node_liveness.py): its start row and each proof after a flush.

Split from :mod:`stellaops_runtime.agent.flusher`, which decides when they are written (before a
flush's first rows, after every flush) and opens the store for them; this module writes them, each
waited for at most ``store.flushTimeout`` (never past a shutdown deadline), and keeps what they need
between flushes: the agent's start, whether its start row is in, the failures, the write still
running. A write not done in time is cut with the store's connections, as a hung rows' write is
(agent/store_wait.py): left on its thread it held its connection, and behind a middlebox that
keeps acknowledging every later proof failed with "the last write has not finished" for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from stellaops_runtime.agent.store_wait import Written, wait_seconds, wait_written
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.hotsymbols.clock_span import boot_ns, now_pair
from stellaops_runtime.store.node_liveness import Liveness, write_liveness, write_start
from stellaops_runtime.store.threads import run_detached
from stellaops_runtime.store.writer import HotSymbolStore

log = logging.getLogger(__name__)


class ProofOfLife:
    """The node's proof-of-life writes for one agent; ``label``: the store's URL, safe to log."""

    def __init__(
        self, config: AgentConfig, *, agent_id: str, label: str, on_timeout: Callable[[], None] = lambda: None
    ) -> None:
        self.config = config
        self.on_timeout = on_timeout  # a write abandoned after store.flushTimeout (the flusher counts it)
        self.agent_id = agent_id
        self.label = label
        self.started = now_pair()  # (wall ns, boottime ns): the agent's start
        self.failures = 0  # proofs of life not written (the start row's too)
        self.start_proved = False  # the row that claims nothing is written (:meth:`write_start`)
        self._proving: asyncio.Future[None] | None = None

    @property
    def busy(self) -> bool:
        """The last proof's write has not returned (one its cut could not end)."""
        return self._proving is not None and not self._proving.done()

    def liveness(self, node: str, claimed: tuple[int, int]) -> Liveness:
        """What a proof of life written now says, for the moment ``claimed`` (wall ns, boottime ns)."""
        now_boot = boot_ns()
        return Liveness(
            node=node,
            agent_id=self.agent_id,
            started_ago=max(0, now_boot - self.started[1]) / 1e9,
            started_node_ns=self.started[0],
            alive_ago=max(0, now_boot - claimed[1]) / 1e9,
            alive_node_ns=claimed[0],
            flush_seconds=float(self.config.hot_symbols.flush_interval_seconds),
            window_seconds=int(self.config.hot_symbols.window_seconds),
        )

    async def write_start(self, store: HotSymbolStore, node: str, deadline: float | None) -> Written:
        """Before this agent's first rows are written: the node's row that claims nothing
        (store/node_liveness.py ``write_start``), so an agent killed between its first flush and that
        flush's proof is judged by the proof rule. Not at the open: a row says an agent ran on the node
        (agent/node_history.py ``survivor_ns``), and one that stored nothing must not keep the next
        agent from replaying the export file. Once written, never again; not written, it is counted,
        logged and tried again at the next flush. The caller fails its flush when ``unreachable``
        (the rows' write would wait as long again): a write not done within ``store.flushTimeout``
        (never past ``deadline``; the store's connections then cut), or one that says the store is out
        of reach (a connect timed out in a black hole, refused, a connection lost, a SQLite file locked:
        agent/store_wait.py ``out_of_reach``); any other failure (a refused statement) fails no flush."""
        if self.start_proved:
            return Written()
        done = await self._write(write_start, store, self.liveness(node, self.started), deadline, "-start")
        if done.why:
            self.failed(f"the agent's start: {done.why}")
        else:
            self.start_proved = True
        return done

    async def write_alive(
        self, store: HotSymbolStore, node: str, claimed: tuple[int, int], deadline: float | None
    ) -> bool:
        """The node's proof of life for the moment ``claimed``; False, counted and logged, when not
        written. The caller checks :attr:`busy` first (before it opens the store)."""
        done = await self._write(write_liveness, store, self.liveness(node, claimed), deadline, "")
        return self.failed(done.why) if done.why else True

    async def _write(
        self, write: Callable[[Any, Liveness], None], store: HotSymbolStore, live: Liveness,
        deadline: float | None, suffix: str,
    ) -> Written:  # fmt: skip
        timeout = wait_seconds(self.config.store.flush_timeout, deadline)
        fut = self._proving = run_detached(write, store.db, live, name=f"store-liveness{suffix}")
        done = await wait_written(store, fut, seconds=timeout, deadline=deadline, label=self.label)
        if done.timed_out:
            self.on_timeout()
        return done

    def failed(self, why: str) -> bool:
        """Count and log a proof not written (the first, then every 60th); False."""
        self.failures += 1
        if self.failures == 1 or self.failures % 60 == 0:
            log.warning("the node's proof of life was not written to %s: %s (%d failures)",
                        self.label, why, self.failures)  # fmt: skip
        return False
