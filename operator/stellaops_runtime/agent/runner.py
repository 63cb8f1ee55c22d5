"""The node agent's lifecycle: source, pipeline, flush loop, metrics, shutdown.

Tasks on one event loop, plus one pipeline thread:

- the source (Tetragon gRPC stream or JSON export follower; with
  ``native.enabled`` the gRPC stream inside the switch to the agent's own BCC
  probes, agent/source_switch.py) fills the queue;
- the consumer takes batches from the queue and hands each to the pipeline
  thread (decode, privacy, adapter, frame canonicalizer, hot-symbol
  aggregator), so the loop stays free to read the socket while a binary is
  parsed for the first time;
- the flush loop (:mod:`stellaops_runtime.agent.flusher`) drains the
  aggregator (on the pipeline thread) every ``flushIntervalSeconds`` (or
  early when too many keys are held) into the outage buffer and writes it to
  the store exactly once, retrying with backoff while the store is down and
  abandoning a write that hangs past ``store.flushTimeout``;
- the HTTP server serves ``/metrics``, ``/healthz`` and ``/readyz``.

SIGTERM/SIGINT (or ``--exit-when-idle``) stops the source, processes what is
queued, lets a flush that is already running finish, flushes everything else
and exits 0, all within ``shutdown.graceSeconds``. Past that deadline a
running write is aborted (safe: its batch stays frozen and the flush ledger
makes the retry exact), events still queued are counted as dropped, and what
the store did not take is written to ``store.spoolPath`` for the next start.
Exit 2 if rows could be neither stored nor spooled (they are counted as lost,
never silently), or if ``--exit-when-idle`` ends an agent that never reached
its source (Tetragon unreachable, export file missing) or that did not store
every row (spooled or lost). ``--exit-when-idle`` stops only an agent whose
export file is read to its end (:mod:`stellaops_runtime.agent.idle_exit`).

Counts that left the aggregator are always either stored or pending: a drain
hands its rows to the outage buffer from a callback on the event loop, so
even a cancelled caller cannot drop them, and a flush loop that meets an
unexpected error logs it and keeps going.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from stellaops_runtime.agent.agent_views import AgentViews
from stellaops_runtime.agent.allocator import release_free_memory
from stellaops_runtime.agent.draining import Draining
from stellaops_runtime.agent.flusher import Flusher
from stellaops_runtime.agent.history_days import attach_history_days
from stellaops_runtime.agent.idle_exit import idle_watch
from stellaops_runtime.agent.lifecycle_part import lifecycle_state, make_lifecycle
from stellaops_runtime.agent.node_presence import NodePresence
from stellaops_runtime.agent.optional_parts import (
    make_node_status,
    make_pod_view,
    make_poller,
    make_source,
    make_witness,
)
from stellaops_runtime.agent.outages import OutageMarker
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.agent.policy_load_gaps import PolicyLoadWatch
from stellaops_runtime.agent.registry_detail import registry_detail
from stellaops_runtime.agent.shutdown import shutdown
from stellaops_runtime.agent.stop_record import start_node_read, write_stop_record
from stellaops_runtime.agent.watch_record_attach import attach_watch_record
from stellaops_runtime.cli import exitcodes
from stellaops_runtime.contracts.config import AgentConfig
from stellaops_runtime.daemon_pool import DaemonPool
from stellaops_runtime.random_id import uuid4_text
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.store.engine import StoreConfigError

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)
_T = TypeVar("_T")

BATCH = 512


def _log_orphan_failure(fut: asyncio.Future[Any]) -> None:
    """A pipeline job whose caller was cancelled failed: nobody else will see its error."""
    if not fut.cancelled() and (e := fut.exception()) is not None:
        log.error("a pipeline job failed after its caller stopped waiting: %s", type(e).__name__)


class Agent(AgentViews, Draining):
    """One node agent; ``await Agent(cfg).run()`` returns the exit code."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        node_name: str = "",
        exit_when_idle: float | None = None,
        presence: NodePresence | None = None,
    ) -> None:
        self.config = config
        self.node_name = node_name or config.node_name or socket.gethostname()
        self.exit_when_idle = exit_when_idle
        self.queue = EventQueue(config.tetragon.queue_size)
        # Ledger identity of this agent's flushes: node name for people, a UUID for uniqueness; also
        # the writer of its unwatched-container marks (store/marks.py).
        self.agent_id = f"{self.node_name}/{uuid4_text()}"
        self.pipeline = Pipeline(
            config, node_name=self.node_name, fast_path=config.hot_symbols.fast_path, marked_by=self.agent_id
        )
        # The pipeline runs on one dedicated thread, never on the event loop: the
        # frame canonicalizer's first sight of a binary parses its ELF (tens of ms
        # for a big Go binary) and reads files through /proc/<pid>/root. Everything
        # that touches pipeline state (processing, draining, metric collection)
        # goes through this one thread, so that state needs no locks. A daemon: a job still running
        # at the exit (a drain past the deadline, a read of a hung mount) cannot hold it.
        self._worker = DaemonPool(max_workers=1, name="pipeline")
        # What a config may leave off is imported only when it is on (agent/optional_parts.py).
        self.source, self._process = make_source(config, self.queue, self.pipeline, self.in_pipeline)
        self.flusher = Flusher(
            config, agent_id=self.agent_id, drain=self._drain, stop=self.stop, node=self.node_name
        )
        self._poller = make_poller(config)
        self.witness = make_witness(config)
        self.stop_event = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._flush_stop = asyncio.Event()  # the flush loop ends after its current flush
        self.never_connected = False  # set when --exit-when-idle stops an agent that never reached its source
        self._source_done = asyncio.Event()
        self.http_port: int | None = None
        self.deadline: float | None = None  # monotonic time shutdown must be done by
        self.drain_deadline: float | None = None  # set by shutdown: drains are waited for until then
        # Drains submitted to the pipeline thread whose rows have not reached the buffer yet.
        self.drains_running: set[asyncio.Future[Any]] = set()
        self.rows_in_transit = 0  # drained on the pipeline thread, not yet in the outage buffer
        self.drains_lost = 0  # drains still running when shutdown had to end (their counts lost)
        self.dropped_at_shutdown = 0
        self.early_drains = 0  # drains forced by hotSymbols.maxKeys (hot_symbols_early_drains_total)
        self._rows_at_trim = 0
        self.node_status = make_node_status(config, node_name=self.node_name, stream=self.source.stats)
        self.pod_view = make_pod_view(config, self.pipeline, node_name=self.node_name)  # native pod selection
        self.tetragon_facts = None  # binaryPath tails and clones Tetragon does not probe (no switch here)
        if config.native.probe_config_file and not hasattr(self.source, "watch_registry"):
            from stellaops_runtime.agent.tetragon_facts import make_tetragon_facts

            self.tetragon_facts = make_tetragon_facts(config, self.source, self.pipeline)
        self.lifecycle = make_lifecycle(config, node_name=self.node_name, pipeline=self.pipeline)
        if self.lifecycle is not None:  # pairings of an image's two digests (store/image_pairs.py)
            self.lifecycle.pairs = self.flusher.pairs
            if self.witness is not None:  # a claim by either digest is marked by the image's counts
                self.witness.paired = self.flusher.pairs.others
        if self.node_status is not None:  # its ContainersKnown condition
            self.node_status.containers = lambda: lifecycle_state(self.lifecycle, self.pipeline)
            self.node_status.containers_detail = lambda: registry_detail(self.lifecycle)  # why not in sync
        if self.lifecycle is not None and hasattr(self.source, "watch_registry"):  # PURL functions
            self.source.watch_registry(self.lifecycle)
        # Tetragon outages (even a short reconnect) become node-wide gaps (agent/outages.py).
        self.outages = OutageMarker(self.source, pipeline=self.pipeline, in_pipeline=self.in_pipeline)
        # Tetragon's own drop counters rising are gaps too (sources/tetragon_metrics.py).
        self.outages.drops = self._poller
        if self.node_status is not None and self._poller is not None:  # its TetragonLossesKnown condition
            from stellaops_runtime.agent.tetragon_losses_status import tetragon_losses

            self.node_status.tetragon_losses = lambda: tetragon_losses(self._poller, self.source)
        if self.node_status is not None and self.outages.enabled:  # our policies not loaded yet: gaps too
            self.node_status.policy_watch = self.outages.policies = PolicyLoadWatch(start_ns=time.time_ns())
        if config.native.probe_config_file:  # a probed node file replaced: a gap (agent/node_file_gaps.py)
            from stellaops_runtime.agent.tetragon_facts import attach_node_file_gaps

            attach_node_file_gaps(self)
        self.watch = attach_watch_record(self)  # the hole since the node's last agent: an outage too
        # The days an agent before this one watched, judged without its calls (agent/history_days.py).
        self.history_days = attach_history_days(self)
        # The node's agent lock (the CLI waits for it before building the agent: agent/node_presence.py).
        self.presence = presence or NodePresence(config.store.spool_path)

    # -- lifecycle ---------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # asyncio.to_thread's calls on daemon threads: one never returning cannot hold the exit
        loop.set_default_executor(DaemonPool(name="agent-calls"))
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop, sig.name)
        self.presence.check()
        self.flusher.spool.load()
        try:
            self.flusher.check_config()
        except StoreConfigError as e:  # a configuration mistake: retrying cannot fix it
            log.error("%s", e)
            self._worker.shutdown(wait=False)
            return exitcodes.ERROR
        await self.in_pipeline(self.pipeline.warm_up)
        # Loading the kernel's symbols leaves up to ~1 MB of free glibc heap: give it back.
        await self.in_pipeline(release_free_memory)
        from stellaops_runtime.agent.http import start_http  # prometheus-client: serving only

        runner = await start_http(self)
        if runner is None:
            return exitcodes.ERROR
        tasks = [
            asyncio.create_task(self._run_source(), name="source"),
            asyncio.create_task(self._consume(), name="consume"),
            asyncio.create_task(self._flush_loop(), name="flush"),
            # The store opens in the background: event intake never waits for a slow database.
            asyncio.create_task(self._open_store(), name="store-open"),
        ]
        if self._poller:
            tasks.append(asyncio.create_task(self._poller.run(self.stop_event), name="tetragon-metrics"))
        if self.exit_when_idle:
            tasks.append(asyncio.create_task(idle_watch(self, self.exit_when_idle), name="idle"))
        if self.node_status:
            tasks.append(asyncio.create_task(self.node_status.run(self.stop_event), name="observation-node"))
        if self.pod_view is not None:
            tasks.append(asyncio.create_task(self.pod_view.run(self.stop_event), name="pod-view"))
        if self.tetragon_facts is not None:
            tasks.append(asyncio.create_task(self.tetragon_facts.run(self.stop_event), name="tetragon-facts"))
        if self.outages.enabled or self.outages.drops is not None or self.outages.node_files is not None:
            tasks.append(asyncio.create_task(self.outages.run(self.stop_event), name="outages"))
        if self.presence.other_agent:
            tasks.append(asyncio.create_task(self.presence.run(self.stop_event), name="node-presence"))
        if self.lifecycle is not None:
            run = self.lifecycle.run(self.stop_event, self.in_pipeline, lambda: self.source_stats)
            tasks.append(asyncio.create_task(run, name="lifecycle"))
        if self.witness is not None:
            interval = self.config.witness.interval_seconds
            tasks.append(
                asyncio.create_task(
                    self.witness.run(self.stop_event, self._store_engine, interval), name="witness"
                )
            )
        try:
            await self.stop_event.wait()
            node_read = start_node_read(self)  # is the node going away? (agent/stop_record.py)
            # the probes' calls in flight are read at the stop (agent/source_switch_gaps.py)
            at_stop = getattr(self.source, "watching_at_stop_ns", None) or getattr(
                self.source, "watching_ns", None
            )
            alive = at_stop() if at_stop is not None else None
            ok = await self._shutdown(tasks)
            if ok and not self.dropped_at_shutdown and (stored := getattr(self.source, "stored_all", None)):
                stored()  # the probes' counts up to their last read are stored (agent/source_switch_back.py)
            self.watch.final(alive, ok and not self.dropped_at_shutdown)  # all stored or spooled
            clean = ok and not self.dropped_at_shutdown and not self.flusher.spool.spooled_rows
            if clean and await self.flusher.prove_alive(
                self.watch.node, self.watch.claimed, deadline=self.deadline
            ):
                await write_stop_record(self, node_read)  # everything stored: what runs on
            if node_read is not None:
                node_read.cancel()
        finally:
            for t in tasks:
                t.cancel()
            await runner.cleanup(5.0 if self.deadline is None else max(0.0, self.deadline - time.monotonic()))
            self._worker.shutdown(wait=False, cancel_futures=True)
            await self.flusher.close(self.deadline)  # never past the grace (agent/shutdown.py)
            self.presence.close()
            if (lock := getattr(self.source, "lock", None)) is not None:  # the export file's, kept
                lock.release()  # until the last flush stored its counts and position
        log.info(
            "agent stopped: %d events received, %d processed, %d hot-symbol rows flushed, %d dropped, "
            "%d spooled, %d witnesses", self.received, self.pipeline.processed, self.pending.rows_flushed,
            self.queue.dropped + self.dropped_at_shutdown, self.flusher.spool.spooled_rows,
            self.witnesses_generated,
        )  # fmt: skip
        if self.never_connected:
            log.error("%s", self.unreachable_message())
            return exitcodes.ERROR
        left = self.flusher.spool.spooled_rows + self.flusher.spool.lost_rows
        if self.exit_when_idle and left:  # a replay or script must not take this run as complete
            where = f"spooled to {self.config.store.spool_path} for the next start" if ok else "lost"
            log.error("--exit-when-idle: %d hot-symbol rows were not stored (%s)", left, where)
            return exitcodes.ERROR
        return exitcodes.OK if ok else exitcodes.ERROR

    async def _shutdown(self, tasks: list[asyncio.Task[Any]]) -> bool:
        """Stop within ``shutdown.graceSeconds`` (agent/shutdown.py)."""
        return await shutdown(self, tasks)

    async def _open_store(self) -> None:
        while True:
            try:
                opened = await self.flusher.open()
            except StoreConfigError as e:  # e.g. migrations refused for good: stop, as at start-up
                self.flusher.config_error = str(e)
                log.error("%s; stopping", e)
                self.stop("store configuration error")
                return
            if opened:  # start-up's garbage (the store's first connection, a migration) is free heap now
                await self.in_pipeline(release_free_memory)
                return
            if not (self.watch.awaits_store or self.watch.export.awaits_position):  # else no row may come
                return  # (the store must say if an agent ran on the node before: agent/node_history.py)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), 5.0)
            if self.stop_event.is_set():
                return

    def stop(self, reason: str = "") -> None:
        if not self.stop_event.is_set():
            log.info("stop requested%s", f" ({reason})" if reason else "")
            self.stop_event.set()

    async def _run_source(self) -> None:
        try:
            await self.source.run(self.stop_event)
        finally:
            self._source_done.set()

    async def in_pipeline(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the pipeline thread, after every job handed to it before.

        A job once handed over runs even when its caller is cancelled or gives up waiting (the
        shutdown deadline): a batch of events, a gap to mark, must reach the last drain, which is
        queued behind them, rather than vanish unrun with the counts or the gap they carry.
        """
        fut = asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.add_done_callback(_log_orphan_failure)
            raise

    async def _consume(self) -> None:
        q = self.queue
        process = self._process
        max_keys = self.config.hot_symbols.max_keys
        while True:
            if not await q.wait(0.2):
                if self._source_done.is_set():
                    return
                continue
            batch = q.take(BATCH)
            try:  # a batch taken is processed even when shutdown cuts the consumer short
                await self.in_pipeline(process, batch)
            finally:
                q.done(batch)  # its payloads no longer count against the queue's byte bound
            if (drops := q.take_drops()) is not None:  # what we dropped is a gap, not "not observed"
                await self.in_pipeline(self.pipeline.note_own_drops, *drops)
                del batch
            if self.pipeline.aggregator.rows >= max_keys and not await self._early_drain():
                await asyncio.sleep(1.0)  # held (agent/draining.py): read slower, the file keeps the rest
