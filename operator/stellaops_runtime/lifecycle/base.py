"""What every runtime's lifecycle observer shares: registry, counters, reconnect loop.

A runtime observer (containerd, Docker) implements ``_connection``: connect,
open its event stream, rebuild the registry (then call ``_synced``), and yield
ContainerLifecycleEvents until the stream fails or ``stop`` is set. This
class runs that forever: a failure is counted (``stream_errors``) and logged,
the registry stays as it was (``by_cgroup`` keeps answering), and the next
connection follows a jittered, capped exponential backoff. It also resolves a
record's cgroup id from its init pid and indexes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.lifecycle import ContainerLifecycleEvent
from stellaops_runtime.contracts.redact import redact_error
from stellaops_runtime.lifecycle.cgroups import CgroupResolver
from stellaops_runtime.lifecycle.metrics import LifecycleCollector, LifecycleStats
from stellaops_runtime.lifecycle.registry import ContainerRecord, ContainerRegistry
from stellaops_runtime.privacy.filter import PrivacyFilter
from stellaops_runtime.sources.tetragon_grpc import Backoff

log = logging.getLogger(__name__)


class _ConsumerError(Exception):
    """An exception of the ``on_sync`` callback: the consumer's, so it ends ``events``, never retried."""


class LifecycleObserver:
    """The shared part; subclasses set ``runtime`` and ``address`` and implement the connection."""

    runtime = ""

    def __init__(
        self,
        *,
        address: str,
        namespace: str,
        privacy: PrivacyFilter | None = None,
        resolver: CgroupResolver | None = None,
        reconnect_initial: float = 0.5,
        reconnect_max: float = 30.0,
        on_sync: Callable[[ContainerRegistry], None] | None = None,
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.privacy = privacy or PrivacyFilter(PrivacyConfig.model_validate({}))
        self.resolver = resolver or CgroupResolver()
        self.registry = ContainerRegistry()
        self.stats = LifecycleStats()
        self.backoff = Backoff(initial=reconnect_initial, maximum=reconnect_max)
        self.synced = asyncio.Event()  # set after each rebuild, cleared on disconnect
        self.on_sync = on_sync  # called after each rebuild, before that connection's first event

    # -- the API ---------------------------------------------------------------

    def by_cgroup(self, cgroup_id: int) -> ContainerRecord | None:
        """The running container in cgroup ``cgroup_id`` (a copy), or ``None``."""
        return self.registry.by_cgroup(cgroup_id)

    def collector(self) -> LifecycleCollector:
        return LifecycleCollector(self.stats, lambda: (len(self.registry), len(self.registry.cgroup_ids())))

    async def events(self, stop: asyncio.Event | None = None) -> AsyncIterator[ContainerLifecycleEvent]:
        """Lifecycle events until ``stop`` is set, reconnecting (with backoff) whenever the stream fails."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                async for ev in self._connection(stop):
                    yield ev
            except asyncio.CancelledError:
                raise
            except _ConsumerError as e:
                raise e.__cause__ or e from None
            except Exception as e:  # every failure is retried; count it and say why
                self.stats.stream_errors += 1
                self.stats.last_error = redact_error(e)
                log.warning("%s event stream at %s: %s", self.runtime, self.address, self.stats.last_error)
            finally:
                self.stats.connected = False
                self.synced.clear()
                await self._close()
            if stop.is_set():
                break
            delay = self.backoff.next_delay()
            log.info("reconnecting to %s at %s in %.2fs", self.runtime, self.address, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def resync(self) -> None:
        """Rebuild the registry from the runtime's lists (connecting if needed)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close what a ``resync`` outside ``events`` left open."""
        await self._close()

    # -- for subclasses ----------------------------------------------------------

    def _connection(self, stop: asyncio.Event) -> AsyncIterator[ContainerLifecycleEvent]:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    def _synced(self) -> None:
        """Call after the rebuild of a new connection, before its first event."""
        if self.stats.connects:
            self.stats.reconnects += 1
        self.stats.connects += 1
        self.stats.connected = True
        self.synced.set()
        self.backoff.reset()
        if self.on_sync is not None:
            try:
                self.on_sync(self.registry)
            except Exception as e:
                raise _ConsumerError() from e

    def _rebuilt(self, records: list[ContainerRecord]) -> None:
        _, removed = self.registry.replace_all(self.namespace, records)
        self.stats.resyncs += 1
        self.stats.resync_removed += removed

    def _find_cgroup(self, rec: ContainerRecord) -> None:
        """Resolve and index the cgroup of a record whose task runs (counted when not found)."""
        if rec.status not in ("created", "running", "paused") or not rec.pid:
            return
        info = self.resolver.resolve(rec.pid)
        if info is None or not info.cgroup_id:
            self.stats.cgroup_unresolved += 1
            if info is not None:
                rec.cgroup_path = info.path
            return
        self.registry.set_cgroup(rec, info.path, info.cgroup_id)
